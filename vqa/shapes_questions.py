"""Questions about the synthetic shapes scenes (`captioning.data.shapes`): the VQA side of the shapes set,
generated from each scene's objects, so a shapes-trained answerer has systematic ground truth."""

from __future__ import annotations

import random

from captioning.data.records import ImageRecord
from captioning.data.shapes import COLORS, NUMBERS, SHAPES, center, phrase, relation


def shapes_questions(record: ImageRecord, *, seed: int = 0) -> list[dict]:
    """Visual7W-style multiple-choice questions about a shapes scene; every answer is one word.

    Each item is {"question", "answer", "type", "choices"} with the answer among the shuffled choices."""
    if not record.objects:
        raise ValueError(f"record {record.image_id!r} has no objects (not a shapes scene)")
    rng = random.Random(f"questions-{seed}-{record.image_id}")
    objects = sorted(record.objects, key=lambda o: center(o)[0])
    present = {(o["color"], o["shape"]) for o in objects}
    out: list[dict] = []

    def ask(kind: str, question: str, answer: str, options: list[str]) -> None:
        wrong = [o for o in options if o != answer]
        choices = [answer, *rng.sample(wrong, min(3, len(wrong)))]
        rng.shuffle(choices)
        out.append({"question": question, "answer": answer, "type": kind, "choices": choices})

    ask("count", "how many shapes are there?", NUMBERS[len(objects)], list(NUMBERS[1:]))
    shape = rng.choice(SHAPES)
    ask("count", f"how many {shape}s are there?", NUMBERS[sum(o["shape"] == shape for o in objects)],
        list(NUMBERS[:4]))
    for obj in objects:
        if sum(o["shape"] == obj["shape"] for o in objects) == 1:
            ask("color", f"what color is the {obj['shape']}?", obj["color"], list(COLORS))
        ask("shape", f"what shape is {obj['color']}?", obj["shape"], list(SHAPES))
    color, shape = rng.choice(sorted(present))
    ask("exists", f"is there {phrase({'color': color, 'shape': shape})}?", "yes", ["yes", "no"])
    absent = sorted({(c, s) for c in COLORS for s in SHAPES} - present)
    color, shape = rng.choice(absent)
    ask("exists", f"is there {phrase({'color': color, 'shape': shape})}?", "no", ["yes", "no"])
    if len(objects) == 2:
        a, b = objects
        ask("relation", f"what shape is {relation(a, b)} the {b['color']} {b['shape']}?", a["shape"], list(SHAPES))
    return out
