"""Accuracy as in the Visual7W toolkit: multiple choice (the chosen candidate is the answer) and
open-ended exact match (the generated answer equals the answer after `normalize`), overall and per
question type; where the data hold several human answers (VQA v2), the official VQA accuracy instead
of exact match, per answer type and per question type. `vqa evaluate RUN [--split test] [--json OUT]
[--results-out FILE]` prints the paper's table."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from captioning import checkpoint as ckpt
from captioning.data.annotations import DatasetError
from captioning.encoder_decoder import resolve_checkpoint
from captioning.engine.device import resolve_device
from captioning.limits import INFERENCE_HELP, INFERENCE_KINDS
from captioning.training.options import RUN_CONFIG

from .config import QATask, TrainConfig
from .data import QA, QADataset, normalize
from .features import BoxFeatures, Grids, dataset_grids, live_grids, zero_grids
from .model import BUNDLED_DIR, Answerer, load_answerer, read_question
from .question_kinds import question_kind
from .sources import load_sources
from .vqa_accuracy import vqa_accuracy


@dataclass
class TypeAccuracy:
    correct: Counter = field(default_factory=Counter)  # per type: questions right (the VQA accuracy: its sum)
    total: Counter = field(default_factory=Counter)

    def add(self, kind: str, score: float) -> None:
        """One question of type `kind`: `score` 1 or 0 (True, False), or its VQA accuracy in [0, 1]."""
        self.total[kind] += 1
        self.correct[kind] += score

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


def _cells(acc: TypeAccuracy, types: Sequence[str], width: int) -> str:
    return "".join(f"{'-':>{width + 1}}" if acc.of(t) is None else f"{acc.of(t):>{width + 1}.3f}" for t in types)


@dataclass
class Report:
    split: str
    task: QATask
    types: list[str]
    multiple_choice: TypeAccuracy | None   # None: no question has wrong choices (VQA v2)
    open_ended: TypeAccuracy | None        # exact match, where one answer is right
    predictions: list[dict] = field(default_factory=list)
    vqa: TypeAccuracy | None = None        # the official VQA accuracy, where the data hold several human answers
    question_types: TypeAccuracy | None = None  # the same per question type ("what color is the", "how many")
    counts: Counter | None = None          # questions per type (default: those of multiple choice)
    answer_types: dict[str, TypeAccuracy] | None = None  # multiple choice / open-ended per VQA answer type

    @property
    def questions(self) -> Counter:
        return self.counts if self.counts is not None else self.multiple_choice.total

    @property
    def open_score(self) -> float | None:
        """Mean open-ended score: the VQA accuracy where several humans answered, exact match elsewhere."""
        parts = [a for a in (self.open_ended, self.vqa) if a is not None]
        n = sum(sum(a.total.values()) for a in parts)
        return sum(sum(a.correct.values()) for a in parts) / n if n else None

    def table(self) -> str:
        """The Visual7W table: one column per question type, then overall; VQA v2 adds its question types."""
        types = [t for t in self.types if self.questions[t]]
        width = max(7, *(len(t) for t in types)) if types else 7
        head = f"{'':<17}" + "".join(f"{t:>{width + 1}}" for t in types) + f" | {'overall':>7}"
        rows = [head]
        for label, acc in (("multiple choice", self.multiple_choice), ("open-ended", self.open_ended),
                           ("VQA accuracy", self.vqa)):
            if acc is not None:
                rows.append(f"{label:<17}{_cells(acc, types, width)} | {acc.overall:>7.3f}")
        counts = "".join(f"{self.questions[t]:>{width + 1}d}" for t in types)
        rows.append(f"{'questions':<17}{counts} | {sum(self.questions.values()):>7d}")
        if self.answer_types:
            kinds = ("yes/no", "number", "other")
            rows += ["", f"{'per answer type':<17}" + "".join(f"{k:>9}" for k in kinds) + f" | {'overall':>7}"]
            for label, acc in self.answer_types.items():
                rows.append(f"{label:<17}{_cells(acc, kinds, 8)} | {acc.overall:>7.3f}")
            first = next(iter(self.answer_types.values()))
            rows.append(f"{'questions':<17}" + "".join(f"{first.total[k]:>9d}" for k in kinds)
                        + f" | {sum(first.total.values()):>7d}")
        if self.question_types is not None:
            kinds = sorted(self.question_types.total)
            name = max(28, *(len(k) for k in kinds))
            rows += ["", f"{'VQA accuracy per question type':<{name + 2}}  {'accuracy':>8}  {'questions':>9}"]
            rows += [f"  {k:<{name}}  {self.question_types.of(k):>8.3f}  {self.question_types.total[k]:>9d}"
                     for k in kinds]
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        out = {"split": self.split, "task": self.task.value,
               "multiple_choice": self.multiple_choice.to_dict(self.types) if self.multiple_choice else None,
               "open_ended": self.open_ended.to_dict(self.types) if self.open_ended else None}
        if self.answer_types:
            out["per_answer_type"] = {label: acc.to_dict(["yes/no", "number", "other"])
                                      for label, acc in self.answer_types.items()}
        if self.vqa is not None:
            out["vqa_accuracy"] = {**self.vqa.to_dict(self.types),
                                   "per_question_type": self.question_types.to_dict(sorted(self.question_types.total))
                                   ["per_type"]}
        return {**out, "predictions": self.predictions}


@torch.inference_mode()
def evaluate_questions(model: Answerer, questions: Sequence[QA], grids: Grids, *, split: str, types: Sequence[str],
                       boxes: BoxFeatures | None = None, batch_size: int = 128, beam_size: int = 1,
                       open_ended: bool = True, progress: bool = False, tags: bool = False) -> Report:
    """Multiple-choice (questions with wrong choices) and open-ended accuracy of `model` on `questions`:
    the official VQA accuracy where the data hold several human answers, exact match elsewhere; questions
    without an answer (a VQA v2 test split) are answered, not scored. As `Answerer.answer` does, a yes/no
    question's open-ended answer is yes or no, and with `tags` the encoder's classifier answers what it
    answers confidently ("what is this?", "is there a cat?"; `vqa.tag_answers`)."""
    was_training = model.training
    model.eval()
    pointing = model.config.task == QATask.POINTING
    generating = open_ended and not pointing
    mc, op, vqa, per_question_type = TypeAccuracy(), TypeAccuracy(), TypeAccuracy(), TypeAccuracy()
    by_answer_type = {"multiple choice": TypeAccuracy(), "open-ended": TypeAccuracy()}
    counts: Counter = Counter()
    predictions = []
    try:
        for i in tqdm(range(0, len(questions), batch_size), desc=f"evaluating {split}", disable=not progress,
                      leave=False):
            batch = questions[i:i + batch_size]
            features = grids([q.image for q in batch]).to(model.device)
            ids = [read_question(model.vocab, q.question, model.config.max_question_len)[0] for q in batch]
            chosen = _choices(model, batch, features, ids, boxes if pointing else None)
            generated = [None] * len(batch)
            if generating:
                generated = _open_answers(model, features, ids, [q.question for q in batch], beam_size)
            found = model.tag_answers(features, [q.question for q in batch], generated) if tags and not pointing \
                else [None] * len(batch)
            for k, (q, answer) in enumerate(zip(batch, found, strict=True)):
                if answer is None:
                    continue
                if generating:
                    generated[k] = answer[0]
                matches = [n for n, c in enumerate(q.candidates) if normalize(str(c)) == answer[0]]
                if chosen[k] is not None and matches:
                    chosen[k] = matches[0]
            for q, pick, text, answer in zip(batch, chosen, generated, found, strict=True):
                prediction = {"qa_id": q.qa_id, "type": q.type, "question": q.question, "answer": q.answer}
                if answer is not None:
                    prediction["from_tags"] = answer[1]
                if q.answer is not None:
                    counts[q.type] += 1
                if pick is not None:
                    mc.add(q.type, pick == q.answer_index)
                    if q.answer_type:
                        by_answer_type["multiple choice"].add(q.answer_type, pick == q.answer_index)
                    prediction["candidates"] = [{"answer": q.candidates[pick]}]
                if text is not None:
                    prediction["open_ended"] = text
                    if len(q.answers) > 1:
                        score = vqa_accuracy(text, q.answers)
                        vqa.add(q.type, score)
                        per_question_type.add(q.question_type or q.type, score)
                        prediction.update(question_type=q.question_type, vqa_accuracy=score)
                    elif q.answer is not None:
                        score = text == normalize(str(q.answer))
                        op.add(q.type, score)
                    if q.answer is not None and q.answer_type:
                        by_answer_type["open-ended"].add(q.answer_type, score)
                predictions.append(prediction)
    finally:
        model.train(was_training)
    scored = [a if a.total else None for a in (mc, op, vqa, per_question_type)]
    answer_types = {label: acc for label, acc in by_answer_type.items() if acc.total} or None
    return Report(split, QATask(model.config.task), list(types), scored[0], scored[1], predictions, scored[2],
                  scored[3], counts, answer_types)


def _open_answers(model: Answerer, features: torch.Tensor, ids: list[list[int]], questions: Sequence[str],
                  beam_size: int) -> list[str]:
    """Generated answers; a yes/no question's is yes or no, whichever scores higher (as `Answerer.answer`)."""
    hyps = model.generate(features, ids, beam_size=beam_size)
    texts = [" ".join(model.vocab.words[t] for t in h[0].token_ids) for h in hyps]
    rows = [k for k, q in enumerate(questions) if question_kind(q) == "yes/no"]
    if rows:
        answers = model.yes_no(features[rows], [ids[k] for k in rows])
        for k, answer in zip(rows, answers or [], strict=False):
            texts[k] = answer
    return texts


