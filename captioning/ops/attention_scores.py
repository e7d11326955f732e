"""Fast paths for the attention scores e_ti = w^T tanh(W_a a_i + W_h h_{t-1}) + b (`captioning.attention`).

The per-step score touches a (B, P, A) tensor several times (add, tanh, score; in backward the tanh
derivative, two reductions and the running sum of the projection's gradient). Over a teacher-forced
caption those passes, not the matrix products, set the speed on a CPU. `StepScores` runs them in
image blocks that stay in cache, keeps nothing of size (B, P, A) per step for backward (it
recomputes tanh from the projection), and accumulates the projection's gradient in one buffer that
a node after all steps hands to autograd (`tape.step_token`)."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .tape import step_token

BLOCK_ELEMENTS = 1 << 18  # about 1 MiB of fp32 per block: a block and its scratch copy fit in a core's L2

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def additive_weights(projected: torch.Tensor, hidden_projected: torch.Tensor, score_weight: torch.Tensor,
                     score_bias: torch.Tensor) -> torch.Tensor:
    """alpha = softmax_i(w^T tanh(W_a a_i + W_h h) + b) from (I, P, A) and (I * k, A) -> (I * k, P).

    The per-step elementwise work of attention in plain autograd, as a pure function so it can be
    `torch.compile`d (see `AdditiveAttention.compile_kernel`)."""
    queries = _by_image(projected, hidden_projected)
    energy = F.linear(torch.tanh(projected.unsqueeze(1) + queries.unsqueeze(2)), score_weight, score_bias)
    return energy.view(-1, projected.shape[1]).softmax(dim=-1)


def attention_weights(projected: torch.Tensor, hidden_projected: torch.Tensor, score: nn.Linear,
                      kernel: Kernel = additive_weights) -> torch.Tensor:
    """alpha (I * k, P) for one step: `kernel` under autograd or when compiled, else the blocked scores."""
    tracked = torch.is_grad_enabled() and (projected.requires_grad or hidden_projected.requires_grad
                                           or score.weight.requires_grad)
    if kernel is not additive_weights or tracked:  # autograd through plain ops (`step_weights` is the fast way)
        return kernel(projected, hidden_projected, score.weight, score.bias)
    return additive_scores(projected, hidden_projected, score.weight.view(-1), score.bias.view(())).softmax(dim=-1)


def step_weights(projected: torch.Tensor, score: nn.Linear,
                 kernel: Kernel = additive_weights) -> Callable[[torch.Tensor], torch.Tensor]:
    """alpha as a function of W_h h_{t-1}, for every step of one teacher-forced pass over `projected`."""
    if kernel is not additive_weights:
        return lambda hidden_projected: attention_weights(projected, hidden_projected, score, kernel)
    scores = StepScores(projected, score)
    return lambda hidden_projected: scores(hidden_projected).softmax(dim=-1)


def _block_images(projected: torch.Tensor, rows_per_image: int) -> int:
    """Images per block: the whole batch off the CPU (one kernel per op is what a GPU wants)."""
    if projected.device.type != "cpu":
        return projected.shape[0]
    return max(1, BLOCK_ELEMENTS // (rows_per_image * projected.shape[1] * projected.shape[2]))


def _by_image(projected: torch.Tensor, hidden_projected: torch.Tensor) -> torch.Tensor:
    """(I * k, A) -> (I, k, A): the k query rows of each image."""
    return hidden_projected.view(projected.shape[0], -1, hidden_projected.shape[-1])


def _tanh_blocks(projected: torch.Tensor, queries: torch.Tensor, dtype: torch.dtype):
    """Yield (i, j, tanh(P[i:j] + q[i:j])) as (j - i, k, P, A) over cache-sized blocks of images, in one
    reused buffer: the pass over (P, A) that both the scores and their backward start from."""
    images, positions, dim = projected.shape
    per_image = queries.shape[1]
    step = _block_images(projected, per_image)
    scratch = torch.empty((min(step, images), per_image, positions, dim), dtype=dtype, device=projected.device)
    for i in range(0, images, step):
        j = min(i + step, images)
        block = scratch[:j - i]
        tanh_(torch.add(projected[i:j].unsqueeze(1), queries[i:j].unsqueeze(2), out=block))
        yield i, j, block


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place. On a CPU by whichever of two formulas runs faster there (`sigmoid_tanh_is_faster`):
    torch.tanh, or 2 sigmoid(2x) - 1 (`tanh_by_sigmoid_`, the same to 2e-7 in fp32). Which one wins depends
    on the machine, not on the code: one host here ran the sigmoid form 3.6x faster, another ran it 2.2x
    slower (docs/performance.md), and this tanh is the largest elementwise cost of a beam step."""
    return tanh_by_sigmoid_(x) if uses_sigmoid_tanh(x.device) else x.tanh_()


def uses_sigmoid_tanh(device: torch.device) -> bool:
    """Whether `tanh_` runs the sigmoid form on `device` (a CPU where it measured faster)."""
    return device.type == "cpu" and sigmoid_tanh_is_faster()


