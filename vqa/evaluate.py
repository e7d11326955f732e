"""Accuracy as in the Visual7W toolkit: multiple choice (the chosen candidate is the answer) and
open-ended exact match (the generated answer equals the answer after `normalize`), overall and per
question type; `vqa evaluate RUN [--split test] [--json OUT]` prints the paper's table."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from captioning import checkpoint as ckpt
from captioning.data.annotations import DatasetError
from captioning.data.cache import CacheError, FeatureCache
from captioning.device import resolve_device
from captioning.encoder_decoder import resolve_checkpoint
from captioning.images import open_image
from captioning.training.options import RUN_CONFIG

from .config import QATask, TrainConfig
from .data import QA, QADataset, load_sources, normalize
from .features import BoxFeatures, grid_cache
from .model import BUNDLED_DIR, Answerer, load_answerer, read_question

Grids = Callable[[Sequence[str]], torch.Tensor]  # image keys -> (B, P, D) encoder grids


@dataclass
class TypeAccuracy:
    correct: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)

    def add(self, kind: str, ok: bool) -> None:
        self.total[kind] += 1
        self.correct[kind] += int(ok)

    @property
    def overall(self) -> float:
        n = sum(self.total.values())
        return sum(self.correct.values()) / n if n else 0.0

    def of(self, kind: str) -> float | None:
        return self.correct[kind] / self.total[kind] if self.total[kind] else None

    def to_dict(self, types: Sequence[str]) -> dict[str, Any]:
        return {"overall": self.overall, "correct": sum(self.correct.values()), "total": sum(self.total.values()),
                "per_type": {t: {"accuracy": self.of(t), "correct": self.correct[t], "total": self.total[t]}
                             for t in types}}


@dataclass
class Report:
    split: str
    task: QATask
    types: list[str]
    multiple_choice: TypeAccuracy
    open_ended: TypeAccuracy | None
    predictions: list[dict] = field(default_factory=list)

    def table(self) -> str:
        """The Visual7W table: one column per question type, then overall."""
        types = [t for t in self.types if self.multiple_choice.total[t]]
        width = max(7, *(len(t) for t in types)) if types else 7
        head = f"{'':<17}" + "".join(f"{t:>{width + 1}}" for t in types) + f" | {'overall':>7}"
        rows = [head]
        for label, acc in (("multiple choice", self.multiple_choice), ("open-ended", self.open_ended)):
            if acc is None:
                continue
            cells = "".join(f"{acc.of(t):>{width + 1}.3f}" for t in types)
            rows.append(f"{label:<17}{cells} | {acc.overall:>7.3f}")
        counts = "".join(f"{self.multiple_choice.total[t]:>{width + 1}d}" for t in types)
        rows.append(f"{'questions':<17}{counts} | {sum(self.multiple_choice.total.values()):>7d}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "task": self.task.value,
                "multiple_choice": self.multiple_choice.to_dict(self.types),
                "open_ended": self.open_ended.to_dict(self.types) if self.open_ended else None,
                "predictions": self.predictions}


def cached_grids(cache: Any) -> Grids:
    """Grids from a `FeatureCache` (float16 on disk -> float32)."""
    return lambda keys: torch.stack([cache[k] for k in keys]).float()


def dataset_grids(encoder: Any, dataset: QADataset, cache_dir: Path, *, device: Any = "cpu",
                  num_workers: int = 0) -> Grids:
    """Grids of the dataset's images from the feature cache in `cache_dir`, encoded once when missing.

    A cache built by captioning (`captioning train`, Flickr8k) names its rows by image file stem, not
    by the QA keys ("v7w:<image_id>"); when such a cache of this encoder (same weights fingerprint)
    holds every image, it is read as is and nothing is encoded."""
    used = {q.image: Path(dataset.images[q.image]).stem for q in dataset.questions}
    try:
        cache = FeatureCache.open(cache_dir, encoder=encoder)
    except CacheError:
        cache = None
    if cache is not None and not all(k in cache for k in used) and all(s in cache for s in used.values()):
        return lambda keys: torch.stack([cache[used[k]] for k in keys]).float()
    return cached_grids(grid_cache(encoder, dataset, cache_dir, device=device, num_workers=num_workers))


def zero_grids(model: Answerer) -> Grids:
    """Zeros in place of every image (the `zero_image` ablation: what the question alone gives)."""
    shape = (model.encoder.num_positions, model.encoder.channels)
    return lambda keys: torch.zeros(len(keys), *shape)


def live_grids(model: Answerer, images: dict[str, Path]) -> Grids:
    """Grids computed by the model's encoder (fine-tuned encoders, or no cache)."""
    return lambda keys: model.encoder.encode_pil([open_image(images[k]) for k in keys])


