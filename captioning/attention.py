"""Attention over the image grid (Xu et al. 2015, section 3.1.2).

The encoder gives L annotation vectors a_i (here P grid positions, each D channels). At step t the
attention model f_att scores every position against the previous hidden state,

    e_ti = f_att(a_i, h_{t-1}) = w^T tanh(W_a a_i + W_h h_{t-1}) + b,    alpha_ti = softmax_i(e_ti),

and the context z_t is read from the grid with those weights:

    soft (deterministic):  z_t = sum_i alpha_ti a_i                  `expected_context`
    hard (stochastic):     z_t = a_s,  s ~ Multinoulli_L({alpha_i})    `location_context`
                           (sampling and its REINFORCE gradient: `captioning.hard_attention`)

W_a a_i does not depend on t, so `project` computes it once per image and every step reuses it;
per step only W_h h_{t-1} is new. The per-step score runs through `captioning.ops` (cache-blocked,
with a recomputing backward over a teacher-forced pass), which computes the same numbers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import ops


class AdditiveAttention(nn.Module):
    """f_att: e_ti = w^T tanh(W_a a_i + W_h h_{t-1}) + b; alpha_t = softmax_i(e_ti)."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int):
        super().__init__()
        self.feature_proj = ops.Linear(feature_dim, attention_dim)               # W_a (and its bias)
        self.hidden_proj = ops.Linear(hidden_dim, attention_dim, bias=False)     # W_h
        self.score = nn.Linear(attention_dim, 1)                                 # w, b
        self.kernel: ops.Kernel = ops.additive_weights         # see `compile_kernel`

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """W_a a_i: (B, P, D) -> (B, P, A), computed once per image and reused at every step."""
        return self.feature_proj(features)

    def weights_from(self, projected: torch.Tensor, hidden_projected: torch.Tensor) -> torch.Tensor:
        """alpha (B, P) from W_a a (B, P, A) and W_h h_{t-1} (B, A); the decoder computes W_h h_{t-1}
        together with its other products of h_{t-1}. B may be k rows per image: (I, P, A), (I * k, A)."""
        return ops.attention_weights(projected, hidden_projected, self.score, self.kernel)

    def scorer(self, projected: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """`weights_from(projected, .)` for every step of one teacher-forced pass over `projected`."""
        return ops.step_weights(projected, self.score, self.kernel)

    def compile_kernel(self, **options) -> None:
        """Run the per-step part through `torch.compile(ops.additive_weights, dynamic=True, **options)`."""
        self.kernel = torch.compile(ops.additive_weights, dynamic=True, **options)


def expected_context(features: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Soft attention: z = sum_i alpha_i a_i. (I, P, D), (I * k, P) -> (I * k, D): rows i*k .. i*k+k-1 of
    alpha attend over image i (k = 1: one row per image), one matrix product per image."""
    images, positions, dim = features.shape
    return torch.bmm(alpha.view(images, -1, positions), features).view(-1, dim)


def location_context(features: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
    """Hard attention: z = a_s for one location s per row. (I, P, D), (I * k,) -> (I * k, D), rows as above."""
    per_image = location.shape[0] // features.shape[0]
    image = torch.arange(location.shape[0], device=features.device) // per_image
    return features[image, location]
