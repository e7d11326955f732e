"""`vqa baseline --annotations QA.json --split val`: the question-only baseline, answer priors per
question form. No image is seen: the multiple-choice pick is the candidate given most often as the
training answer to the same question text (then to the same question type, then the first in the
fixed candidate order); the open-ended answer is the most frequent training answer to that text."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

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


def evaluate_priors(train: Sequence[QA], questions: Sequence[QA], *, split: str, types: Sequence[str]) -> Report:
    priors = AnswerPriors(train)
    mc, op = TypeAccuracy(), TypeAccuracy()
    for q in questions:
        mc.add(q.type, priors.choose(q) == q.answer_index)
        op.add(q.type, priors.open_ended(q) == normalize(str(q.answer)))
    return Report(split, QATask.TELLING, list(types), mc, op)


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
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"baseline": "question-only answer priors", **report.to_dict()}, indent=1),
                       encoding="utf-8")
    return report
