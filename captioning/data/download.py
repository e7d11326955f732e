"""Fetching COCO 2014 and Karpathy's splits, or Flickr8k: a plan that skips what is already there, then resumable
downloads (HTTP Range into `.part` files, renamed only once complete and of the right size)."""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download or extraction failed; the message names the URL or file. Rerunning resumes."""


@dataclass(frozen=True)
class DownloadItem:
    url: str
    dest: Path                 # where the archive (or plain file) is saved
    size_hint: int | None      # approximate bytes, for planning disk space; the server's size is what is checked
    extract: bool              # unzip into dest's folder, then delete the archive
    target: Path | None = None  # what exists once the item is done (default: dest)

    @property
    def done_path(self) -> Path:
        return self.target or self.dest

    @property
    def done(self) -> bool:
        """An archive is done once its extracted target exists; a plain file once it is saved."""
        if self.extract:
            return self.target is not None and self.target.exists()
        return self.dest.exists()


# name -> (url, archive name, approximate size, path that exists once extracted)
COCO_FILES: dict[str, tuple[str, str, int, str]] = {
    "train2014": ("http://images.cocodataset.org/zips/train2014.zip", "train2014.zip", 13_510_573_713, "train2014"),
    "val2014": ("http://images.cocodataset.org/zips/val2014.zip", "val2014.zip", 6_645_013_297, "val2014"),
    "annotations": ("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
                    "annotations_trainval2014.zip", 252_907_541, "annotations/captions_train2014.json"),
    "karpathy": ("https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
                 "caption_datasets.zip", 36_700_000, "dataset_coco.json"),
}


def plan_coco_download(root: str | os.PathLike, *,
                       include: Sequence[str] = ("train2014", "val2014", "annotations", "karpathy")
                       ) -> list[DownloadItem]:
    """What `download` still has to fetch under `root`; items whose extracted result exists are left out."""
    unknown = [name for name in include if name not in COCO_FILES]
    if unknown:
        raise ValueError(f"unknown COCO item {', '.join(unknown)}; choose from {', '.join(COCO_FILES)}")
    root = Path(root)
    items = []
    for name in include:
        url, archive, size, result = COCO_FILES[name]
        item = DownloadItem(url, root / archive, size, True, root / result)
        if not item.done:
            items.append(item)
    return items


FLICKR8K_URL = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k"
# name -> (archive, approximate size, path that exists once extracted)
FLICKR8K_FILES: dict[str, tuple[str, int, str]] = {
    "images": ("Flickr8k_Dataset.zip", 1_115_419_746, "Flicker8k_Dataset"),  # sic: the archive's folder name
    "text": ("Flickr8k_text.zip", 2_340_801, "Flickr8k.token.txt"),
}


def plan_flickr8k_download(root: str | os.PathLike) -> list[DownloadItem]:
    """Flickr8k's photos and text release (caption file and split lists) under `root`, as widely mirrored."""
    root = Path(root)
    items = [DownloadItem(f"{FLICKR8K_URL}/{archive}", root / archive, size, True, root / result)
             for archive, size, result in FLICKR8K_FILES.values()]
    return [item for item in items if not item.done]


def download(items: Iterable[DownloadItem], progress: bool = True, *, keep_archives: bool = False,
             timeout: float = 60.0) -> list[Path]:
    """Fetch (resuming), verify and extract each item; returns the items' done paths."""
    done = []
    for item in items:
        if item.done:
            log.info("%s: already there", item.done_path)
        else:
            if not item.dest.exists():
                fetch(item.url, item.dest, progress=progress, timeout=timeout)
            if item.extract:
                extract_zip(item.dest, item.dest.parent)
                if not keep_archives:
                    item.dest.unlink()
            if item.target is not None and not item.target.exists():
                raise DownloadError(f"{item.dest.name}: finished, but {item.done_path} is still missing")
        done.append(item.done_path)
    return done


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+)")


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    match = _CONTENT_RANGE.match(header or "")
    if not match:
        return None, None
    return (int(match.group(1)) if match.group(1) else None), int(match.group(2))


def fetch(url: str, dest: str | os.PathLike, *, progress: bool = True, timeout: float = 60.0,
          chunk_size: int = 1 << 20) -> Path:
    """Download `url` to `dest` via `dest.part`, resuming a partial `.part` with an HTTP Range request."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        _, total = _content_range(exc.headers.get("Content-Range"))
        if exc.code == 416 and total == offset:  # the .part already holds the whole file
            os.replace(part, dest)
            return dest
        if exc.code == 416:  # the .part is not a prefix of this file: start again
            part.unlink()
            return fetch(url, dest, progress=progress, timeout=timeout, chunk_size=chunk_size)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)}; rerun to resume") from None
    with response:
        start, total = _content_range(response.headers.get("Content-Range"))
        if getattr(response, "status", None) == 206 and start == offset:
            mode = "ab"
        else:  # the server (or a file:// URL) ignored the Range: the body is the whole file
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        try:
            with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                             desc=dest.name, disable=not progress) as bar:
                while chunk := response.read(chunk_size):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"{url}: interrupted ({exc}); rerun to resume") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: got {size} bytes of {total}; rerun to resume")
    os.replace(part, dest)
    return dest


def extract_zip(archive: str | os.PathLike, into: str | os.PathLike) -> None:
    """Unzip into a hidden folder first, then move entries into place: no half-extracted tree is ever visible."""
    archive, into = Path(archive), Path(into)
    staging = into / f".{archive.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(staging)  # zipfile drops absolute paths and ".." components
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{archive}: cannot extract ({exc}); delete it and rerun") from None
    for child in sorted(staging.iterdir()):
        _merge(child, into / child.name)
    shutil.rmtree(staging, ignore_errors=True)


def _merge(source: Path, dest: Path) -> None:
    if source.is_dir() and dest.is_dir():
        for child in sorted(source.iterdir()):
            _merge(child, dest / child.name)
    else:
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(source, dest)
