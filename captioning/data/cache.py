"""Encoder grids computed once and memory-mapped: a frozen encoder need not see an image twice.

A cache folder holds `features.f16` (rows of (P, D) float16) and `index.json` (which image each
row holds). Rows are written first and flushed; only then is the index replaced atomically, so an
interrupted build loses at most the rows after its last commit and a rerun encodes just those."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..images import ImageLoadError
from .dataset import PixelDataset, collate_pixels
from .records import ImageRecord

FORMAT = "showtell-feature-cache/1"
log = logging.getLogger(__name__)
CPU_CHUNK = 1  # images per encoder call on a CPU
INDEX, DATA = "index.json", "features.f16"


class CacheError(RuntimeError):
    """A cache folder is missing, damaged, or holds another encoder's features."""


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """Hash of the weights (and preprocessing): random, pretrained and fine-tuned encoders never share rows."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(getattr(encoder, "preprocess", None)).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def cache_key(encoder: torch.nn.Module) -> str:
    """Folder name for an encoder's cache, e.g. `efficientnet_lite0-224px-7x7-1a2b3c4d`."""
    g = encoder.grid_size
    return f"{encoder.name}-{encoder.preprocess.image_size}px-{g}x{g}-{encoder_fingerprint(encoder)[:8]}"


def _meta(encoder: torch.nn.Module) -> dict[str, Any]:
    return {"format": FORMAT, "key": cache_key(encoder), "encoder": encoder.name,
            "image_size": encoder.preprocess.image_size, "grid_size": encoder.grid_size,
            "positions": encoder.num_positions, "channels": encoder.channels, "dtype": "float16"}


def _read_index(folder: Path) -> dict[str, Any]:
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheError(f"{folder / INDEX}: unreadable cache index ({exc}); delete the folder to rebuild") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("ids"), list):
        raise CacheError(f"{folder / INDEX}: not a {FORMAT} index; delete the folder to rebuild")
    return index


