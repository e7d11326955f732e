"""`captioning average CKPT CKPT ... --out DIR`: one checkpoint whose weights are the mean of several of the
same model's (checkpoint averaging, as fairseq's average_checkpoints and stochastic weight averaging do).

Self-critical training wanders between epochs: the mean of two of its checkpoints scored better on Flickr8k
val than either (docs/training.md). Every checkpoint must hold the same model config, vocabulary and
tensor names and shapes; the first one's config.json (with an "averaged_from" record) and vocab.json are
kept. `--half` stores the floating weights in float16, as the bundled captioners are; `--length-penalty`
sets the averaged model's own beam ranking (config.json "decoding"; the bundled `flickr8k` uses 0.6)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .config import ModelConfig
from .encoder_decoder import resolve_checkpoint
from .model import BUNDLED_DIR


def average_checkpoints(sources: list[str | Path], out: str | Path, *, half: bool = False,
                        length_penalty: float | None = None) -> Path:
    """Write the mean of `sources` (checkpoint folders, run folders or bundled names) to `out`."""
    if len(sources) < 2:
        raise ValueError("averaging needs two checkpoints or more")
    folders = [resolve_checkpoint(s, BUNDLED_DIR) for s in sources]
    first = ckpt.read_config(folders[0])
    vocab = (folders[0] / ckpt.VOCAB).read_text(encoding="utf-8")
    total: dict[str, torch.Tensor] = {}
    kept: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}  # the first checkpoint's, kept unless --half
    for folder in folders:
        config = ckpt.read_config(folder)
        if not _same_model(config.get("model"), first.get("model")) or config.get("format") != first.get("format"):
            raise ValueError(f"{folder}: another model than {folders[0]} (config.json differs): cannot average")
        if _words(folder / ckpt.VOCAB) != _words(folders[0] / ckpt.VOCAB):
            raise ValueError(f"{folder}: another vocabulary than {folders[0]}: cannot average")
        weights = ckpt.read_weights(folder)
        if total and set(weights) != set(total) | set(kept):
            raise ValueError(f"{folder}: other tensor names than {folders[0]}: cannot average")
        for name, tensor in weights.items():
            if not tensor.is_floating_point():
                kept.setdefault(name, tensor)
                continue
            if name in total and total[name].shape != tensor.shape:
                raise ValueError(f"{folder}: {name} has shape {tuple(tensor.shape)}, not {tuple(total[name].shape)}")
            dtypes.setdefault(name, tensor.dtype)
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
    dtype = torch.float16 if half else None
    averaged = {name: (t / len(folders)).to(dtype or dtypes[name]) for name, t in total.items()}
    config = {**first, "averaged_from": [str(f) for f in folders]}
    if length_penalty is not None:
        if not 0 <= length_penalty <= 2:
            raise ValueError(f"--length-penalty must be in [0, 2], got {length_penalty}")
        config["decoding"] = {**config.get("decoding", {}), "length_penalty": length_penalty}
    return ckpt.save_checkpoint(out, config, vocab, {**averaged, **kept})


def _words(path: Path) -> list:
    from .vocab import Vocabulary

    return Vocabulary.load(path).words


def main(args: argparse.Namespace) -> Path:
    out = average_checkpoints(args.checkpoints, args.out, half=args.half, length_penalty=args.length_penalty)
    print(f"wrote {out} (the mean of {len(args.checkpoints)} checkpoints)")
    return out


def _same_model(one: object, other: object) -> bool:
    """Whether two config.json "model" sections describe one model (either layout, flat or nested)."""
    try:
        return ModelConfig.from_dict(one) == ModelConfig.from_dict(other)
    except (TypeError, ValueError):
        return one == other
