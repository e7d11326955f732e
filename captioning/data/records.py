"""Caption annotations -> `ImageRecord`s: Karpathy split files (COCO, Flickr8k/30k, shapes) and the
official COCO `captions_*.json`. Every problem is reported on one line naming the file and entry."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .annotations import (
    SPLITS,
    DatasetError,
    EntryError,
    Skips,
    existing_file,
    file_and_split,
    list_field,
    read_json,
    regular_file,
    require,
)


@dataclass
class ImageRecord:
    image_id: int | str          # cocoid for COCO; for Flickr and shapes the filename stem
    path: Path                   # absolute path of the image file
    split: str                   # "train" | "val" | "test" (| "restval" when not merged)
    captions: list[str]          # raw reference sentences
    objects: list[dict] | None = None  # shapes set only: [{"color", "shape", "box": [x0, y0, x1, y1]}]


def load_karpathy(annotations: str | os.PathLike, images: str | os.PathLike, *, merge_restval: bool = True,
                  skip_invalid: bool = False, check_files: bool = True) -> list[ImageRecord]:
    """Read a Karpathy split file (`dataset_coco.json`, `dataset_flickr8k.json`, `dataset_shapes.json`, ...).

    Image path = images / filepath / filename (no filepath for Flickr). `restval` becomes `train`
    unless `merge_restval=False`. With `skip_invalid`, bad entries are skipped and summarised."""
    annotations, images = Path(annotations), Path(images).absolute()
    entries = list_field(read_json(annotations), "images", annotations)
    skips = Skips(str(annotations), skip_invalid)
    records: list[ImageRecord] = []
    seen: dict[int | str, int] = {}
    for i, entry in enumerate(entries):
        where = f"images[{i}]"
        try:
            filename, split = file_and_split(entry, where)
            sentences = require(entry, "sentences", list, where)
            captions = [_sentence(s, f"{where}.sentences[{j}]") for j, s in enumerate(sentences)]
            if not captions:
                raise EntryError(where, "no sentences", "malformed entries")
            image_id = entry["cocoid"] if "cocoid" in entry else Path(filename).stem
            if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
                raise EntryError(where, f'"cocoid" has the wrong type ({type(image_id).__name__})', "malformed entries")
            if image_id in seen:
                raise EntryError(where, f"duplicate image id {image_id!r} (also images[{seen[image_id]}])",
                             "duplicate image ids")
            folder = entry.get("filepath") or ""
            if not isinstance(folder, str):
                raise EntryError(where, '"filepath" has the wrong type', "malformed entries")
            path = existing_file([images / folder / filename], where, check_files, root=images)
            objects = entry.get("objects")
            if objects is not None and not isinstance(objects, list):
                raise EntryError(where, '"objects" has the wrong type', "malformed entries")
        except EntryError as error:
            skips(error)
            continue
        seen[image_id] = i
        if split == "restval" and merge_restval:
            split = "train"
        records.append(ImageRecord(image_id, path, split, captions, objects))
    skips.report(len(entries))
    return records


def _sentence(sentence: Any, where: str) -> str:
    if isinstance(sentence, dict) and isinstance(sentence.get("raw"), str):
        return sentence["raw"].strip()
    if isinstance(sentence, dict) and isinstance(sentence.get("tokens"), list):
        return " ".join(str(t) for t in sentence["tokens"])
    if isinstance(sentence, dict) and "raw" in sentence:
        raise EntryError(where, f'"raw" must be text, got {type(sentence["raw"]).__name__}', "malformed entries")
    raise EntryError(where, 'missing "raw"', "malformed entries")


_COCO_SPLIT = re.compile(r"(train|val|test)(20\d\d)")


def load_coco(annotations: str | os.PathLike, images: str | os.PathLike, *, split: str | None = None,
              skip_invalid: bool = False, check_files: bool = True) -> list[ImageRecord]:
    """Read an official COCO captions file (`captions_train2014.json`) through pycocotools.

    The split comes from the file name (train2014 -> train, val2014 -> val) unless given. The image
    is looked up as images / file_name, then images / <train2014|val2014|...> / file_name."""
    from pycocotools.coco import COCO

    annotations, images = regular_file(Path(annotations)), Path(images).absolute()
    match = _COCO_SPLIT.search(annotations.name)
    if split is None:
        if match is None:
            raise DatasetError(f"{annotations}: cannot tell the split from the file name; pass split=")
        split = match.group(1)
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    data = read_json(annotations)
    image_entries = list_field(data, "images", annotations)
    annotation_entries = list_field(data, "annotations", annotations)
    skips = Skips(str(annotations), skip_invalid)

    # Validate before pycocotools indexes the data: it fails with a bare KeyError on bad entries.
    valid_images, valid_annotations, positions = [], [], {}
    for i, entry in enumerate(image_entries):
        where = f"images[{i}]"
        try:
            image_id = require(entry, "id", (int, str), where)
            require(entry, "file_name", str, where)
            if image_id in positions:
                raise EntryError(where, f"duplicate image id {image_id!r} (also images[{positions[image_id]}])",
                             "duplicate image ids")
        except EntryError as error:
            skips(error)
            continue
        positions[image_id] = i
        valid_images.append(entry)
    for i, entry in enumerate(annotation_entries):
        where = f"annotations[{i}]"
        try:
            image_id = require(entry, "image_id", (int, str), where)
            require(entry, "caption", str, where)
            if image_id not in positions:
                raise EntryError(where, f"image_id {image_id!r} is not in images", "captions of unknown images")
        except EntryError as error:
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
                raise EntryError(where, f"image {image_id!r} has no captions", "images without captions")
            prefix = _COCO_SPLIT.search(name)
            candidates = [images / name, *(images / f / name for f in folders),
                          *([images / prefix.group(0) / name] if prefix else [])]
            path = existing_file(candidates, where, check_files, root=images)
        except EntryError as error:
            skips(error)
            continue
        records.append(ImageRecord(image_id, path, split, [a["caption"].strip() for a in anns]))
    skips.report(len(positions))
    return records


def split_records(records: Iterable[ImageRecord], split: str | Iterable[str]) -> list[ImageRecord]:
    """Records of one split ("train") or several (["train", "restval"])."""
    wanted = {split} if isinstance(split, str) else set(split)
    unknown = wanted - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split {', '.join(sorted(unknown))}; choose from {', '.join(SPLITS)}")
    return [r for r in records if r.split in wanted]
