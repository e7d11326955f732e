"""Frozen-encoder features for question answering: image grids through the captioning
`FeatureCache` (memory-mapped float16), and pooled box-crop features for pointing questions."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from captioning.data.cache import FeatureCache, cache_key
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
