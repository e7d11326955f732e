"""Train a question answerer: `vqa train --format easy-vqa --out RUN` or
`vqa train --annotations dataset_v7w_telling.json --images DIR --out RUN [--task pointing]`.

Reference-script layout: `add_arguments` + `main(args)`; the loop is captioning's shared `Trainer`,
this module supplies the VQA hooks (question batches, the answer loss, validation accuracy,
checkpoints). The frozen encoder sees every image once (feature cache); RUN/last holds the latest
checkpoint and the training state in one atomic folder, so rerunning the same command resumes;
RUN/best is the checkpoint with the best validation accuracy."""

from __future__ import annotations

import argparse
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from captioning import checkpoint as ckpt
from captioning.engine.device import resolve_device
from captioning.guidance import unreliable_tags
from captioning.training import (
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
)
from captioning.vocab import Vocabulary, tokenize

from .config import QATask, TrainConfig, add_config_arguments, given, resolve_config, write_run_config
from .data import QA, QADataset, normalize, vocabulary_texts
from .decoder import pack
from .evaluate import Report, evaluate_questions
from .features import BoxFeatures, Grids, dataset_grids, live_grids, zero_grids
from .model import Answerer, read_question
from .question_kinds import question_kind
from .sources import load_sources


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run folder: config, checkpoints (best/, last/), logs (tb/)")
    parser.add_argument("--config", help="YAML file of defaults (keys as the flags below, with underscores)")
    add_config_arguments(parser)


def _encode(model: Answerer, questions: Sequence[QA]) -> list[tuple[list[int], list[int]]]:
    """(question ids, answer ids) per question; answers of pointing questions are not words."""
    out = []
    for q in questions:
        ids = read_question(model.vocab, q.question, model.config.max_question_len)[0]
        out.append((ids, model.answer_ids(q.answer) if isinstance(q.answer, str) else []))
    return out


def validate(model: Answerer, dataset: QADataset, questions: Sequence[QA], grids: Grids,
             boxes: BoxFeatures | None, config: TrainConfig) -> tuple[float, Report]:
    """(score that selects the best checkpoint, full report) on the validation questions."""
    report = evaluate_questions(model, questions, grids, split="val", types=dataset.types, boxes=boxes,
                                batch_size=max(config.batch_size, 128), beam_size=config.beam_size)
    open_score = report.open_score
    use_open = open_score is not None and (config.select_metric == "open" or report.multiple_choice is None)
    return (open_score if use_open else report.multiple_choice.overall if report.multiple_choice else 0.0), report


def _summary(report: Report) -> str:
    parts = [f"MC {report.multiple_choice.overall:.4f}"] if report.multiple_choice else []
    if report.open_score is not None:
        parts.append(f"{'VQA acc' if report.vqa else 'open'} {report.open_score:.4f}")
    return "val " + "  ".join(parts)


def _portable(path: str | None) -> str | None:
    """What the checkpoint records as its data: relative to the working directory when inside it, so a
    checkpoint copied elsewhere (a bundled model) finds its data from the repository root."""
    if path is None:
        return None
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


class AnswerHooks(Hooks):
    """VQA's part of the loop: question batches, the answer (or box) loss, validation accuracy."""

    def __init__(self, model: Answerer, dataset: QADataset, grids: Grids, boxes: BoxFeatures | None,
                 config: TrainConfig, data: dict):
        self.model, self.dataset, self.grids, self.boxes, self.config, self.data = \
            model, dataset, grids, boxes, config, data
        self.train, self.val = dataset.split("train"), dataset.split("val")
        self.encoded = _encode(model, self.train)

    def start_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        torch.manual_seed(self.config.seed + epoch)  # dropout and hard-attention samples: same on a rerun

    def batches(self, epoch: int, done: int) -> list[list[int]]:
        return epoch_batches(len(self.train), self.config.batch_size, epoch, self.config.seed, Dist())[done:]

    def step(self, batch: list[int]):
        model, v = self.model, self.model.vocab
        qs = [self.train[i] for i in batch]
        features = self.grids([q.image for q in qs]).to(model.device)
        pointing = self.config.model.task == QATask.POINTING
        seq = pack([self.encoded[i][0] for i in batch], None if pointing else [self.encoded[i][1] for i in batch],
                   start_id=v.start_id, end_id=v.end_id).to(model.device)
        if not pointing:
            return model.decoder(features, seq)
        box_features = self.boxes.stack([q.candidates for q in qs]).to(model.device)
        targets = torch.tensor([q.answer_index for q in qs], device=model.device)
        return model.decoder(features, seq, box_features, targets)

    def validate(self) -> Validation:
        score, report = validate(self.model, self.dataset, self.val, self.grids, self.boxes, self.config)
        mc = report.multiple_choice.overall if report.multiple_choice else None
        scalars = {"val/mc_accuracy": mc} if mc is not None else {}
        if report.open_score is not None:
            scalars["val/open_accuracy"] = report.open_score
        history = {"val": score, "val_mc": mc, "val_open": report.open_score}
        return Validation(score, _summary(report), scalars, {}, history)

    def save(self, folder: Path, state: TrainerState, validation: Validation | None,
             extra_files: dict[str, bytes] | None) -> None:
        training = {"epoch": state.epoch, "step": state.step,
                    "val_score": validation.score if validation else None}
        self.model.save(folder, extra={"training": training, "data": self.data}, extra_files=extra_files)


