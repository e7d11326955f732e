"""Train a Show, Attend and Tell captioner: `captioning train --annotations A --images I --out RUN`.

Reference-script layout (torchvision): `get_args_parser()` + `main(args)`; the loop is the shared
`captioning.training.Trainer`, this module supplies the captioning hooks (batches of captions, the
teacher-forced loss, validation BLEU-4, checkpoints). Built-in defaults < `--config` YAML < command
line; the resolved config is saved as RUN/config.yaml. RUN/last holds the latest checkpoint plus the
training state, so rerunning the same command resumes, also after a kill -9; RUN/best is the
checkpoint with the best validation score (`val_metric`: BLEU-4, or CIDEr-D). With `--scst --init-from
CHECKPOINT` the same loop fine-tunes a captioner by self-critical sequence training (`captioning.scst`).
Under `torchrun` the same command trains with DistributedDataParallel (gloo on CPU, NCCL on CUDA); only
rank 0 writes."""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from . import checkpoint as ckpt
from .cider import cider_d
from .data import CaptionDataset, FeatureCache, caption_groups, collate_captions, split_records
from .data.splits import SPLITS_JSON, load_training_records, training_splits
from .evaluate import caption_records
from .guidance import unreliable_tags
from .metrics import bleu4
from .model import Captioner, load_captioner
from .scst import CaptionReward, ScstSettings, SelfCriticalHooks, training_cider
from .train_config import CaptionTrainConfig, resolve_config, write_run_config
from .train_config import get_args_parser as get_args_parser  # re-exported: the reference-script API
from .training import (
    Dist,
    Hooks,
    Trainer,
    TrainerSettings,
    TrainerState,
    TrainingError,
    Validation,
    can_resume,
    epoch_batches,
    finished_message,
    prepare_run_folder,
    run_folder_lock,
    saved_state,
    setup_distributed,
)
from .vocab import Vocabulary, tokenize

METRICS = {"bleu4": "val BLEU-4", "cider": "val CIDEr-D"}  # val_metric -> how the logs name it


@dataclass
class CaptionData:
    """What a run trains and validates on."""

    train: list
    val: list
    everything: list      # every record the feature cache covers (train, val, test)
    held: list            # training image ids held out for validation (no val split)


