"""`vqa baseline --annotations QA.json --split val`: the question-only baseline, answer priors per
question form. No image is seen: the multiple-choice pick is the candidate given most often as the
training answer to the same question text (then to the same question type, then the first in the
fixed candidate order); the open-ended answer is the most frequent training answer to that text.
Scores are per question type and, where the file gives each question an "answer_type" (yes/no,
number, other: `vqa prepare caption-qa` does), per answer type too."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from captioning.data.annotations import read_json

from .config import QATask
from .data import QA, SPLITS, load_visual7w, normalize
from .evaluate import Report, TypeAccuracy


class AnswerPriors:
    """Training answer counts per normalised question text and per question type."""

    def __init__(self, train: Sequence[QA]):
        self.by_question: dict[str, Counter] = {}
        self.by_type: dict[str, Counter] = {}
        for q in train:
            answer = normalize(str(q.answer))
            self.by_question.setdefault(normalize(q.question), Counter())[answer] += 1
            self.by_type.setdefault(q.type, Counter())[answer] += 1

    def _key(self, q: QA, answer: str) -> tuple[int, int]:
        return (self.by_question.get(normalize(q.question), Counter())[answer],
                self.by_type.get(q.type, Counter())[answer])

    def choose(self, q: QA) -> int:
        scores = [self._key(q, normalize(str(c))) for c in q.candidates]
        return max(range(len(scores)), key=lambda i: (scores[i], -i))

    def open_ended(self, q: QA) -> str:
        counts = self.by_question.get(normalize(q.question)) or self.by_type.get(q.type) or Counter({"": 1})
        return counts.most_common(1)[0][0]


def evaluate_priors(train: Sequence[QA], questions: Sequence[QA], *, split: str, types: Sequence[str],
                    group: Callable[[QA], str] | None = None) -> Report:
    """Accuracy of the answer priors of `train` on `questions`, per question type (or per `group(q)`)."""
    priors = AnswerPriors(train)
    group = group or (lambda q: q.type)
    mc, op = TypeAccuracy(), TypeAccuracy()
    for q in questions:
        mc.add(group(q), priors.choose(q) == q.answer_index)
        op.add(group(q), priors.open_ended(q) == normalize(str(q.answer)))
    return Report(split, QATask.TELLING, list(types), mc, op)


ANSWER_TYPES = ("yes/no", "number", "other")


def answer_types(annotations: str | Path) -> dict:
    """qa_id -> "answer_type" of every question of a Visual7W telling file that gives one."""
    data = read_json(Path(annotations))
    images = data.get("images") if isinstance(data, dict) else None
    return {qa["qa_id"]: qa["answer_type"] for image in images or [] if isinstance(image, dict)
            for qa in image.get("qa_pairs") or [] if isinstance(qa, dict) and isinstance(qa.get("answer_type"), str)
            and isinstance(qa.get("qa_id"), (int, str))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="Visual7W telling JSON (e.g. from vqa prepare caption-qa)")
    parser.add_argument("--split", default="val", choices=SPLITS, help="split to score (priors come from train)")
    parser.add_argument("--json", metavar="OUT", help="also write the scores as JSON")


def main(args: argparse.Namespace) -> Report:
    data = load_visual7w(args.annotations, ".", "telling", check_files=False)
    questions = data.split(args.split)
    if not questions:
        raise ValueError(f"no {args.split} questions in {args.annotations}")
    report = evaluate_priors(data.split("train"), questions, split=args.split, types=data.types)
    print(f"question-only baseline (answer priors per question), split {args.split}, {len(questions):,} questions")
    print(report.table())
    kinds = answer_types(args.annotations)
    by_answer = None
    if kinds and all(q.qa_id in kinds for q in questions):
        seen = {kinds[q.qa_id] for q in questions}
        by_answer = evaluate_priors(data.split("train"), questions, split=args.split, group=lambda q: kinds[q.qa_id],
                                    types=[t for t in ANSWER_TYPES if t in seen] + sorted(seen - set(ANSWER_TYPES)))
        print("per answer type")
        print(by_answer.table())
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        scores = {"baseline": "question-only answer priors", **report.to_dict()}
        if by_answer is not None:
            scores["per_answer_type"] = {k: by_answer.to_dict()[k] for k in ("multiple_choice", "open_ended")}
        out.write_text(json.dumps(scores, indent=1), encoding="utf-8")
    return report
