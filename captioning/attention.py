"""Soft and hard attention over the image grid (Xu et al. 2015, section 4).

The image-side projection `W_a a_i` does not depend on time, so `project` computes it once per
image and every decoding step reuses it; per step only `W_h h_{t-1}` is new.

The per-step score e_ti = w^T tanh(W_a a_i + W_h h_{t-1}) + b touches a (B, P, A) tensor several
times (add, tanh, score; in backward the tanh derivative, two reductions and the running sum of
the projection's gradient). Over a teacher-forced caption those passes, not the matrix products,
set the speed on a CPU. `StepScores` runs them in image blocks that stay in cache, keeps nothing of
size (B, P, A) per step for backward (it recomputes tanh from the projection), and accumulates the
projection's gradient in one buffer that a node after all steps hands to autograd."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .cells import Linear

BLOCK_ELEMENTS = 1 << 18  # about 1 MiB of fp32 per block: a block and its scratch copy fit in a core's L2


def additive_weights(projected: torch.Tensor, hidden_projected: torch.Tensor, score_weight: torch.Tensor,
                     score_bias: torch.Tensor) -> torch.Tensor:
    """alpha = softmax_i(w^T tanh(W_a a_i + W_h h) + b) from (I, P, A) and (I * k, A) -> (I * k, P).

    The per-step elementwise work of attention in plain autograd, as a pure function so it can be
    `torch.compile`d (see `AdditiveAttention.compile_kernel`)."""
    queries = _by_image(projected, hidden_projected)
    energy = F.linear(torch.tanh(projected.unsqueeze(1) + queries.unsqueeze(2)), score_weight, score_bias)
    return energy.view(-1, projected.shape[1]).softmax(dim=-1)


def _block_images(projected: torch.Tensor, rows_per_image: int) -> int:
    """Images per block: the whole batch off the CPU (one kernel per op is what a GPU wants)."""
    if projected.device.type != "cpu":
        return projected.shape[0]
    return max(1, BLOCK_ELEMENTS // (rows_per_image * projected.shape[1] * projected.shape[2]))


def _by_image(projected: torch.Tensor, hidden_projected: torch.Tensor) -> torch.Tensor:
    """(I * k, A) -> (I, k, A): the k query rows of each image."""
    return hidden_projected.view(projected.shape[0], -1, hidden_projected.shape[-1])


def additive_scores(projected: torch.Tensor, hidden_projected: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """e = w^T tanh(P + q) + b: (I, P, A), (I * k, A), (A,), () -> (I * k, P), one cache-sized block of
    images at a time; rows i*k .. i*k+k-1 of q score against image i."""
    images, positions, dim = projected.shape
    queries = _by_image(projected, hidden_projected)
    per_image = queries.shape[1]
    step = _block_images(projected, per_image)
    dtype = torch.promote_types(projected.dtype, hidden_projected.dtype)
    scores = projected.new_empty((images, per_image, positions), dtype=dtype)
    scratch = projected.new_empty((min(step, images), per_image, positions, dim), dtype=dtype)
    weight = weight.to(dtype)
    for i in range(0, images, step):
        j = min(i + step, images)
        block = scratch[:j - i]
        torch.add(projected[i:j].unsqueeze(1), queries[i:j].unsqueeze(2), out=block).tanh_()
        torch.matmul(block, weight, out=scores[i:j])
    return scores.view(-1, positions).add_(bias.to(dtype))


class _ScoreTape:
    """What the per-step nodes share: the projection, the score weights and the gradient sums."""

    def __init__(self, projected: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        self.projected, self.weight, self.bias = projected, weight, bias
        self.grad_projected: torch.Tensor | None = None  # fp32 sums over steps, made at the first backward
        self.grad_weight: torch.Tensor | None = None
        self.grad_bias: torch.Tensor | None = None


class _StepScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden_projected: torch.Tensor, token: torch.Tensor, tape: _ScoreTape) -> torch.Tensor:
        ctx.tape = tape
        ctx.save_for_backward(hidden_projected)
        return additive_scores(tape.projected, hidden_projected, tape.weight, tape.bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_scores: torch.Tensor):
        (hidden_projected,) = ctx.saved_tensors
        tape: _ScoreTape = ctx.tape
        projected = tape.projected
        images, positions, dim = projected.shape
        acc = torch.promote_types(projected.dtype, torch.float32)  # sums over steps: at least fp32
        if tape.grad_projected is None:
            tape.grad_projected = torch.zeros(projected.shape, dtype=acc, device=projected.device)
            tape.grad_weight = torch.zeros(dim, dtype=acc, device=projected.device)
            tape.grad_bias = torch.zeros((), dtype=acc, device=projected.device)
        grad_scores = grad_scores.to(acc)
        weight = tape.weight.to(acc)
        queries = _by_image(projected, hidden_projected)
        per_image = queries.shape[1]
        grad_queries = torch.empty(queries.shape, dtype=acc, device=projected.device)
        grads = grad_scores.view(images, per_image, positions)
        step = _block_images(projected, per_image)
        scratch = torch.empty((min(step, images), per_image, positions, dim), dtype=acc, device=projected.device)
        for i in range(0, images, step):
            j = min(i + step, images)
            t = scratch[:j - i]
            torch.add(projected[i:j].unsqueeze(1), queries[i:j].unsqueeze(2), out=t).tanh_()  # recomputed, not saved
            g = grads[i:j]
            tape.grad_weight.addmv_(t.view(-1, dim).t(), g.reshape(-1))
            # d/d(pre-activation) = (1 - t^2) * g * w, in place on the block
            t.mul_(t).neg_().add_(1).mul_(g.unsqueeze(-1)).mul_(weight)
            torch.sum(t, dim=2, out=grad_queries[i:j])
            tape.grad_projected[i:j].add_(t.sum(1) if per_image > 1 else t[:, 0])
        tape.grad_bias.add_(grad_scores.sum())
        return grad_queries.view(hidden_projected.shape).to(hidden_projected.dtype), grad_scores.new_zeros(()), None


class _FormScoreGrads(torch.autograd.Function):
    """Runs after every step's backward (each step consumes its output): hands over the sums."""

    @staticmethod
    def forward(ctx, projected: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                tape: _ScoreTape) -> torch.Tensor:
        ctx.tape = tape
        ctx.dtypes = (projected.dtype, weight.dtype, bias.dtype)
        return projected.new_zeros(())

    @staticmethod
    @once_differentiable
    def backward(ctx, _token_grad: torch.Tensor):
        tape: _ScoreTape = ctx.tape
        if tape.grad_projected is None:
            return None, None, None, None
        grads = (tape.grad_projected, tape.grad_weight.view(1, -1), tape.grad_bias.view(1))
        tape.grad_projected = tape.grad_weight = tape.grad_bias = None
        return (*(g.to(d) for g, d in zip(grads, ctx.dtypes)), None)