def training_batches(dataset: CaptionDataset, config: CaptionTrainConfig, epoch: int, d: Dist) -> list[list]:
    """This rank's batches of dataset indices for `epoch`: (image, caption) pairs, or with captions_per_image
    k > 1, batch_size // k images with k of their captions each (`caption_groups`)."""
    per_image = config.captions_per_image
    if per_image <= 1:
        return epoch_batches(len(dataset), config.batch_size, epoch, config.seed, d)
    groups = caption_groups(dataset.records, per_image, epoch, config.seed)
    images = max(1, config.batch_size // per_image)
    return [[groups[i] for i in batch] for batch in epoch_batches(len(groups), images, epoch, config.seed, d)]


@torch.inference_mode()
def evaluate(model: Captioner, records: Sequence, features, config: CaptionTrainConfig,
             device: torch.device) -> tuple[dict[str, float], list[str]]:
    """Validation BLEU-4 (pycocoevalcap Bleu on regex tokens) and CIDEr-D (`cider.cider_d`, the val
    references' document frequencies, as pycocoevalcap) of beam-search captions."""
    results = caption_records(model, records, features=features, beam_size=config.beam_size,
                              max_len=config.model.max_len, batch_size=config.batch_size, device=device,
                              amp=config.amp, num_workers=0 if features is not None else config.num_workers,
                              guide=False)  # the model as trained: the tags play no part in choosing RUN/best
    hyps = {i: r.text for i, r in enumerate(results)}
    refs = {i: r.captions for i, r in enumerate(records)}
    return {"bleu4": bleu4(refs, hyps), "cider": cider_d(refs, hyps)}, [r.text for r in results]


class CaptionHooks(Hooks):
    """Captioning's part of the loop: caption batches, the decoder loss, BLEU-4, checkpoint folders."""

    def __init__(self, model: Captioner, net: torch.nn.Module, dataset: CaptionDataset, val: list, features,
                 config: CaptionTrainConfig, device: torch.device, d: Dist):
        self.model, self.net, self.dataset, self.val, self.features = model, net, dataset, val, features
        self.config, self.device, self.d = config, device, d

    def start_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        for group, base in zip(optimizer.param_groups, (self.config.lr, self.config.encoder_lr), strict=False):
            group["lr"] = base * self.config.lr_decay ** epoch  # stateless schedule: resumes need nothing

    def batches(self, epoch: int, done: int) -> DataLoader:
        batches = training_batches(self.dataset, self.config, epoch, self.d)[done:]
        # The loader's own generator: making an iterator draws a seed, and from the global generator that draw
        # would land mid-epoch on a resume and shift every dropout mask after it.
        seeds = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return DataLoader(self.dataset, batch_sampler=batches, collate_fn=collate_captions, generator=seeds,
                          num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda")

    def step(self, batch):
        images, captions, _ = batch
        return self.net(images.to(self.device, non_blocking=True), captions.to(self.device, non_blocking=True))

    def validate(self) -> Validation:
        scores, samples = evaluate(self.model, self.val, self.features, self.config, self.device)
        summary = f"val BLEU-4 {scores['bleu4']:.4f}  CIDEr-D {scores['cider']:.4f}"
        return Validation(scores[self.config.val_metric], summary, {f"val/{k}": v for k, v in scores.items()},
                          {"val/sample": samples[0] if samples else ""}, {f"val_{k}": v for k, v in scores.items()})

    def save(self, folder: Path, state: TrainerState, validation: Validation | None,
             extra_files: dict[str, bytes] | None) -> None:
        training = {"epoch": state.epoch, "step": state.step}
        if extra_files is None and validation is not None:  # RUN/best records its score
            training.update(validation.history)
        self.model.save(folder, extra={"training": training}, extra_files=extra_files)


# ---- main ---------------------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> TrainerState:
    config = resolve_config(args)
    run_dir = Path(args.out).absolute()
    d, device = setup_distributed(config.device)
    try:
        with run_folder_lock(run_dir, d.main):
            return train(config, run_dir, d, device)
    finally:
        d.close()


def train(config: CaptionTrainConfig, run_dir: Path, d: Dist, device: torch.device) -> TrainerState:
    prepare_run_folder(run_dir, d.main)
    d.barrier()
    last = run_dir / "last"
    resuming = can_resume(last)
    metric = METRICS[config.val_metric]
    done = finished_message(run_dir, config.epochs, config.patience, metric)
    if done:
        if d.main:
            print(done, flush=True)
        return saved_state(last)
    random.seed(config.seed + d.rank)
    np.random.seed(config.seed + d.rank)
    torch.manual_seed(config.seed)  # same initial weights on every rank

    initial = load_captioner(config.init_from) if config.init_from and not resuming else None
    if initial is not None:  # fine-tuning: the checkpoint's model config, weights and vocabulary
        config.model = initial.config
    data = load_data(config, run_dir, d)
    model = build_model(config, data, initial, run_dir, resuming, d).to(device)
    features = None
    if model.encoder.frozen:  # one encoder pass over every image, reused by all epochs, reruns and `evaluate`
        features = feature_cache(model, data, config, run_dir, device, d)
        calibrate_guidance(model, data.train, features)
    dataset = CaptionDataset(data.train, model.vocab, features if features is not None else model.encoder,
                             max_len=config.model.max_len)
    optimizer = make_optimizer(model, config)
    # What a batch trains: the decoder on cached grids, or the whole captioner on pixels (fine-tuning).
    net = model.decoder if model.encoder.frozen else model
    if d.world > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    hooks = CaptionHooks(model, net, dataset, data.val, features, config, device, d)
    if config.scst:
        hooks = self_critical_hooks(hooks, model, net, data, features, config, run_dir, device, d)
    settings = TrainerSettings(epochs=config.epochs, patience=config.patience, clip_grad=config.clip_grad,
                               seed=config.seed, amp=config.amp, checkpoint_every=config.checkpoint_every,
                               warmup_steps=config.warmup_steps, log_every=config.log_every, metric=metric)
    trainer = Trainer(hooks, net, optimizer, settings, run_dir, device=device, d=d)
    if config.scst:
        hooks.attach(trainer)
    if resuming:
        state = trainer.resume(restore_rng=d.main)
        if not d.main:
            torch.manual_seed(config.seed + d.rank + 7919 * state.step)
        trainer.log(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step} "
                    f"(best {metric} {state.best_score:.4f})")
    else:
        torch.manual_seed(config.seed + d.rank)
    trainer.log(f"training on {len(data.train)} images ({describe_batches(config, len(dataset))}), validating on "
                f"{len(data.val)}; vocabulary {len(model.vocab)} words; {sum(p.numel() for p in trainer.params):,} "
                f"trainable parameters; device {device}" + (f" x {d.world} processes" if d.world > 1 else ""))
    return trainer.fit()


@torch.inference_mode()
def calibrate_guidance(model: Captioner, records: list, features, chunk: int = 256) -> None:
    """Tags that mislead on the training photos are never required of a caption (`guidance.unreliable_tags`);
    saved with every checkpoint in config.json's "guidance"."""
    table, settings = model.tag_table, model.guide_settings
    if table is None or not records:
        return
    probs = model.tag_probabilities_of(lambda some: torch.stack([features[r.image_id] for r in some]), records,
                                       settings.temperature, settings.count_power, chunk)
    captions = [[tokenize(c) for c in r.captions] for r in records]
    unreliable = unreliable_tags(probs, captions, table, settings.threshold)
    model.guide_settings = replace(settings, unreliable=unreliable)


def describe_batches(config: CaptionTrainConfig, captions: int) -> str:
    if config.scst:
        return f"self-critical: {config.scst_samples} samples per image, {config.scst_baseline} baseline"
    per_image = f", {config.captions_per_image} per image in a batch" if config.captions_per_image > 1 else ""
    return f"{captions} captions{per_image}"


def build_model(config: CaptionTrainConfig, data: CaptionData, initial: Captioner | None, run_dir: Path,
                resuming: bool, d: Dist) -> Captioner:
    """RUN/last's weights and vocabulary when resuming, else `initial` (--init-from), else a new model."""
    if resuming:
        last = run_dir / "last"
        model = Captioner(config.model, Vocabulary.load(last / ckpt.VOCAB))
        ckpt.load_into(model, ckpt.read_weights(last), last,
                       optional_prefixes=("encoder.",) if model.encoder.frozen else ())
        return model
    if initial is not None:
        if d.main:
            initial.vocab.save(run_dir / "vocab.json")
        return initial
    return Captioner(config.model, build_vocabulary(data.train, config, run_dir, d))


def self_critical_hooks(base: CaptionHooks, model: Captioner, net: torch.nn.Module, data: CaptionData, features,
                        config: CaptionTrainConfig, run_dir: Path, device: torch.device, d: Dist) -> SelfCriticalHooks:
    """SCST over `base`: rewards are CIDEr-D with the training split's document frequencies (RUN/scst_df.json)."""
    if features is None:
        raise TrainingError("--scst needs a frozen encoder (--fine-tune-blocks 0): it samples from cached grids")
    reward = CaptionReward(training_cider(run_dir, data.train, d), config.scst_bleu_weight,
                           config.scst_meteor_weight)
    settings = ScstSettings(samples=config.scst_samples, baseline=config.scst_baseline,
                            bleu_weight=config.scst_bleu_weight, per_word=config.scst_per_word,
                            temperature=config.scst_temperature,
                            images_per_batch=max(1, config.batch_size // config.scst_samples),
                            max_len=config.model.max_len, seed=config.seed, log_every=config.log_every)
    return SelfCriticalHooks(base, model, net, data.train, features, reward, settings, device, d)


def load_data(config: CaptionTrainConfig, run_dir: Path, d: Dist) -> CaptionData:
    """The run's training and validation records; writes RUN/config.yaml and RUN/splits.json (rank 0)."""
    records = load_training_records(config.annotations, config.images, config.format, config.skip_invalid)
    train_records, val_records, held = training_splits(records, config.val_holdout, config.seed, run_dir)
    if config.train_max_images > 0:
        train_records = train_records[:config.train_max_images]
    if d.main:
        write_run_config(run_dir, config)
        if held and not (run_dir / SPLITS_JSON).is_file():
            ckpt.write_json_atomic(run_dir / SPLITS_JSON, {"val": held})
            print(f"no val split in {config.annotations}: holding out {len(held)} training images for validation")
    if not val_records:
        raise TrainingError("no validation images (split 'val'); model selection needs some")
    if config.val_max_images > 0:
        val_records = val_records[:config.val_max_images]
    everything = train_records + split_records(records, ("val", "test"))
    return CaptionData(train_records, val_records, everything, held)


def build_vocabulary(train: list, config: CaptionTrainConfig, run_dir: Path, d: Dist) -> Vocabulary:
    vocab = Vocabulary.build((c for r in train for c in r.captions), min_freq=config.min_freq)
    if len(vocab) <= 4:
        raise TrainingError(f"no training word occurs at least --min-freq {config.min_freq} times")
    if d.main:
        vocab.save(run_dir / "vocab.json")
    return vocab


def feature_cache(model: Captioner, data: CaptionData, config: CaptionTrainConfig, run_dir: Path,
                  device: torch.device, d: Dist) -> FeatureCache:
    """The frozen encoder's grids of every image, built by rank 0 and opened by the others. Unreadable
    images (with --skip-invalid) are left out of the cache and then out of `data`."""
    cache_dir = Path(config.cache_dir) if config.cache_dir else run_dir / "features"

    def build() -> FeatureCache:
        return FeatureCache.build(model.encoder, data.everything, cache_dir, batch_size=config.cache_batch_size,
                                  num_workers=config.num_workers, device=device, skip_invalid=config.skip_invalid)

    features = build() if d.main else None
    d.barrier()
    if not d.main:
        features = build()  # finds nothing left to do
    if config.skip_invalid:
        data.train = [r for r in data.train if r.image_id in features]
        data.val = [r for r in data.val if r.image_id in features]
    return features


def make_optimizer(model: Captioner, config: CaptionTrainConfig) -> torch.optim.Optimizer:
    """Adam over the decoder (lr) and any fine-tuned encoder blocks (encoder_lr)."""
    decoder_params = [p for p in model.decoder.parameters() if p.requires_grad]
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    groups = [{"params": decoder_params, "lr": config.lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": config.encoder_lr})
    # fused: 4.3-4.5x faster on CPU too (bench.py --only components)
    return torch.optim.Adam(groups, weight_decay=config.weight_decay, eps=config.adam_eps, fused=True)