def main(args: argparse.Namespace) -> TrainerState:
    run_dir = Path(args.out).absolute()
    with run_folder_lock(run_dir):
        return train_in(run_dir, args)


def train_in(run_dir: Path, args: argparse.Namespace) -> TrainerState:
    """`main` for a run folder this process holds."""
    prepare_run_folder(run_dir)
    last = run_dir / "last"
    resuming = can_resume(last)
    config = resolve_config(run_dir, args.config, given(args), resuming)
    done = finished_message(run_dir, config.epochs, config.patience, "val")
    if done:
        print(done)
        return saved_state(last)
    device = resolve_device(config.device)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)

    dataset = load_sources(config)
    train = dataset.split("train")
    if not train:
        raise TrainingError("no training questions (split 'train') in the data")
    if not dataset.split("val"):
        raise TrainingError("no validation questions (split 'val'); they pick the best checkpoint")
    if any(q.answer is None for q in train + dataset.split("val")):
        raise TrainingError("questions without answers (a VQA v2 test split, or no --annotations) cannot be "
                            "trained or validated on")
    if config.model.task == QATask.POINTING and config.model.fine_tune_blocks:
        raise TrainingError("pointing trains on cached box-crop features: use a frozen encoder (fine_tune_blocks 0)")
    write_run_config(run_dir, config)
    vocab = Vocabulary.load(last / ckpt.VOCAB) if resuming else \
        Vocabulary.build(vocabulary_texts(train, config.model.task), min_freq=config.min_freq)
    model = Answerer(config.model, vocab).to(device)
    model.trained_kinds = trained_kinds(train)
    if resuming:
        ckpt.load_into(model, ckpt.read_weights(last), last,
                       optional_prefixes=("encoder.",) if model.encoder.frozen else ())
    grids, boxes = _features(model, dataset, config, run_dir)
    if not config.zero_image:
        calibrate_tags(model, train, grids)
    hooks = AnswerHooks(model, dataset, grids, boxes, config, _data_record(config))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    settings = TrainerSettings(epochs=config.epochs, patience=config.patience, clip_grad=config.clip_grad,
                               seed=config.seed, metric="val")
    trainer = Trainer(hooks, model, optimizer, settings, run_dir, device=device)
    if resuming:
        state = trainer.resume(restore_rng=True)
        print(f"resuming {run_dir} at epoch {state.epoch + 1} (best val {state.best_score:.4f})")
    print(f"training on {len(train):,} questions ({len(dataset.images):,} images), validating on "
          f"{len(hooks.val):,}; vocabulary {len(vocab)} words; {sum(p.numel() for p in params):,} trainable "
          f"parameters; device {device}")
    return trainer.fit()


TRAINED_KIND_SHARE = 0.01  # a question kind is "trained on" once it is 1% of the training questions


def trained_kinds(questions: list) -> tuple[str, ...]:
    """The question kinds (`vqa.question_kinds`) that make up a real share of the training questions: the
    answerer says when it is asked another kind."""
    counts = Counter(question_kind(q.question) for q in questions)
    return tuple(sorted(k for k, n in counts.items() if n >= TRAINED_KIND_SHARE * len(questions)))


@torch.inference_mode()
def calibrate_tags(model: Answerer, questions: list[QA], grids: Grids, chunk: int = 256) -> None:
    """The tag words that mislead on the training photos never answer (`captioning.guidance.unreliable_tags`):
    a photo "mentions" the words of its questions that are not answered "no", and their answers."""
    table, settings = model.tag_table, model.tag_settings
    if table is None or model.config.task == QATask.POINTING:
        return
    mentions: dict[str, set[str]] = {}
    for q in questions:
        words = mentions.setdefault(q.image, set())
        words.update(tokenize(str(q.answer)))
        if normalize(str(q.answer)) != "no":
            words.update(tokenize(q.question))
    images = sorted(mentions)
    probs = model.tag_probabilities_of(grids, images, settings.temperature, settings.count_power, chunk)
    unreliable = unreliable_tags(probs, [[sorted(mentions[k])] for k in images], table,
                                 min(settings.what_threshold, settings.yes_threshold))
    model.tag_settings = replace(settings, unreliable=unreliable)


def _features(model: Answerer, dataset: QADataset, config: TrainConfig,
              run_dir: Path) -> tuple[Grids, BoxFeatures | None]:
    """Encoder grids (cached once per image for a frozen encoder) and, for pointing, box-crop features."""
    if config.zero_image:
        return zero_grids(model), None
    if not model.encoder.frozen:
        return live_grids(model, dataset.images), None
    cache_dir = Path(config.cache_dir) if config.cache_dir else run_dir / "features"
    grids = dataset_grids(model.encoder, dataset, cache_dir, device=model.device, num_workers=config.num_workers)
    boxes = None
    if config.model.task == QATask.POINTING:
        boxes = BoxFeatures.build(model.encoder, dataset, cache_dir, device=model.device)
    return grids, boxes


def _data_record(config: TrainConfig) -> dict:
    """What the checkpoint records as its training data (`vqa evaluate RUN` reads it)."""
    return {"format": config.format, "annotations": _portable(config.annotations),
            "images": _portable(config.images), "questions": _portable(config.questions),
            "image_pattern": config.image_pattern, "questions_split": config.questions_split,
            "skip_invalid": config.skip_invalid,
            "val_holdout": config.val_holdout, "seed": config.seed, "choices_seed": config.choices_seed,
            "zero_image": config.zero_image}