def _choices(model: Answerer, batch: Sequence[QA], features: torch.Tensor, ids: list[list[int]],
             boxes: BoxFeatures | None) -> list[int | None]:
    """The chosen candidate of each question that has wrong choices to choose from (else None)."""
    if boxes is not None:
        return model.point(features, ids, boxes.stack([q.candidates for q in batch])).argmax(dim=1).tolist()
    rows = [k for k, q in enumerate(batch) if len(q.candidates) > 1 and q.answer is not None]
    chosen: list[int | None] = [None] * len(batch)
    if rows:
        scores = model.score_candidates(features[rows], [ids[k] for k in rows],
                                        [[model.answer_ids(str(c)) for c in batch[k].candidates] for k in rows])
        for k, pick in zip(rows, scores.argmax(dim=1).tolist(), strict=True):
            chosen[k] = pick
    return chosen


def write_results(path: str | Path, report: Report) -> Path:
    """The official results format, [{"question_id", "answer"}], of every question answered: what the
    VQA evaluation server takes."""
    results = [{"question_id": p["qa_id"], "answer": p["open_ended"]} for p in report.predictions if "open_ended" in p]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    return out


# ---- command -------------------------------------------------------------------------------------
DATA_KEYS = ("format", "annotations", "images", "questions", "image_pattern", "questions_split", "skip_invalid",
             "val_holdout", "seed", "choices_seed", "zero_image")
