"""Tiny models and data that train in seconds on two CPU cores."""

from __future__ import annotations

import torch

from captioning import Captioner, ModelConfig, Vocabulary

CAPTIONS = [
    "a red circle above a blue square",
    "a green triangle",
    "two yellow squares next to each other",
    "a blue circle to the left of a red triangle",
    "a purple square below a green circle",
]


def tiny_config(**overrides) -> ModelConfig:
    base = dict(embed_dim=32, hidden_dim=64, attention_dim=32, dropout=0.0, image_size=64, max_len=16)
    base.update(overrides)
    return ModelConfig(**base)


def tiny_captioner(vocab: Vocabulary, **overrides) -> Captioner:
    torch.manual_seed(0)
    return Captioner(tiny_config(**overrides), vocab, pretrained_encoder=False).eval()


def padded(vocab: Vocabulary, captions: list[str]) -> torch.Tensor:
    ids = [vocab.encode(c) for c in captions]
    width = max(map(len, ids))
    return torch.tensor([i + [vocab.pad_id] * (width - len(i)) for i in ids])


def random_features(n: int, positions: int = 4, dim: int = 1280, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, positions, dim, generator=g)
