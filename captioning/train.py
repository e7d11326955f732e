"""Train a Show, Attend and Tell captioner: `captioning train --annotations A --images I --out RUN`.

Reference-script layout (torchvision): `get_args_parser()` + `main(args)` + `train_one_epoch` +
`evaluate`. Built-in defaults < `--config` YAML < command line; the resolved config is saved as
RUN/config.yaml. RUN/last holds the latest checkpoint plus the training state (optimizer, RNG, best
score) as safetensors + JSON, so rerunning the same command resumes, also after a kill -9;
RUN/best is the checkpoint with the best validation BLEU-4. Under `torchrun` the same command
trains with DistributedDataParallel (gloo on CPU, NCCL on CUDA); only rank 0 writes."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from . import checkpoint as ckpt
from .data import (
    CaptionDataset,
    FeatureCache,
    caption_groups,
    collate_captions,
    split_records,
)
from .data.splits import SPLITS_JSON, load_training_records, training_splits
from .device import resolve_device
from .evaluate import caption_records
from .metrics import bleu4
from .model import Captioner
from .train_config import CaptionTrainConfig, resolve_config, write_run_config
from .train_config import get_args_parser as get_args_parser  # re-exported: the reference-script API
from .vocab import Vocabulary

TRAINER_JSON, TRAINER_TENSORS = "trainer.json", "trainer.safetensors"


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, bad data, incompatible run folder); the message says why."""


@dataclass
class TrainerState:
    epoch: int = 0              # completed epochs
    step: int = 0               # optimizer steps so far
    step_in_epoch: int = 0      # steps done in the unfinished epoch (periodic checkpoints)
    best_score: float = -1.0    # best validation BLEU-4
    best_epoch: int = 0
    bad_epochs: int = 0         # epochs since the best one (early stopping)
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)

    def record_validation(self, score: float, patience: int) -> bool:
        """Book a finished epoch's validation score (call after counting the epoch); True if it is the best."""
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped_early = patience > 0 and self.bad_epochs >= patience
        return improved