FILE_KEYS = ("annotations", "images", "questions", "image_pattern", "questions_split")  # what names the data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder (its best, else last checkpoint), checkpoint folder or bundled name")
    parser.add_argument("--split", choices=("train", "val", "test"),
                        help="split to evaluate (default: test; a VQA v2 file named by --questions is taken whole, "
                        "as this split, by default the one its data_subtype names)")
    parser.add_argument("--json", metavar="OUT", help="also write the scores and every prediction as JSON")
    parser.add_argument("--results-out", metavar="FILE", help="also write the answers in the official VQA results "
                        'format, [{"question_id", "answer"}] (what the evaluation server takes)')
    parser.add_argument("--beam-size", type=int, default=1, help="open-ended decoding beam (1: greedy)")
    parser.add_argument("--tags", action=argparse.BooleanOptionalAction, default=True,
                        help="let the encoder's classifier answer what it answers confidently (\"what is this?\", "
                             "\"is there a cat?\"), as `vqa answer` and the app do (default: on)")
    parser.add_argument("--no-open-ended", dest="open_ended", action="store_false",
                        help="multiple choice only (skips answer generation)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--inference", choices=INFERENCE_KINDS, default="fast", help=INFERENCE_HELP)
    parser.add_argument("--format", help="data to evaluate on (default: what the model was trained on): "
                        "visual7w | easy-vqa | shapes | vqa (VQA v2)")
    parser.add_argument("--annotations", help="annotation file (default: the training run's); VQA v2: the "
                        "answers, none for a test split")
    parser.add_argument("--questions", help="VQA v2 questions file (with --format vqa)")
    parser.add_argument("--images", help="images folder (default: the training run's)")
    parser.add_argument("--image-pattern", help="VQA v2 image file names from {image_id} and {data_subtype} "
                        "(default COCO_{data_subtype}_{image_id:012d}.jpg)")
    parser.add_argument("--cache-dir", help="encoder feature cache (default: the training run's, else a temporary "
                        "folder)")


