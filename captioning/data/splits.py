"""Which images a captioning run trains and validates on. Karpathy files carry their splits; every
image of a COCO captions file is a training image, and a seeded share of them is then held out for
validation, their ids saved in RUN/splits.json so reruns and `evaluate` hold out the same ones."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from .annotations import DatasetError
from .formats import load_dataset, sniff_format
from .records import ImageRecord, split_records

SPLITS_JSON = "splits.json"


def load_training_records(annotations: str | os.PathLike, images: str | os.PathLike, format: str = "auto",
                          skip_invalid: bool = False) -> list[ImageRecord]:
    """Karpathy files carry their splits; every image of a COCO captions file is a training image
    (whatever its name says: `captions_val2014.json` can be trained on too), val is then held out."""
    fmt = sniff_format(annotations) if format == "auto" else format
    split = {"split": "train"} if fmt == "coco" else {}
    return load_dataset(annotations, images, format=fmt, skip_invalid=skip_invalid, **split)


def held_out_ids(run_dir: Path) -> set | None:
    """The validation image ids a run held out of its training images (None: it held out none)."""
    saved = Path(run_dir) / SPLITS_JSON
    return set(json.loads(saved.read_text())["val"]) if saved.is_file() else None


def mark_held_out(records: list[ImageRecord], held: set) -> None:
    for r in records:
        if r.image_id in held:
            r.split = "val"


def training_splits(records: list[ImageRecord], holdout: float, seed: int,
                    run_dir: Path) -> tuple[list[ImageRecord], list[ImageRecord], list]:
    """Train and validation records, and the ids held out of training (empty with a val split)."""
    held = held_out_ids(run_dir)
    if held is None and split_records(records, "val"):
        held = set()
    elif held is None:
        train = split_records(records, "train")
        if len(train) < 2:
            raise DatasetError(f"need at least 2 training images and a val split, found {len(train)} train images")
        n = min(5000, max(1, round(holdout * len(train))))
        held = {r.image_id for r in random.Random(seed).sample(train, n)}
    mark_held_out(records, held)
    train, val = split_records(records, "train"), split_records(records, "val")
    if not train:
        raise DatasetError("the annotations have no training images (split 'train' or 'restval')")
    return train, val, sorted(held, key=str)
