"""Your own photos: a captions table (`photo.jpg<TAB>a caption`, one line per caption, CSV with a comma works
too) -> a Karpathy split file that `captioning train` reads. `captioning prepare captions --from
captions.tsv --images DIR --out dataset.json`.

Each photo goes to one split, drawn once per photo from a seeded shuffle (so its captions never straddle
train and test); the shares are --val-share and --test-share of the photos (at least one photo each when
there are three or more). A line without a photo name or caption, a photo missing from DIR, or a name that
leaves DIR is one line of error naming the line (or, with --skip-invalid, skipped and counted)."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

from ..vocab import tokenize
from .annotations import DatasetError, EntryError, Skips, existing_file, regular_file

HEADER_NAMES = {"image", "file", "filename", "photo", "image_name"}


def read_captions_table(path: str | os.PathLike, skips: Skips) -> dict[str, list[str]]:
    """File name -> its captions, in file order; a first row naming its columns ("image,caption") is skipped."""
    path = regular_file(Path(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the captions table ({exc})") from None
    delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
    captions: dict[str, list[str]] = {}
    for number, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if number == 1 and row[0].strip().lower() in HEADER_NAMES:
            continue
        try:
            if len(row) < 2 or not row[0].strip() or not tokenize(",".join(row[1:])):
                raise EntryError(f"line {number}", "expected a photo name and a caption", "malformed lines")
        except EntryError as error:
            skips(error)
            continue
        name = row[0].strip().split("#")[0]  # Flickr-style "photo.jpg#0" names work as they are
        captions.setdefault(name, []).append(",".join(row[1:]).strip())
    if not captions:
        raise DatasetError(f"{path}: no captions (expected lines 'photo.jpg<TAB>a caption')")
    return captions


def assign_splits(names: list[str], val_share: float, test_share: float, seed: int) -> dict[str, str]:
    """Photo -> split: a seeded shuffle, the first val_share of it val, the next test_share test."""
    for share in (val_share, test_share):
        if not 0 <= share < 1:
            raise ValueError(f"split shares must be in [0, 1), got {share}")
    if val_share + test_share >= 1:
        raise ValueError("--val-share + --test-share must leave photos to train on")
    order = sorted(names)
    random.Random(seed).shuffle(order)
    n = len(order)
    n_val, n_test = round(n * val_share), round(n * test_share)
    if n >= 3:
        n_val, n_test = max(n_val, 1 if val_share else 0), max(n_test, 1 if test_share else 0)
    return {name: "val" if i < n_val else "test" if i < n_val + n_test else "train" for i, name in enumerate(order)}


def prepare_captions(table: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, *,
                     val_share: float = 0.1, test_share: float = 0.1, seed: int = 0,
                     skip_invalid: bool = False) -> Path:
    """Write the Karpathy split file `out` for the photos of `images` named in `table`."""
    skips = Skips(str(table), skip_invalid)
    captions = read_captions_table(table, skips)
    root = Path(images).absolute()
    found = {}
    for name, texts in captions.items():
        try:
            existing_file([root / name], name, True, root=root)
        except EntryError as error:
            skips(error)
            continue
        found[name] = texts
    skips.report(len(captions))
    if not found:
        raise DatasetError(f"{table}: none of its photos is in {images}")
    splits = assign_splits(list(found), val_share, test_share, seed)
    entries, sentid = [], 0
    for imgid, (name, texts) in enumerate(found.items()):
        sentences = [{"raw": c, "tokens": tokenize(c), "imgid": imgid, "sentid": sentid + k} for k, c in enumerate(texts)]
        entries.append({"filename": name, "imgid": imgid, "split": splits[name], "sentences": sentences,
                        "sentids": [s["sentid"] for s in sentences]})
        sentid += len(sentences)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"dataset": "own", "images": entries}, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out)
    return out