def data_config(folder: Path, args: argparse.Namespace) -> TrainConfig:
    """The training run's data settings (saved in the checkpoint), with any given overrides. Data of
    another format, or a VQA v2 questions file, bring their own files: none of the saved ones is kept
    for them but the images folder and its pattern (a test split has no annotations to inherit)."""
    saved = ckpt.read_config(folder).get("data") or {}
    values = {k: v for k, v in saved.items() if k in DATA_KEYS}
    questions = getattr(args, "questions", None)
    wanted = args.format or ("vqa" if questions and "vqa" not in str(values.get("format", "")).split("+") else None)
    if wanted and wanted != values.get("format"):
        values = {k: v for k, v in values.items() if k not in FILE_KEYS}
        values["format"] = wanted
    if questions:
        values = {k: v for k, v in values.items() if k not in ("annotations", "questions_split")}
        values["questions_split"] = args.split  # the file is taken whole, as --split (default: its own)
    for key in ("annotations", "images", "questions"):
        if getattr(args, key, None):
            values[key] = str(Path(getattr(args, key)).absolute())
    if getattr(args, "image_pattern", None):
        values["image_pattern"] = args.image_pattern
    if "format" not in values:
        raise ValueError(f"{folder}: the checkpoint does not say what data it was trained on; "
                         "pass --format (and --annotations/--images)")
    return TrainConfig(**values, model=ckpt.read_config(folder)["model"])


def default_split(dataset: QADataset, named_file: bool) -> str:
    """test; but a VQA v2 file named on the command line is evaluated as its own split (val for val2014)."""
    if dataset.split("test") or not named_file:
        return "test"
    return next((s for s in ("val", "train") if dataset.split(s)), "test")


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
    model = load_answerer(folder, device, inference=args.inference)
    config = data_config(folder, args)
    if args.results_out and not args.open_ended:
        raise ValueError("--results-out writes the generated answers: drop --no-open-ended")
    try:
        dataset: QADataset = load_sources(config)
    except DatasetError as exc:
        named = any(getattr(args, key, None) for key in ("format", "annotations", "questions", "images"))
        hint = "" if named else " (the training run's data; pass --annotations/--images for files here)"
        raise DatasetError(f"{exc}{hint}") from None
    split = args.split or default_split(dataset, bool(getattr(args, "questions", None)))
    questions = dataset.split(split)
    if not questions:
        raise ValueError(f"no {split} questions in {config.format} data")
    if not args.open_ended and not any(len(q.candidates) > 1 for q in questions):
        raise ValueError("--no-open-ended leaves nothing to score: these questions have no wrong choices "
                         "(VQA v2 is open-ended)")
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
    report = evaluate_questions(model, questions, grids, split=split, types=dataset.types, boxes=boxes,
                                batch_size=args.batch_size, beam_size=args.beam_size, open_ended=args.open_ended,
                                progress=True, tags=args.tags)
    print(f"{folder}: {config.format} {QATask(model.config.task).value}, split {split}, {len(questions):,} questions")
    if any((report.multiple_choice, report.open_ended, report.vqa)):
        print(report.table())
    unanswered = sum(q.answer is None for q in questions)
    if unanswered:
        print(f"{unanswered:,} questions have no answers to score against (a test split, no --annotations): "
              "answered only" + ("" if args.results_out else "; --results-out FILE writes the answers"))
    if args.results_out:
        print(f"answers: {write_results(args.results_out, report)}")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"checkpoint": str(folder), "format": config.format, **report.to_dict()},
                                  indent=1, ensure_ascii=False), encoding="utf-8")
    return report