def tanh_by_sigmoid_(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1, in place."""
    return torch.sigmoid(x.mul_(2.0), out=x).mul_(2.0).sub_(1.0)


@functools.cache
def sigmoid_tanh_is_faster() -> bool:
    """Time both tanh formulas once per process on one beam step's (4, 100, 512) values, interleaved,
    with the threads the process has then (a few milliseconds, once). Outputs agree either way, to 2e-7."""
    probe = torch.linspace(-4.0, 4.0, 4 * 100 * 512).view(4, 100, 512)  # no random draw: training's RNG stays put
    scratch = torch.empty_like(probe)
    forms = (lambda: scratch.copy_(probe).tanh_(), lambda: tanh_by_sigmoid_(scratch.copy_(probe)))
    times: tuple[list[float], list[float]] = ([], [])
    with torch.no_grad():
        for round_ in range(12):
            for form, spent in zip(forms, times, strict=True):
                start = time.perf_counter()
                form()
                if round_ >= 2:  # the first two rounds warm up
                    spent.append(time.perf_counter() - start)
    return statistics.median(times[1]) < statistics.median(times[0])


def additive_scores(projected: torch.Tensor, hidden_projected: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """e = w^T tanh(P + q) + b: (I, P, A), (I * k, A), (A,), () -> (I * k, P), one cache-sized block of
    images at a time; rows i*k .. i*k+k-1 of q score against image i."""
    queries = _by_image(projected, hidden_projected)
    dtype = torch.promote_types(projected.dtype, hidden_projected.dtype)
    scores = projected.new_empty(queries.shape[:2] + projected.shape[1:2], dtype=dtype)  # (I, k, P)
    weight = weight.to(dtype)
    for i, j, block in _tanh_blocks(projected, queries, dtype):
        torch.matmul(block, weight, out=scores[i:j])
    return scores.view(-1, projected.shape[1]).add_(bias.to(dtype))


class _ScoreTape:
    """What the per-step nodes share: the projection, the score weights and the gradient sums."""

    def __init__(self, projected: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        self.projected, self.weight, self.bias = projected.detach(), weight.detach().view(-1), bias.detach().view(())
        self.dtypes = (projected.dtype, weight.dtype, bias.dtype)
        self.grads: list[torch.Tensor] | None = None  # sums over steps, made by the first backward

    def sums(self) -> list[torch.Tensor]:
        """(projection, score weight, score bias) gradient sums, in at least fp32."""
        if self.grads is None:
            acc, device = torch.promote_types(self.projected.dtype, torch.float32), self.projected.device
            self.grads = [torch.zeros(t.shape, dtype=acc, device=device)
                          for t in (self.projected, self.weight, self.bias)]
        return self.grads

    def collect(self) -> tuple[torch.Tensor | None, ...]:
        """The gradients of (projection, score weight, score bias) summed over every step's backward."""
        if self.grads is None:
            return None, None, None
        projected, weight, bias = self.grads
        self.grads = None
        return tuple(g.to(d) for g, d in zip((projected, weight.view(1, -1), bias.view(1)), self.dtypes, strict=True))


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
        grad_projected, grad_weight, grad_bias = tape.sums()
        acc = grad_projected.dtype
        queries = _by_image(tape.projected, hidden_projected)
        grads = grad_scores.to(acc).view(queries.shape[:2] + tape.projected.shape[1:2])  # (I, k, P)
        weight = tape.weight.to(acc)
        grad_queries = torch.empty(queries.shape, dtype=acc, device=queries.device)
        for i, j, t in _tanh_blocks(tape.projected, queries, acc):  # tanh recomputed, not saved
            g = grads[i:j]
            grad_weight.addmv_(t.reshape(-1, t.shape[-1]).t(), g.reshape(-1))
            # d/d(pre-activation) = (1 - t^2) * g * w, in place on the block
            t.mul_(t).neg_().add_(1).mul_(g.unsqueeze(-1)).mul_(weight)
            torch.sum(t, dim=2, out=grad_queries[i:j])
            grad_projected[i:j].add_(t.sum(1) if t.shape[1] > 1 else t[:, 0])
        grad_bias.add_(grads.sum())
        return grad_queries.view(hidden_projected.shape).to(hidden_projected.dtype), grad_scores.new_zeros(()), None


class StepScores:
    """Attention scores over one projected grid at every step of a forward pass: e_t = score(P, q_t).

    Outside autograd it is `additive_scores`; inside, each step records only q_t (B, A), and the
    projection's gradient is summed over steps in place (`tape.step_token`). Not twice differentiable."""

    def __init__(self, projected: torch.Tensor, score: nn.Linear):
        self.tape = _ScoreTape(projected, score.weight, score.bias)
        self.token = step_token(self.tape, projected, score.weight, score.bias)

    def __call__(self, hidden_projected: torch.Tensor) -> torch.Tensor:
        if self.token is None:
            t = self.tape
            return additive_scores(t.projected, hidden_projected, t.weight, t.bias)
        return _StepScores.apply(hidden_projected, self.token, self.tape)
