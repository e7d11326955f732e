"""Caption annotation formats: Karpathy split files, official COCO captions files and Flickr8k's text
release; `load_dataset` reads any of them, `sniff_format` tells which one a file is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .annotations import DatasetError, read_json, regular_file
from .flickr8k import load_flickr8k, looks_like_token_file
from .records import ImageRecord, load_coco, load_karpathy

FORMATS = ("karpathy", "coco", "flickr8k", "auto")
LOADERS = {"karpathy": load_karpathy, "coco": load_coco, "flickr8k": load_flickr8k}


def load_dataset(annotations: str | os.PathLike, images: str | os.PathLike, format: str = "karpathy",
                 **kw: Any) -> list[ImageRecord]:
    """Dispatch on `format`: "karpathy", "coco", "flickr8k", or "auto" (file name, else its content)."""
    if format not in FORMATS:
        raise ValueError(f"unknown annotation format {format!r}; choose one of: {', '.join(FORMATS)}")
    if format == "auto":
        format = sniff_format(annotations)
    return LOADERS[format](annotations, images, **kw)


def sniff_format(annotations: str | os.PathLike) -> str:
    """"karpathy", "coco" or "flickr8k" for an annotation file, from its name or, failing that, its content."""
    path = Path(annotations)
    if path.name.startswith("dataset_"):
        return "karpathy"
    if path.name.startswith("captions_"):
        return "coco"
    regular_file(path)  # a FIFO would block the sniffing read below
    if looks_like_token_file(path):
        return "flickr8k"
    data = read_json(path)
    if isinstance(data, dict) and "annotations" in data:
        return "coco"
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        return "karpathy"
    raise DatasetError(f"{path}: neither a Karpathy split file, a COCO captions file nor a Flickr8k.token.txt")
