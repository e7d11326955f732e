"""Flickr8k in its official text format: `Flickr8k.token.txt` (lines `<image>.jpg#<0-4><TAB><caption>`)
with the split lists `Flickr_8k.trainImages.txt`, `Flickr_8k.devImages.txt` (split "val") and
`Flickr_8k.testImages.txt` beside it. A missing list is an empty split; images in no list are ignored.
The caption file's known quirk, lines of `2258277193_586949ec62.jpg.1` (an image name with `.1`
appended), is reported once as a warning and skipped. Image id = file name stem, as Karpathy's files
have it for Flickr; image path = images / file name."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from ..vocab import tokenize
from .annotations import DatasetError, EntryError, Skips, existing_file, regular_file
from .records import ImageRecord

log = logging.getLogger(__name__)

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_LISTS = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
LINE = re.compile(r"^(?P<name>[^\t#]+)#(?P<n>\d+)\t(?P<caption>.*)$")
QUIRK = re.compile(r"\.jpg\.\d+$")  # "2258277193_586949ec62.jpg.1"


def looks_like_token_file(path: str | os.PathLike) -> bool:
    """True for a Flickr8k caption file: by its name (*.token.txt), else by its first line."""
    path = Path(path)
    if path.name.endswith(".token.txt"):
        return True
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip("\r\n")
    except OSError:
        return False
    return LINE.match(first) is not None


def read_split_lists(folder: Path) -> dict[str, str]:
    """File name -> split, from the lists in `folder` (a missing list: an empty split)."""
    splits: dict[str, str] = {}
    for split, name in SPLIT_LISTS.items():
        path = folder / name
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    splits.setdefault(line.strip(), split)
    return splits


def read_token_file(path: Path, skips: Skips) -> dict[str, list[str]]:
    """File name -> captions in caption-number order (token-file order of first appearance)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such annotation file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read annotation file ({exc})") from None
    numbered: dict[str, list[tuple[int, str]]] = {}
    quirks: list[int] = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = LINE.match(line.rstrip("\r"))
        try:
            if match is None:
                raise EntryError(f"line {i}", "expected <image>.jpg#<n><TAB><caption>", "malformed lines")
            if not match["caption"].strip():
                raise EntryError(f"line {i}", "empty caption", "malformed lines")
        except EntryError as error:
            skips(error)
            continue
        if QUIRK.search(match["name"]):
            quirks.append(i)
            continue
        numbered.setdefault(match["name"], []).append((int(match["n"]), match["caption"].strip()))
    if quirks:
        log.warning("%s: skipped %d caption line(s) of image names with a number appended (first: line %d, "
                    "a known quirk of Flickr8k.token.txt)", path, len(quirks), quirks[0])
    return {name: [c for _, c in sorted(caps, key=lambda nc: nc[0])] for name, caps in numbered.items()}


def read_flickr8k(annotations: str | os.PathLike, skip_invalid: bool = False) -> list[tuple[str, str, list[str]]]:
    """(file name, split, captions) of every image in a split list, in caption-file order."""
    path = regular_file(Path(annotations))
    skips = Skips(str(path), skip_invalid)
    captions = read_token_file(path, skips)
    splits = read_split_lists(path.parent)
    if not any((path.parent / name).is_file() for name in SPLIT_LISTS.values()):
        raise DatasetError(f"{path}: no split lists beside it (expected {', '.join(SPLIT_LISTS.values())})")
    out = [(name, splits[name], caps) for name, caps in captions.items() if name in splits]
    missing = sorted(set(splits) - set(captions))
    for name in missing:
        skips(EntryError(name, "listed in a split file but has no captions", "images without captions"))
    skips.report()
    return out


def load_flickr8k(annotations: str | os.PathLike, images: str | os.PathLike, *, skip_invalid: bool = False,
                  check_files: bool = True) -> list[ImageRecord]:
    """`ImageRecord`s of a `Flickr8k.token.txt` and the split lists beside it."""
    folder = Path(images).absolute()
    skips = Skips(str(annotations), skip_invalid)
    records, named = [], 0
    for name, split, captions in read_flickr8k(annotations, skip_invalid):
        named += 1
        try:
            path = existing_file([folder / name], name, check_files, root=folder)
        except EntryError as error:
            skips(error)
            continue
        records.append(ImageRecord(Path(name).stem, path, split, captions))
    skips.report(named)
    return records


def flickr8k_karpathy(annotations: str | os.PathLike) -> dict:
    """The Karpathy-split JSON layout (`dataset_flickr8k.json`) of a Flickr8k text release."""
    images, sentid = [], 0
    for imgid, (name, split, captions) in enumerate(read_flickr8k(annotations)):
        sentences = [{"raw": c, "tokens": tokenize(c), "imgid": imgid, "sentid": sentid + k}
                     for k, c in enumerate(captions)]
        images.append({"filename": name, "imgid": imgid, "split": split, "sentences": sentences,
                       "sentids": [s["sentid"] for s in sentences]})
        sentid += len(sentences)
    return {"dataset": "flickr8k", "images": images}


def prepare_flickr8k(source: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write `out` (dataset_flickr8k.json) from the text release in folder `source`."""
    source, out = Path(source), Path(out)
    token_file = source / TOKEN_FILE if source.is_dir() else source
    data = flickr8k_karpathy(token_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, out)
    return out