class StepScores:
    """Attention scores over one projected grid at every step of a forward pass: e_t = score(P, q_t).

    Outside autograd it is `additive_scores`; inside, each step records only q_t (B, A), and the
    projection's gradient is summed over steps in place. Not twice differentiable."""

    def __init__(self, projected: torch.Tensor, score: nn.Linear):
        weight, bias = score.weight, score.bias
        self.tape = _ScoreTape(projected.detach(), weight.detach().view(-1), bias.detach().view(()))
        tracked = torch.is_grad_enabled() and (projected.requires_grad or weight.requires_grad or bias.requires_grad)
        self.token = _FormScoreGrads.apply(projected, weight, bias, self.tape) if tracked else None

    def __call__(self, hidden_projected: torch.Tensor) -> torch.Tensor:
        if self.token is None:
            t = self.tape
            return additive_scores(t.projected, hidden_projected, t.weight, t.bias)
        return _StepScores.apply(hidden_projected, self.token, self.tape)


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
        tracked = torch.is_grad_enabled() and (projected.requires_grad or hidden_projected.requires_grad
                                               or self.score.weight.requires_grad)
        if self.kernel is not additive_weights or tracked:  # autograd through plain ops (`scorer` is the fast way)
            return self.kernel(projected, hidden_projected, self.score.weight, self.score.bias)
        return additive_scores(projected, hidden_projected, self.score.weight.view(-1), self.score.bias.view(())
                               ).softmax(dim=-1)

    def scorer(self, projected: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """alpha as a function of `hidden_proj(h_{t-1})`, for every step of one teacher-forced pass over `projected`."""
        if self.kernel is not additive_weights:
            return lambda hidden_projected: self.weights_from(projected, hidden_projected)
        scores = StepScores(projected, self.score)
        return lambda hidden_projected: scores(hidden_projected).softmax(dim=-1)


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