def image_stamp(path: str | os.PathLike) -> list[int] | None:
    """[size, mtime in ns] of an image file: a row is reused only for the file it was computed from (another
    folder's photo of the same name, or the photo changed, is encoded again). None when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _write_index(folder: Path, meta: dict[str, Any], ids: list[int | str], stamps: list) -> None:
    tmp = folder / (INDEX + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({**meta, "ids": ids, "stamps": stamps}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / INDEX)


def _row_bytes(meta: dict[str, Any]) -> int:
    return int(meta["positions"]) * int(meta["channels"]) * 2


def _reserve(path: Path, start: int, end: int) -> None:
    """Grow the data file to `end` bytes with its blocks allocated now: a memory-mapped write to a sparse file
    on a full disk kills the process with SIGBUS and no message; here a full disk is one line."""
    with open(path, "ab") as f:
        f.truncate(end)
        try:
            if end > start and hasattr(os, "posix_fallocate"):
                os.posix_fallocate(f.fileno(), start, end - start)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate
                    return
                raise
            f.truncate(start)
            free = shutil.disk_usage(path.parent).free
            raise CacheError(f"{path.parent}: no room for the feature cache ({(end - start) / 2**20:,.0f} MiB "
                             f"needed, {free / 2**20:,.0f} MiB free); free some space or pass another "
                             "--cache-dir") from None


class FeatureCache:
    """Read side: `cache[image_id]` -> (P, D) float16 tensor, memory-mapped from disk."""

    def __init__(self, path: Path, index: dict[str, Any]):
        self.path = Path(path)
        self.meta = {k: v for k, v in index.items() if k not in ("ids", "stamps")}
        self.ids: list[int | str] = list(index["ids"])
        stamps = index.get("stamps")  # caches from before stamps: rows are trusted as they are
        self.stamps: list = list(stamps) if isinstance(stamps, list) and len(stamps) == len(self.ids) \
            else [None] * len(self.ids)
        self._rows = {image_id: row for row, image_id in enumerate(self.ids)}
        size = (self.path / DATA).stat().st_size if (self.path / DATA).exists() else 0
        if size < len(self.ids) * _row_bytes(self.meta):
            raise CacheError(f"{self.path / DATA}: truncated ({size} bytes for {len(self.ids)} rows); "
                             "delete the folder to rebuild")
        self._array: np.memmap | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.ids), int(self.meta["positions"]), int(self.meta["channels"])

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._rows

    def fresh(self, image_id: int | str, path: str | os.PathLike) -> bool:
        """The cache holds `image_id`, computed from the file at `path` as it is now (same size and mtime)."""
        if image_id not in self._rows:
            return False
        stamp = self.stamps[self._rows[image_id]]
        return stamp is None or list(stamp) == image_stamp(path)

    def __getitem__(self, image_id: int | str) -> torch.Tensor:
        if image_id not in self._rows:
            raise KeyError(f"image {image_id!r} is not in the feature cache {self.path}")
        if self._array is None:  # opened lazily: each DataLoader worker maps the file itself
            self._array = np.memmap(self.path / DATA, dtype=np.float16, mode="r", shape=self.shape)
        return torch.from_numpy(np.array(self._array[self._rows[image_id]]))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # never pickle the mapped array into workers

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.path)!r}, images={len(self)}, shape={self.shape[1:]})"

    @classmethod
    def open(cls, cache_dir: str | os.PathLike, *, encoder: torch.nn.Module | None = None) -> FeatureCache:
        """A cache folder, or the root `build` was given (with `encoder`, or when it holds one cache)."""
        folder = Path(cache_dir)
        if encoder is not None and not (folder / INDEX).exists():
            folder = folder / cache_key(encoder)
        if not (folder / INDEX).exists():
            found = sorted(p.parent for p in folder.glob(f"*/{INDEX}"))
            if len(found) != 1:
                names = ", ".join(p.name for p in found) or "none"
                raise CacheError(f"{folder}: no feature cache here; caches found inside: {names}")
            folder = found[0]
        index = _read_index(folder)
        if encoder is not None and index.get("key") != cache_key(encoder):
            raise CacheError(f"{folder}: holds features of {index.get('key')}, not of {cache_key(encoder)}")
        return cls(folder, index)

    @classmethod
    def _pending(cls, folder: Path, meta: dict, records: Sequence[ImageRecord]) -> tuple[list, list, list[ImageRecord]]:
        """(ids the cache in `folder` holds, their stamps, records whose images it lacks or holds from another
        file: another folder's image of the same name, or a changed one, is encoded again into a new row)."""
        ids: list[int | str] = []
        stamps: list = []
        cache = None
        if (folder / INDEX).exists():
            index = _read_index(folder)
            if index.get("key") != meta["key"]:
                raise CacheError(f"{folder}: holds features of {index.get('key')}, not of {meta['key']}")
            cache = cls(folder, index)  # also checks the data file is long enough
            ids, stamps = cache.ids, cache.stamps
        done: set = set()
        todo: list[ImageRecord] = []
        for record in records:
            if record.image_id in done:
                continue
            done.add(record.image_id)
            if cache is None or not cache.fresh(record.image_id, record.path):
                todo.append(record)
        return ids, stamps, todo

    @classmethod
    def build(cls, encoder: torch.nn.Module, records: Sequence[ImageRecord], cache_dir: str | os.PathLike, *,
              batch_size: int = 64, num_workers: int = 2, device: str | torch.device = "cpu",
              progress: bool = True, commit_seconds: float = 30.0, skip_invalid: bool = False) -> FeatureCache:
        """Encode the records' images that the cache lacks into `cache_dir / cache_key(encoder)`.

        An unreadable image raises `ImageLoadError` naming it; with `skip_invalid` it is left out (the
        cache then lacks it: check `record.image_id in cache`) and one warning line counts them.
        Safe to interrupt and rerun: the index is committed every `commit_seconds` and on exit."""
        meta = _meta(encoder)
        folder = Path(cache_dir)
        if not (folder / INDEX).exists():
            folder = folder / meta["key"]
        folder.mkdir(parents=True, exist_ok=True)
        ids, stamps, todo = cls._pending(folder, meta, records)
        if not todo:
            if not (folder / INDEX).exists():
                _write_index(folder, meta, ids, stamps)
            return cls.open(folder)

        # Rows past len(ids) are not trusted: they are (re)written in order, then committed.
        base, row_bytes = len(ids), _row_bytes(meta)
        _reserve(folder / DATA, base * row_bytes, (base + len(todo)) * row_bytes)
        array = np.memmap(folder / DATA, dtype=np.float16, mode="r+",
                          shape=(base + len(todo), meta["positions"], meta["channels"]))
        device = torch.device(device)
        loader = DataLoader(PixelDataset(todo, encoder.preprocess), batch_size=batch_size, num_workers=num_workers,
                            collate_fn=collate_pixels, pin_memory=device.type == "cuda")
        written: list[int | str] = []  # ids of rows base, base + 1, ... in order
        written_stamps: list = []
        skipped: list[str] = []

        def commit() -> None:
            array.flush()
            _write_index(folder, meta, [*ids, *written], [*stamps, *written_stamps])

        was_training = encoder.training
        home = next(encoder.parameters()).device
        # On a GPU: bf16 (the cache is fp16 anyway) and channels_last, the layout cuDNN's bf16 convolutions want.
        gpu = device.type == "cuda"
        layout = torch.channels_last if gpu else torch.contiguous_format
        encoder.eval().to(device, memory_format=layout)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if gpu else contextlib.nullcontext()
        last_commit = time.monotonic()
        try:
            with torch.inference_mode(), amp, tqdm(total=len(todo), unit="img", desc=f"caching {meta['key']}",
                                                   disable=not progress) as bar:
                for pixels, positions, errors in loader:
                    if errors and not skip_invalid:
                        raise ImageLoadError(errors[0][1])
                    skipped += [message for _, message in errors]
                    if pixels is not None:
                        pixels = pixels.to(device, non_blocking=True, memory_format=layout)
                        # A CPU encodes one image at a time (measured: ~1.5x faster per image than batches of 8,
                        # whose activations spill out of the caches); the loader's workers decode the next JPEGs.
                        chunks = pixels.split(CPU_CHUNK) if not gpu else (pixels,)
                        features = torch.cat([encoder(chunk) for chunk in chunks])  # (B, P, D)
                        row = base + len(written)
                        array[row: row + len(positions)] = features.to("cpu", torch.float16).numpy()
                        written += [todo[i].image_id for i in positions]
                        written_stamps += [image_stamp(todo[i].path) for i in positions]
                    bar.update(len(positions) + len(errors))
                    if time.monotonic() - last_commit > commit_seconds:
                        commit()
                        last_commit = time.monotonic()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what was encoded stays (committed below); say so
            print(f"interrupted: {len(written)} of {len(todo)} images encoded into {folder}; a rerun encodes "
                  "the rest", file=sys.stderr, flush=True)
            raise
        finally:
            commit()
            encoder.to(home, memory_format=torch.contiguous_format).train(was_training)
        if skipped:
            log.warning("%s: skipped %d unreadable images (first: %s)", folder, len(skipped), skipped[0])
        return cls.open(folder)