@torch.inference_mode()
def evaluate_questions(model: Answerer, questions: Sequence[QA], grids: Grids, *, split: str, types: Sequence[str],
                       boxes: BoxFeatures | None = None, batch_size: int = 128, beam_size: int = 1,
                       open_ended: bool = True, progress: bool = False) -> Report:
    """Multiple-choice and (telling) open-ended accuracy of `model` on `questions`."""
    was_training = model.training
    model.eval()
    pointing = model.config.task == QATask.POINTING
    mc, op = TypeAccuracy(), (TypeAccuracy() if open_ended and not pointing else None)
    predictions = []
    device = model.device
    try:
        for i in tqdm(range(0, len(questions), batch_size), desc=f"evaluating {split}", disable=not progress,
                      leave=False):
            batch = questions[i:i + batch_size]
            features = grids([q.image for q in batch]).to(device)
            ids = [read_question(model.vocab, q.question, model.config.max_question_len)[0] for q in batch]
            if pointing:
                scores = model.point(features, ids, boxes.stack([q.candidates for q in batch]))
            else:
                scores = model.score_candidates(features, ids, [[model.answer_ids(str(c)) for c in q.candidates]
                                                                for q in batch])
            chosen = scores.argmax(dim=1).tolist()
            generated = [None] * len(batch)
            if op is not None:
                hyps = model.generate(features, ids, beam_size=beam_size)
                generated = [" ".join(model.vocab.words[t] for t in h[0].token_ids) for h in hyps]
            for q, pick, text in zip(batch, chosen, generated, strict=True):
                mc.add(q.type, pick == q.answer_index)
                if op is not None:
                    op.add(q.type, text == normalize(q.answer))
                predictions.append({"qa_id": q.qa_id, "type": q.type, "question": q.question, "answer": q.answer,
                                    "candidates": [{"answer": q.candidates[pick]}],
                                    **({"open_ended": text} if text is not None else {})})
    finally:
        model.train(was_training)
    return Report(split, QATask(model.config.task), list(types), mc, op, predictions)


# ---- command -------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder (its best, else last checkpoint), checkpoint folder or bundled name")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--json", metavar="OUT", help="also write the scores and every prediction as JSON")
    parser.add_argument("--beam-size", type=int, default=1, help="open-ended decoding beam (1: greedy)")
    parser.add_argument("--no-open-ended", dest="open_ended", action="store_false",
                        help="multiple choice only (skips answer generation)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--format", help="data to evaluate on (default: what the model was trained on)")
    parser.add_argument("--annotations", help="annotation file (default: the training run's)")
    parser.add_argument("--images", help="images folder (default: the training run's)")
    parser.add_argument("--cache-dir", help="encoder feature cache (default: the training run's, else a temporary "
                        "folder)")


def data_config(folder: Path, args: argparse.Namespace):
    """The training run's data settings (saved in the checkpoint), with any given overrides."""

    saved = ckpt.read_config(folder).get("data") or {}
    values = {k: v for k, v in saved.items() if k in ("format", "annotations", "images", "skip_invalid", "val_holdout",
                                                          "seed", "choices_seed", "zero_image")}
    for key in ("format", "annotations", "images"):
        if getattr(args, key, None):
            values[key] = str(Path(getattr(args, key)).absolute()) if key != "format" else args.format
    if "format" not in values:
        raise ValueError(f"{folder}: the checkpoint does not say what data it was trained on; "
                         "pass --format (and --annotations/--images)")
    return TrainConfig(**values, model=ckpt.read_config(folder)["model"])


def _cache_dir(given: str | None, folder: Path) -> Path:
    """--cache-dir; else, for a checkpoint inside a run folder, that run's cache; else a temporary folder."""
    if given:
        return Path(given)
    run = folder.parent
    if (run / RUN_CONFIG).is_file():
        try:  # only one key is needed: read leniently (a run folder of an older version still works)
            saved = (yaml.safe_load((run / RUN_CONFIG).read_text(encoding="utf-8")) or {}).get("cache_dir")
        except (OSError, yaml.YAMLError, AttributeError):
            saved = None
        return Path(saved) if saved else run / "features"
    return Path(tempfile.gettempdir()) / "showtell-vqa-features"


def main(args: argparse.Namespace) -> Report:
    device = resolve_device(args.device)
    folder = resolve_checkpoint(args.run, BUNDLED_DIR)
    model = load_answerer(folder, device)
    config = data_config(folder, args)
    try:
        dataset: QADataset = load_sources(config)
    except DatasetError as exc:
        hint = "" if args.annotations else " (the training run's data; pass --annotations/--images for files here)"
        raise DatasetError(f"{exc}{hint}") from None
    questions = dataset.split(args.split)
    if not questions:
        raise ValueError(f"no {args.split} questions in {config.format} data")
    boxes = None
    if config.zero_image:
        grids = zero_grids(model)
    elif model.encoder.frozen:
        cache_dir = _cache_dir(args.cache_dir, Path(folder))
        subset = QADataset(dataset.task, questions, dataset.images, dataset.boxes, dataset.types)
        grids = dataset_grids(model.encoder, subset, cache_dir, device=device)
        if model.config.task == QATask.POINTING:
            boxes = BoxFeatures.build(model.encoder, subset, cache_dir, device=device)
    else:
        grids = live_grids(model, dataset.images)
    report = evaluate_questions(model, questions, grids, split=args.split, types=dataset.types, boxes=boxes,
                                batch_size=args.batch_size, beam_size=args.beam_size, open_ended=args.open_ended,
                                progress=True)
    print(f"{folder}: {config.format} {QATask(model.config.task).value}, split {args.split}, {len(questions):,} questions")
    print(report.table())
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"checkpoint": str(folder), "format": config.format, **report.to_dict()},
                                  indent=1, ensure_ascii=False), encoding="utf-8")
    return report
