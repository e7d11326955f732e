"""Flickr8k val as the measuring scripts score it (bench/lm_prior.py, bench/guidance_sweep.py): the records,
their grids (from a feature cache of the model's encoder, or encoded once), captions of the grids in batches
through `Captioner.caption_features` (the code the commands run), the commands' metrics, and the table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from captioning.data.cache import FeatureCache
from captioning.data.records import load_karpathy
from captioning.images import open_image
from captioning.lexicon.endings import bad_ending
from captioning.metrics import score_captions


def val_records(annotations: str | Path, images: str | Path) -> list:
    return [r for r in load_karpathy(annotations, images) if r.split == "val"]


def encode_photos(model, paths: Sequence[Path], batch: int = 20) -> torch.Tensor:
    """(N, P, D) half-precision grids of the photos at `paths`, encoded `batch` at a time."""
    at_least = model.encoder.preprocess.decode_at_least
    with torch.inference_mode():
        return torch.cat([model.encoder.encode_pil([open_image(p, at_least=at_least) for p in paths[i:i + batch]]).half()
                          for i in range(0, len(paths), batch)])


def val_grids(model, records: list, cache: str | Path | None = None) -> torch.Tensor:
    """The records' grids: from `cache` (a feature cache of the model's encoder) when given, else encoded."""
    if cache is None:
        return encode_photos(model, [Path(r.path) for r in records])
    features = FeatureCache.open(cache, encoder=model.encoder)
    return torch.stack([features[r.image_id] for r in records])


def caption_grids(model, grids: torch.Tensor, batch: int = 50) -> list:
    with torch.inference_mode():
        return [r for i in range(0, len(grids), batch) for r in model.caption_features(grids[i:i + batch].float())]


def val_scores(records: list, results: list) -> dict:
    """BLEU-4, METEOR and CIDEr as `captioning evaluate` computes them, and the captions that end badly."""
    hypotheses = {r.image_id: res.text for r, res in zip(records, results, strict=True)}
    scores = score_captions({r.image_id: r.captions for r in records}, hypotheses, spice=False).metrics
    return {**{k: scores[k] for k in ("Bleu_4", "METEOR", "CIDEr") if k in scores},
            "bad_endings": sum(bad_ending(t.split()) is not None for t in hypotheses.values())}


def print_table(header: Sequence[str], lines: Sequence[Sequence[str]], rows: list, json_path: str | None) -> None:
    """A markdown table (the first column left-aligned) on stdout, and `rows` as JSON at `json_path`."""
    print("| " + " | ".join(header) + " |\n| --- |" + " ---: |" * (len(header) - 1))
    for cells in lines:
        print("| " + " | ".join(cells) + " |")
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))
