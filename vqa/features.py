"""Frozen-encoder features for question answering: image grids through the captioning
`FeatureCache` (memory-mapped float16), the `Grids` providers evaluation and training read (cached, live,
zeros), and pooled box-crop features for pointing questions."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from captioning.data.cache import CacheError, FeatureCache, cache_key
from captioning.data.records import ImageRecord
from captioning.encoders import ImageEncoder
from captioning.images import open_image

from .data import Box, QADataset


def grid_cache(encoder: ImageEncoder, dataset: QADataset, cache_dir: str | os.PathLike, *,
               device: torch.device | str = "cpu", num_workers: int = 0, progress: bool = True) -> FeatureCache:
    """Encoder grids of every image the questions use, computed once into `cache_dir`."""
    used = dict.fromkeys(q.image for q in dataset.questions)
    records = [ImageRecord(key, dataset.images[key], "train", []) for key in used]
    return FeatureCache.build(encoder, records, cache_dir, num_workers=num_workers, device=device,
                              progress=progress)


@torch.no_grad()
def pooled_crops(encoder: ImageEncoder, image: Image.Image, boxes: Sequence[Box]) -> torch.Tensor:
    """The encoder on each box's crop, mean-pooled over the grid -> (K, D)."""
    crops = [image.crop(box.corners(*image.size)) for box in boxes]
    device = next(encoder.parameters()).device
    return encoder(encoder.preprocess(crops).to(device)).mean(dim=1)


class BoxFeatures:
    """Pooled crop features of boxes, looked up by box id (`stack`)."""

    def __init__(self, ids: list[int], array: np.ndarray):
        self.rows = {box_id: i for i, box_id in enumerate(ids)}
        self.array = array

    def stack(self, box_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """(B, K) box ids -> (B, K, D)."""
        rows = np.array([[self.rows[b] for b in row] for row in box_ids])
        return torch.from_numpy(self.array[rows].astype(np.float32))

    @classmethod
    def build(cls, encoder: ImageEncoder, dataset: QADataset, cache_dir: str | os.PathLike, *,
              device: torch.device | str = "cpu", progress: bool = True) -> BoxFeatures:
        """Compute (or reload) the crops of every candidate box into `cache_dir/boxes-<encoder key>/`."""
        from tqdm.auto import tqdm

        folder = Path(cache_dir) / f"boxes-{cache_key(encoder)}"
        wanted = sorted({b for q in dataset.questions for b in q.candidates})
        if (folder / "index.json").is_file():
            ids = json.loads((folder / "index.json").read_text())["ids"]
            if set(wanted) <= set(ids):
                return cls(ids, np.load(folder / "features.npy", mmap_mode="r"))
        by_image: dict[str, list[int]] = {}
        for q in dataset.questions:
            for b in q.candidates:
                by_image.setdefault(q.image, [])
                if b not in by_image[q.image]:
                    by_image[q.image].append(b)
        ids, rows = [], []
        was_training = encoder.training
        home = next(encoder.parameters()).device
        encoder.eval().to(device)
        try:
            for key, box_ids in tqdm(by_image.items(), desc="caching box crops", unit="img", disable=not progress):
                image = open_image(dataset.images[key]).convert("RGB")
                rows.append(pooled_crops(encoder, image, [dataset.boxes[b] for b in box_ids]).cpu().half().numpy())
                ids += box_ids
        finally:
            encoder.to(home).train(was_training)
        folder.mkdir(parents=True, exist_ok=True)
        array = np.concatenate(rows) if rows else np.zeros((0, encoder.channels), np.float16)
        tmp = folder / ".features.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, folder / "features.npy")
        (folder / ".index.json.tmp").write_text(json.dumps({"ids": ids}))
        os.replace(folder / ".index.json.tmp", folder / "index.json")  # the index last: it marks completion
        return cls(ids, array)


Grids = Callable[[Sequence[str]], torch.Tensor]  # image keys -> (B, P, D) encoder grids


def cached_grids(cache: Any) -> Grids:
    """Grids from a `FeatureCache` (float16 on disk -> float32)."""
    return lambda keys: torch.stack([cache[k] for k in keys]).float()


def dataset_grids(encoder: Any, dataset: QADataset, cache_dir: Path, *, device: Any = "cpu",
                  num_workers: int = 0) -> Grids:
    """Grids of the dataset's images from the feature cache in `cache_dir`, encoded once when missing.

    A cache built by captioning (`captioning train`, Flickr8k) names its rows by image file stem, not
    by the QA keys ("v7w:<image_id>"); when such a cache of this encoder (same weights fingerprint)
    holds every image, it is read as is and nothing is encoded."""
    used = {q.image: Path(dataset.images[q.image]).stem for q in dataset.questions}
    try:
        cache = FeatureCache.open(cache_dir, encoder=encoder)
    except CacheError:
        cache = None
    if cache is not None and not all(k in cache for k in used) and \
            all(cache.fresh(s, dataset.images[k]) for k, s in used.items()):
        return lambda keys: torch.stack([cache[used[k]] for k in keys]).float()
    return cached_grids(grid_cache(encoder, dataset, cache_dir, device=device, num_workers=num_workers))


def zero_grids(model: Any) -> Grids:
    """Zeros in place of every image (the `zero_image` ablation: what the question alone gives)."""
    shape = (model.encoder.num_positions, model.encoder.channels)
    return lambda keys: torch.zeros(len(keys), *shape)


def live_grids(model: Any, images: dict[str, Path]) -> Grids:
    """Grids computed by the model's encoder (fine-tuned encoders, or no cache)."""
    return lambda keys: model.encoder.encode_pil([open_image(images[k]) for k in keys])
