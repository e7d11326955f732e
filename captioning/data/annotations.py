"""Validated reading of annotation files: JSON that fails with one line naming the file, typed field
access that names the entry (`require`), and the skip-or-stop policy of `--skip-invalid` (`Skips`).
Caption loaders (`records`) and the VQA loaders (`vqa.data`) share these."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..small_files import not_regular

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "restval")


class DatasetError(ValueError):
    """An annotation file is missing, malformed or points at missing images; the message says where."""


class EntryError(Exception):
    """One bad entry; raised inside a loader, then either reported or counted as skipped."""

    def __init__(self, where: str, reason: str, kind: str):
        super().__init__(f"{where}: {reason}")
        self.kind = kind


class Skips:
    """Counts skipped entries by kind and logs a one-line summary. Without skipping, the first bad entry
    stops the load, except missing image files: those are all counted first, so the one line says how
    many are missing (all of them usually means a wrong --images)."""

    MISSING = "missing image files"

    def __init__(self, label: str, skip: bool):
        self.label, self.skip = label, skip
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def __call__(self, error: EntryError) -> None:
        if not self.skip and error.kind != self.MISSING:
            raise DatasetError(f"{self.label}: {error}") from None
        self.counts[error.kind] += 1
        self.first.setdefault(error.kind, str(error))

    def report(self, entries: int | None = None) -> None:
        """Log what was skipped; without skipping, raise for missing image files (how many of `entries`)."""
        if not self.skip and self.counts[self.MISSING]:
            of = f" of {entries}" if entries is not None else ""
            raise DatasetError(f"{self.label}: {self.first[self.MISSING]} ({self.counts[self.MISSING]}{of} "
                               "image files missing: is --images the right folder?)")
        if self.counts:
            parts = [f"{n} {kind} (first: {self.first[kind]})" for kind, n in self.counts.most_common()]
            log.warning("%s: skipped %d entries: %s", self.label, sum(self.counts.values()), "; ".join(parts))


def regular_file(path: Path, what: str = "annotation file") -> Path:
    """`path` if it is a regular file (or absent: the reader says so); a directory, FIFO or device is
    named as such and never opened (reading a FIFO would block)."""
    path = Path(path)
    problem = not_regular(path, f"an {what}")
    if problem:
        raise DatasetError(problem)
    return path


def read_json(path: Path) -> Any:
    regular_file(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such annotation file") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise DatasetError(f"{path}: invalid JSON (nested too deeply for an annotation file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read annotation file ({exc})") from None


def list_field(data: Any, key: str, label: Path) -> list:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DatasetError(f'{label}: expected a JSON object with an "{key}" list')
    return data[key]


def require(entry: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(entry, dict):
        raise EntryError(where, "expected an object", "malformed entries")
    if key not in entry:
        raise EntryError(where, f'missing "{key}"', "malformed entries")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise EntryError(where, f'"{key}" has the wrong type ({type(value).__name__})', "malformed entries")
    return value


def file_and_split(entry: Any, where: str, splits: tuple[str, ...] = SPLITS) -> tuple[str, str]:
    """An images[] entry's "filename" and "split" (Karpathy's layout, which Visual7W shares)."""
    filename = require(entry, "filename", str, where)
    split = require(entry, "split", str, where)
    if split not in splits:
        raise EntryError(where, f'unknown split "{split}" (expected one of {", ".join(splits)})', "malformed entries")
    return filename, split


def inside(root: Path, path: Path, where: str) -> Path:
    """`path` if it stays under the image folder `root` once `..` is resolved: an annotation file must not
    make the loader open /etc/passwd or ../../anything. (Links the user put inside the folder are theirs.)"""
    resolved, base = Path(os.path.normpath(os.path.abspath(path))), Path(os.path.normpath(os.path.abspath(root)))
    if resolved != base and base not in resolved.parents:
        raise EntryError(where, f"image path {os.path.relpath(path, root)!r} leaves the image folder {root}",
                         "image paths outside the image folder")
    return path


def existing_file(candidates: Sequence[Path], where: str, check: bool, root: Path | None = None) -> Path:
    """The first of `candidates` that is a file (with `check` False: the first); else an entry error.
    With `root`, a candidate that resolves outside it is refused (`inside`)."""
    if root is not None:
        candidates = [inside(root, path, where) for path in candidates]
    if not check:
        return candidates[0]
    for path in candidates:
        if path.is_file():
            return path
    raise EntryError(where, f"image file not found: {candidates[0]}", "missing image files")
