"""Soft and hard attention over the image grid (Xu et al. 2015, section 4).

The image-side projection `W_a a_i` does not depend on time, so `project` computes it once per
image and every decoding step reuses it; per step only `W_h h_{t-1}` is new."""

from __future__ import annotations

import torch
from torch import nn


class AdditiveAttention(nn.Module):
    """e_ti = w^T tanh(W_a a_i + W_h h_{t-1}); alpha_t = softmax_i(e_ti)."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int):
        super().__init__()
        self.feature_proj = nn.Linear(feature_dim, attention_dim)
        self.hidden_proj = nn.Linear(hidden_dim, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P, D) -> (B, P, A): computed once per image, reused at every step."""
        return self.feature_proj(features)

    def weights(self, projected: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """alpha: (B, P) attention distribution given the previous hidden state (B, H)."""
        energy = self.score(torch.tanh(projected + self.hidden_proj(hidden).unsqueeze(1))).squeeze(-1)
        return energy.softmax(dim=-1)


def expected_context(features: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Soft attention: z = sum_i alpha_i a_i. (B, P, D), (B, P) -> (B, D)."""
    return torch.bmm(alpha.unsqueeze(1), features).squeeze(1)


def location_context(features: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
    """Hard attention: z = a_s for one location s per row. (B, P, D), (B,) -> (B, D)."""
    return features[torch.arange(features.shape[0], device=features.device), location]
