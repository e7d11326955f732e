"""Soft and hard attention over the image grid (Xu et al. 2015, section 4).

The image-side projection `W_a a_i` does not depend on time, so `project` computes it once per
image and every decoding step reuses it; per step only `W_h h_{t-1}` is new."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .cells import Linear


def additive_weights(projected: torch.Tensor, hidden_projected: torch.Tensor, score_weight: torch.Tensor,
                     score_bias: torch.Tensor) -> torch.Tensor:
    """alpha = softmax_i(w^T tanh(W_a a_i + W_h h) + b) from (B, P, A) and (B, A) -> (B, P).

    The per-step elementwise work of attention, as a pure function so it can be `torch.compile`d
    (on a GPU the add, tanh and score fuse into one pass over (B, P, A) instead of several)."""
    energy = F.linear(torch.tanh(projected + hidden_projected.unsqueeze(1)), score_weight, score_bias)
    return energy.squeeze(-1).softmax(dim=-1)


class AdditiveAttention(nn.Module):
    """e_ti = w^T tanh(W_a a_i + W_h h_{t-1}); alpha_t = softmax_i(e_ti)."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int):
        super().__init__()
        self.feature_proj = Linear(feature_dim, attention_dim)
        self.hidden_proj = Linear(hidden_dim, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1)
        self.kernel: Callable[..., torch.Tensor] = additive_weights  # see `compile_kernel`

    def compile_kernel(self, **options) -> None:
        """Run the per-step part through `torch.compile(additive_weights, dynamic=True, **options)`."""
        self.kernel = torch.compile(additive_weights, dynamic=True, **options)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P, D) -> (B, P, A): computed once per image, reused at every step."""
        return self.feature_proj(features)

    def weights(self, projected: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """alpha: (B, P) attention distribution given the previous hidden state (B, H)."""
        return self.weights_from(projected, self.hidden_proj(hidden))

    def weights_from(self, projected: torch.Tensor, hidden_projected: torch.Tensor) -> torch.Tensor:
        """alpha from `hidden_proj(h)` (B, A) computed by the caller (the decoder fuses it with other products of h)."""
        return self.kernel(projected, hidden_projected, self.score.weight, self.score.bias)


def expected_context(features: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Soft attention: z = sum_i alpha_i a_i. (B, P, D), (B, P) -> (B, D)."""
    return torch.bmm(alpha.unsqueeze(1), features).squeeze(1)


def location_context(features: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
    """Hard attention: z = a_s for one location s per row. (B, P, D), (B,) -> (B, D)."""
    return features[torch.arange(features.shape[0], device=features.device), location]