# ---- distributed -----------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, values: list[float], device: torch.device) -> list[float]:
        """Rank 0's values on every rank."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(t, 0)
        return t.tolist()


def setup_distributed(device_arg: str | None) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_arg)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank() if world > 1 else 0, world, local), device


# ---- training state: safetensors + JSON, never pickle ---------------------------------------------
def state_files(optimizer: torch.optim.Optimizer, state: TrainerState) -> dict[str, bytes]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    scalars: dict[str, dict] = {}
    for index, values in sd["state"].items():
        scalars[str(index)] = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[str(index)][key] = value
    py = random.getstate()
    npy = np.random.get_state()
    meta = {"trainer": asdict(state),
            "optimizer": {"param_groups": sd["param_groups"], "scalars": scalars},
            "rng": {"python": [py[0], list(py[1]), py[2]],
                    "numpy": [npy[0], npy[1].tolist(), int(npy[2]), int(npy[3]), float(npy[4])]}}
    return {TRAINER_TENSORS: save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}),
            TRAINER_JSON: json.dumps(meta).encode()}


def load_state(folder: Path, optimizer: torch.optim.Optimizer, restore_rng: bool) -> TrainerState:
    try:
        meta = json.loads((folder / TRAINER_JSON).read_text(encoding="utf-8"))
        tensors = load_tensors((folder / TRAINER_TENSORS).read_bytes())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{folder}: cannot read the training state ({exc}); delete the folder to restart") from None
    opt = meta["optimizer"]
    state: dict[int, dict] = {int(i): dict(v) for i, v in opt["scalars"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    current = optimizer.state_dict()["param_groups"]
    if len(current) != len(opt["param_groups"]):
        raise TrainingError(f"{folder}: the saved optimizer has {len(opt['param_groups'])} parameter groups, "
                            f"this run {len(current)}")
    # Hyper-parameters come from the checkpoint; implementation switches (fused, foreach) from this run.
    impl = ("fused", "foreach", "capturable", "differentiable")
    groups = [{**saved, **{k: now[k] for k in impl if k in now}} for saved, now in zip(opt["param_groups"], current,
                                                                                        strict=True)]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if restore_rng:
        py = meta["rng"]["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        npy = meta["rng"]["numpy"]
        np.random.set_state((npy[0], np.array(npy[1], dtype=np.uint32), *npy[2:]))
        torch.set_rng_state(tensors["rng.torch"])
        cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
    return TrainerState(**meta["trainer"])


def recover_folder(folder: Path) -> None:
    """A kill between the two renames of an atomic checkpoint swap leaves only `.name.old`: put it back.
    Leftovers of killed saves (a half-written `.name.*.tmp`, a half-deleted `.name.old`) are deleted."""
    old = folder.with_name(f".{folder.name}.old")
    if not ckpt.is_checkpoint(folder) and ckpt.is_checkpoint(old):
        os.replace(old, folder)
    stale = list(folder.parent.glob(f".{folder.name}.*.tmp")) + ([old] if ckpt.is_checkpoint(folder) else [])
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


# ---- data --------------------------------------------------------------------------------------------
def epoch_batches(n_items: int, batch_size: int, epoch: int, seed: int, d: Dist) -> list[list[int]]:
    """This rank's shuffled batches for `epoch`: the same on every rerun, so a resume can skip ahead."""
    sampler = DistributedSampler(range(n_items), num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def training_batches(dataset: CaptionDataset, args: CaptionTrainConfig, epoch: int, d: Dist) -> list[list]:
    """This rank's batches of dataset indices for `epoch`: (image, caption) pairs, or with captions_per_image
    k > 1, batch_size // k images with k of their captions each (`caption_groups`)."""
    per_image = args.captions_per_image
    if per_image <= 1:
        return epoch_batches(len(dataset), args.batch_size, epoch, args.seed, d)
    groups = caption_groups(dataset.records, per_image, epoch, args.seed)
    images = max(1, args.batch_size // per_image)
    return [[groups[i] for i in batch] for batch in epoch_batches(len(groups), images, epoch, args.seed, d)]


# ---- one epoch -----------------------------------------------------------------------------------------
def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    device: torch.device, state: TrainerState, args: CaptionTrainConfig, d: Dist,
                    writer=None, save_last: Callable[[], None] | None = None, total: int | None = None,
                    last: Path | None = None) -> dict:
    """One pass over `loader`; `model(images, captions)` returns a DecoderOutput. Stops on a non-finite loss."""
    from tqdm import tqdm

    model.train()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if args.amp and device.type == "cuda" \
        else contextlib.nullcontext()
    sums, count = {"loss": 0.0, "nll": 0.0}, 0
    bar = tqdm(loader, total=total, desc=f"epoch {state.epoch + 1}/{args.epochs}", disable=not d.main,
               dynamic_ncols=True, mininterval=1.0, leave=False, file=sys.stderr)
    for images, captions, _ in bar:
        images = images.to(device, non_blocking=True)
        captions = captions.to(device, non_blocking=True)
        with amp:
            out = model(images, captions)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, args.clip_grad if args.clip_grad > 0 else float("inf"))
        check = torch.stack([out.loss.detach().float(), out.nll.detach().float(), grad_norm.float()])
        if d.world > 1:
            dist.all_reduce(check)
            check /= d.world
        loss, nll, norm = check.tolist()
        if not (math.isfinite(loss) and math.isfinite(norm)):
            what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {norm}"
            raise TrainingError(f"{what} at step {state.step + 1} (epoch {state.epoch + 1}); stopped before the "
                                f"update, the last good checkpoint is {last} (try a lower --lr)")
        optimizer.step()
        state.step += 1
        state.step_in_epoch += 1
        sums["loss"] += loss
        sums["nll"] += nll
        count += 1
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if writer is not None and (state.step % args.log_every == 0 or count == 1):
            writer.add_scalar("train/loss", loss, state.step)
            writer.add_scalar("train/nll", nll, state.step)
            writer.add_scalar("train/grad_norm", norm, state.step)
        if save_last is not None and args.checkpoint_every > 0 and state.step % args.checkpoint_every == 0:
            save_last()
    bar.close()
    return {k: v / max(count, 1) for k, v in sums.items()}


