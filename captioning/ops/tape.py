"""Autograd tapes for a teacher-forced time loop: per-step nodes record only their inputs, and one
node that autograd runs after all of them forms each shared weight's gradient at once.

Plain autograd forms a full (out, in) weight gradient at every step and adds them up: T thin
matmuls and T full-size additions. Not twice differentiable; one backward pass per forward pass."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class _CollectAfterSteps(torch.autograd.Function):
    """A 0-d token made from `inputs` that every per-step node consumes (sending it zeros), so autograd
    runs this node after all of them: it turns their shared tape's sums into the gradients of `inputs`
    (`tape.collect()`), instead of each step adding a full-size gradient."""

    @staticmethod
    def forward(ctx, tape: Any, *inputs: torch.Tensor | None) -> torch.Tensor:
        ctx.tape = tape
        return inputs[0].new_zeros(())

    @staticmethod
    @once_differentiable
    def backward(ctx, _token_grad: torch.Tensor):
        return (None, *ctx.tape.collect())


def step_token(tape: Any, *inputs: torch.Tensor | None) -> torch.Tensor | None:
    """`_CollectAfterSteps` over `inputs`, or None when autograd wants none of their gradients."""
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    return _CollectAfterSteps.apply(tape, *inputs) if tracked else None


class StepWeights:
    """One linear map applied at every time step of a forward pass: `y_t = x_t W^T + b`.

    Each step's backward only records (x_t, dy_t), and a node that autograd runs after all of them
    forms the weight gradient in one matmul over all steps. Outside autograd (inference, or no
    gradient wanted) it is a plain `F.linear`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        self.weight, self.bias = weight, bias
        self.tape = _Tape(weight.detach(), None if bias is None else bias.detach())
        self.token = step_token(self.tape, weight, bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.token is None:
            return F.linear(x, self.weight, self.bias)
        return _TapedLinear.apply(x, self.token, self.tape)


class _Tape:
    """What the backward nodes share (no tensors with a grad_fn, so no reference cycles)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = weight, bias
        self.inputs: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        self.cast: dict[torch.dtype, torch.Tensor] = {}

    def weight_as(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self.cast:
            self.cast[dtype] = self.weight.to(dtype)
        return self.cast[dtype]

    def collect(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The weight (and bias) gradient over all recorded steps, in one matmul."""
        if not self.grads:
            return None, None
        dy = torch.cat(self.grads)                      # (T*B, out)
        x = torch.cat(self.inputs).to(dy.dtype)         # (T*B, in)
        self.inputs, self.grads, self.cast = [], [], {}
        return dy.t().mm(x), dy.sum(0) if self.bias is not None else None


class _TapedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, token: torch.Tensor, tape: _Tape) -> torch.Tensor:
        ctx.tape = tape
        ctx.save_for_backward(x)
        return F.linear(x, tape.weight, tape.bias)  # under autocast: in its dtype

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):
        (x,) = ctx.saved_tensors
        tape: _Tape = ctx.tape
        tape.inputs.append(x)
        tape.grads.append(dy)
        dx = dy.mm(tape.weight_as(dy.dtype)) if ctx.needs_input_grad[0] else None
        return dx, dy.new_zeros(()), None
