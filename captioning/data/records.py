"""Caption annotations -> `ImageRecord`s: Karpathy split files (COCO, Flickr8k/30k, shapes) and the
official COCO `captions_*.json`. Every problem is reported on one line naming the file and entry."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "restval")
FORMATS = ("karpathy", "coco", "auto")


class DatasetError(ValueError):
    """An annotation file is missing, malformed or points at missing images; the message says where."""


@dataclass
class ImageRecord:
    image_id: int | str          # cocoid for COCO; for Flickr and shapes the filename stem
    path: Path                   # absolute path of the image file
    split: str                   # "train" | "val" | "test" (| "restval" when not merged)
    captions: list[str]          # raw reference sentences
    objects: list[dict] | None = None  # shapes set only: [{"color", "shape", "box": [x0, y0, x1, y1]}]


class _Entry(Exception):
    """One bad entry; raised inside a loader, then either reported or counted as skipped."""

    def __init__(self, where: str, reason: str, kind: str):
        super().__init__(f"{where}: {reason}")
        self.kind = kind


class _Skips:
    """Counts skipped entries by kind and logs a one-line summary."""

    def __init__(self, label: str, skip: bool):
        self.label, self.skip = label, skip
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def __call__(self, error: _Entry) -> None:
        if not self.skip:
            raise DatasetError(f"{self.label}: {error}") from None
        self.counts[error.kind] += 1
        self.first.setdefault(error.kind, str(error))

    def report(self) -> None:
        if self.counts:
            parts = [f"{n} {kind} (first: {self.first[kind]})" for kind, n in self.counts.most_common()]
            log.warning("%s: skipped %d entries: %s", self.label, sum(self.counts.values()), "; ".join(parts))


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such annotation file") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read annotation file ({exc})") from None


def _list_field(data: Any, key: str, label: Path) -> list:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DatasetError(f'{label}: expected a JSON object with an "{key}" list')
    return data[key]


def _require(entry: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(entry, dict):
        raise _Entry(where, "expected an object", "malformed entries")
    if key not in entry:
        raise _Entry(where, f'missing "{key}"', "malformed entries")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _Entry(where, f'"{key}" has the wrong type ({type(value).__name__})', "malformed entries")
    return value


def _existing(candidates: Sequence[Path], where: str, check: bool) -> Path:
    if not check:
        return candidates[0]
    for path in candidates:
        if path.is_file():
            return path
    raise _Entry(where, f"image file not found: {candidates[0]}", "missing image files")


def _file_and_split(entry: Any, where: str, splits: tuple[str, ...] = SPLITS) -> tuple[str, str]:
    """An images[] entry's "filename" and "split" (Karpathy's layout, which Visual7W shares)."""
    filename = _require(entry, "filename", str, where)
    split = _require(entry, "split", str, where)
    if split not in splits:
        raise _Entry(where, f'unknown split "{split}" (expected one of {", ".join(splits)})', "malformed entries")
    return filename, split


def load_karpathy(annotations: str | os.PathLike, images: str | os.PathLike, *, merge_restval: bool = True,
                  skip_invalid: bool = False, check_files: bool = True) -> list[ImageRecord]:
    """Read a Karpathy split file (`dataset_coco.json`, `dataset_flickr8k.json`, `dataset_shapes.json`, ...).

    Image path = images / filepath / filename (no filepath for Flickr). `restval` becomes `train`
    unless `merge_restval=False`. With `skip_invalid`, bad entries are skipped and summarised."""
    annotations, images = Path(annotations), Path(images).absolute()
    entries = _list_field(_read_json(annotations), "images", annotations)
    skips = _Skips(str(annotations), skip_invalid)
    records: list[ImageRecord] = []
    seen: dict[int | str, int] = {}
    for i, entry in enumerate(entries):
        where = f"images[{i}]"
        try:
            filename, split = _file_and_split(entry, where)
            sentences = _require(entry, "sentences", list, where)
            captions = [_sentence(s, f"{where}.sentences[{j}]") for j, s in enumerate(sentences)]
            if not captions:
                raise _Entry(where, "no sentences", "malformed entries")
            image_id = entry["cocoid"] if "cocoid" in entry else Path(filename).stem
            if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
                raise _Entry(where, f'"cocoid" has the wrong type ({type(image_id).__name__})', "malformed entries")
            if image_id in seen:
                raise _Entry(where, f"duplicate image id {image_id!r} (also images[{seen[image_id]}])",
                             "duplicate image ids")
            folder = entry.get("filepath") or ""
            if not isinstance(folder, str):
                raise _Entry(where, '"filepath" has the wrong type', "malformed entries")
            path = _existing([images / folder / filename], where, check_files)
            objects = entry.get("objects")
            if objects is not None and not isinstance(objects, list):
                raise _Entry(where, '"objects" has the wrong type', "malformed entries")
        except _Entry as error:
            skips(error)
            continue
        seen[image_id] = i
        if split == "restval" and merge_restval:
            split = "train"
        records.append(ImageRecord(image_id, path, split, captions, objects))
    skips.report()
    return records


def _sentence(sentence: Any, where: str) -> str:
    if isinstance(sentence, dict) and isinstance(sentence.get("raw"), str):
        return sentence["raw"].strip()
    if isinstance(sentence, dict) and isinstance(sentence.get("tokens"), list):
        return " ".join(str(t) for t in sentence["tokens"])
    raise _Entry(where, 'missing "raw"', "malformed entries")


_COCO_SPLIT = re.compile(r"(train|val|test)(20\d\d)")


def load_coco(annotations: str | os.PathLike, images: str | os.PathLike, *, split: str | None = None,
              skip_invalid: bool = False, check_files: bool = True) -> list[ImageRecord]:
    """Read an official COCO captions file (`captions_train2014.json`) through pycocotools.

    The split comes from the file name (train2014 -> train, val2014 -> val) unless given. The image
    is looked up as images / file_name, then images / <train2014|val2014|...> / file_name."""
    from pycocotools.coco import COCO

    annotations, images = Path(annotations), Path(images).absolute()
    match = _COCO_SPLIT.search(annotations.name)
    if split is None:
        if match is None:
            raise DatasetError(f"{annotations}: cannot tell the split from the file name; pass split=")
        split = match.group(1)
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    data = _read_json(annotations)
    image_entries = _list_field(data, "images", annotations)
    annotation_entries = _list_field(data, "annotations", annotations)
    skips = _Skips(str(annotations), skip_invalid)

    # Validate before pycocotools indexes the data: it fails with a bare KeyError on bad entries.
    valid_images, valid_annotations, positions = [], [], {}
    for i, entry in enumerate(image_entries):
        where = f"images[{i}]"
        try:
            image_id = _require(entry, "id", (int, str), where)
            _require(entry, "file_name", str, where)
            if image_id in positions:
                raise _Entry(where, f"duplicate image id {image_id!r} (also images[{positions[image_id]}])",
                             "duplicate image ids")
        except _Entry as error:
            skips(error)
            continue
        positions[image_id] = i
        valid_images.append(entry)
    for i, entry in enumerate(annotation_entries):
        where = f"annotations[{i}]"
        try:
            image_id = _require(entry, "image_id", (int, str), where)
            _require(entry, "caption", str, where)
            if image_id not in positions:
                raise _Entry(where, f"image_id {image_id!r} is not in images", "captions of unknown images")
        except _Entry as error:
            skips(error)
            continue
        valid_annotations.append({"id": entry.get("id", i), **entry})

    coco = COCO()
    coco.dataset = {**data, "images": valid_images, "annotations": valid_annotations}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()

    folders = [match.group(0)] if match else []
    records = []
    for image_id in coco.getImgIds():
        info = coco.imgs[image_id]
        where = f"images[{positions[image_id]}]"
        name = info["file_name"]
        try:
            anns = sorted(coco.imgToAnns.get(image_id, []), key=lambda a: a["id"])
            if not anns:
                raise _Entry(where, f"image {image_id!r} has no captions", "images without captions")
            prefix = _COCO_SPLIT.search(name)
            candidates = [images / name, *(images / f / name for f in folders),
                          *([images / prefix.group(0) / name] if prefix else [])]
            path = _existing(candidates, where, check_files)
        except _Entry as error:
            skips(error)
            continue
        records.append(ImageRecord(image_id, path, split, [a["caption"].strip() for a in anns]))
    skips.report()
    return records


def load_dataset(annotations: str | os.PathLike, images: str | os.PathLike, format: str = "karpathy",
                 **kw: Any) -> list[ImageRecord]:
    """Dispatch on `format`: "karpathy", "coco", or "auto" (file name, else the JSON's keys)."""
    if format not in FORMATS:
        raise ValueError(f"unknown annotation format {format!r}; choose one of: {', '.join(FORMATS)}")
    if format == "auto":
        format = sniff_format(annotations)
    loader = load_karpathy if format == "karpathy" else load_coco
    return loader(annotations, images, **kw)


def sniff_format(annotations: str | os.PathLike) -> str:
    """"karpathy" or "coco" for an annotation file, from its name or, failing that, its contents."""
    path = Path(annotations)
    if path.name.startswith("dataset_"):
        return "karpathy"
    if path.name.startswith("captions_"):
        return "coco"
    data = _read_json(path)
    if isinstance(data, dict) and "annotations" in data:
        return "coco"
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        return "karpathy"
    raise DatasetError(f"{path}: neither a Karpathy split file nor a COCO captions file")


def split_records(records: Iterable[ImageRecord], split: str | Iterable[str]) -> list[ImageRecord]:
    """Records of one split ("train") or several (["train", "restval"])."""
    wanted = {split} if isinstance(split, str) else set(split)
    unknown = wanted - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split {', '.join(sorted(unknown))}; choose from {', '.join(SPLITS)}")
    return [r for r in records if r.split in wanted]