@torch.inference_mode()
def evaluate(model: Captioner, records: Sequence, features, args: CaptionTrainConfig,
             device: torch.device) -> tuple[float, list[str]]:
    """Validation BLEU-4 (pycocoevalcap Bleu on regex tokens) of beam-search captions."""
    results = caption_records(model, records, features=features, beam_size=args.beam_size, max_len=args.model.max_len,
                              batch_size=args.batch_size, device=device, amp=args.amp,
                              num_workers=0 if features is not None else args.num_workers)
    hyps = {i: r.text for i, r in enumerate(results)}
    return bleu4({i: r.captions for i, r in enumerate(records)}, hyps), [r.text for r in results]


# ---- main ---------------------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> TrainerState:
    config = resolve_config(args)
    run_dir = Path(args.out).absolute()
    d, device = setup_distributed(config.device)
    try:
        return _train(config, run_dir, d, device)
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _log(d: Dist, message: str) -> None:
    if d.main:
        print(message, flush=True)


def _train(args: CaptionTrainConfig, run_dir: Path, d: Dist, device: torch.device) -> TrainerState:
    last, best = run_dir / "last", run_dir / "best"
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        recover_folder(last)
        recover_folder(best)
    d.barrier()
    resuming = ckpt.is_checkpoint(last) and (last / TRAINER_JSON).is_file()
    if resuming:
        done = TrainerState(**json.loads((last / TRAINER_JSON).read_text())["trainer"])
        patience_spent = args.patience > 0 and done.bad_epochs >= args.patience
        if done.epoch >= args.epochs or patience_spent:
            _log(d, f"{run_dir}: already finished ({done.epoch} epochs, best val BLEU-4 {done.best_score:.4f} "
                    f"at epoch {done.best_epoch}); raise --epochs" + (" and --patience" if patience_spent else "")
                 + " to train longer")
            return done
    random.seed(args.seed + d.rank)
    np.random.seed(args.seed + d.rank)
    torch.manual_seed(args.seed)  # same initial weights on every rank

    records = load_training_records(args.annotations, args.images, args.format, args.skip_invalid)
    train_records, val_records, held = training_splits(records, args.val_holdout, args.seed, run_dir)
    if d.main:
        write_run_config(run_dir, args)
        if held and not (run_dir / SPLITS_JSON).is_file():
            ckpt.write_json_atomic(run_dir / SPLITS_JSON, {"val": held})
            print(f"no val split in {args.annotations}: holding out {len(held)} training images for validation")
    if not val_records:
        raise TrainingError("no validation images (split 'val'); BLEU-4 model selection needs some")
    if args.val_max_images > 0:
        val_records = val_records[:args.val_max_images]

    if resuming:
        vocab = Vocabulary.load(last / ckpt.VOCAB)
    else:
        vocab = Vocabulary.build((c for r in train_records for c in r.captions), min_freq=args.min_freq)
        if len(vocab) <= 4:
            raise TrainingError(f"no training word occurs at least --min-freq {args.min_freq} times")
        if d.main:
            vocab.save(run_dir / "vocab.json")
    model = Captioner(args.model, vocab).to(device)
    if resuming:
        ckpt.load_into(model, ckpt.read_weights(last), last,
                       optional_prefixes=("encoder.",) if model.encoder.frozen else ())

    features = None
    if model.encoder.frozen:  # one encoder pass over every image, reused by all epochs, reruns and `evaluate`
        cache_dir = Path(args.cache_dir) if args.cache_dir else run_dir / "features"
        everything = train_records + split_records(records, ("val", "test"))
        def build() -> FeatureCache:
            return FeatureCache.build(model.encoder, everything, cache_dir, batch_size=args.cache_batch_size,
                                      num_workers=args.num_workers, device=device, skip_invalid=args.skip_invalid)

        if d.main:  # rank 0 encodes; the others then open what it wrote (their build finds nothing left to do)
            features = build()
        d.barrier()
        if not d.main:
            features = build()
        if args.skip_invalid:  # unreadable images were left out of the cache (and named in one warning)
            train_records = [r for r in train_records if r.image_id in features]
            val_records = [r for r in val_records if r.image_id in features]
    dataset = CaptionDataset(train_records, vocab, features if features is not None else model.encoder,
                             max_len=args.model.max_len)

    decoder_params = [p for p in model.decoder.parameters() if p.requires_grad]
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    groups = [{"params": decoder_params, "lr": args.lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": args.encoder_lr})
    optimizer = torch.optim.Adam(groups, weight_decay=args.weight_decay, fused=True)  # fused: 4.3-4.5x faster on CPU too (bench.py --only components)
    state = TrainerState()
    if resuming:
        state = load_state(last, optimizer, restore_rng=d.main)
        if not d.main:
            torch.manual_seed(args.seed + d.rank + 7919 * state.step)
        _log(d, f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step} "
                f"(best val BLEU-4 {state.best_score:.4f})")
    else:
        torch.manual_seed(args.seed + d.rank)

    # What a batch trains: the decoder on cached grids, or the whole captioner on pixels (fine-tuning).
    net = model.decoder if model.encoder.frozen else model
    if d.world > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    writer = None
    if d.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=state.step if resuming else None)

    def save_last() -> None:
        if d.main:
            model.save(last, extra={"training": {"epoch": state.epoch, "step": state.step}},
                       extra_files=state_files(optimizer, state))

    per_image = f", {args.captions_per_image} per image in a batch" if args.captions_per_image > 1 else ""
    _log(d, f"training on {len(train_records)} images ({len(dataset)} captions{per_image}), validating on "
            f"{len(val_records)}; "
            f"vocabulary {len(vocab)} words; {sum(p.numel() for g in groups for p in g['params']):,} trainable "
            f"parameters; device {device}" + (f" x {d.world} processes" if d.world > 1 else ""))
    start = time.time()
    while state.epoch < args.epochs:
        t0 = time.time()
        for group, base in zip(optimizer.param_groups, (args.lr, args.encoder_lr), strict=False):
            group["lr"] = base * args.lr_decay ** state.epoch  # stateless schedule: resumes need nothing
        batches = training_batches(dataset, args, state.epoch, d)[state.step_in_epoch:]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_captions,
                            num_workers=args.num_workers, pin_memory=device.type == "cuda")
        stats = train_one_epoch(net, loader, optimizer, device, state, args, d, writer, save_last, len(batches), last)
        score = -1.0
        if d.main:
            score, samples = evaluate(model, val_records, features, args, device)
        (score,) = d.broadcast([score], device)
        state.epoch += 1
        state.step_in_epoch = 0
        improved = state.record_validation(score, args.patience)
        state.history.append({"epoch": state.epoch, "step": state.step, "val_bleu4": score,
                              "seconds": round(time.time() - t0, 1), **stats})
        if d.main:
            writer.add_scalar("val/bleu4", score, state.step)
            writer.add_scalar("train/epoch_loss", stats["loss"], state.step)
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], state.step)
            writer.add_text("val/sample", samples[0] if samples else "", state.step)
            if improved:
                model.save(best, extra={"training": {"epoch": state.epoch, "step": state.step, "val_bleu4": score}})
            save_last()
            writer.flush()
        _log(d, f"epoch {state.epoch}/{args.epochs}  loss {stats['loss']:.4f}  nll {stats['nll']:.4f}  "
                f"val BLEU-4 {score:.4f}{' *' if improved else ''}  (best {state.best_score:.4f} at epoch "
                f"{state.best_epoch})  {time.time() - t0:.0f}s")
        if state.stopped_early:
            _log(d, f"early stopping: no better val BLEU-4 for {args.patience} epochs")
            break
    _log(d, f"done in {time.time() - start:.0f}s: best val BLEU-4 {state.best_score:.4f} at epoch "
            f"{state.best_epoch}; checkpoint {best}")
    if writer is not None:
        writer.close()
    return state
