"""Recurrent cells (LSTM, GRU, vanilla tanh RNN) stacked in layers, behind one interface.

Each cell receives its input already multiplied by the input weights (`x_gates`), so the decoder
can project all teacher-forced word embeddings in one matrix product before the time loop and
add the per-step attention context on top."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
State = tuple[torch.Tensor, ...]  # (h, c) for LSTM, (h,) otherwise; each (B, layers, H)


def _lstm(x_gates: torch.Tensor, h_gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    i, f, g, o = (x_gates + h_gates).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru(x_gates: torch.Tensor, h_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    xr, xu, xn = x_gates.chunk(3, dim=-1)
    hr, hu, hn = h_gates.chunk(3, dim=-1)
    r, u = torch.sigmoid(xr + hr), torch.sigmoid(xu + hu)
    candidate = torch.tanh(xn + r * hn)  # reset gate picks which parts of h_{t-1} feed the new content
    return (1 - u) * h + u * candidate


class _Derived(NamedTuple):
    key: tuple       # (storage, version, dtype) of every source tensor when `value` was built
    value: Any


class DerivedTensors:
    """Mixin for modules that keep tensors derived from their weights between inference calls (a
    transposed weight, concatenated readers, a BatchNorm-folded trunk), each in `__dict__["_" + name]`
    (outside the state dict). An entry is rebuilt when a source tensor changes (new storage or an
    in-place update), and all are dropped by `.to()` and by a switch between training and evaluation:
    fused optimizers (`Adam(fused=True)`) update weights in place without bumping their version
    counters, and a training loop switches to eval to validate."""

    def derived(self, name: str, sources: Sequence[torch.Tensor], build: Callable[[], Any]) -> Any:
        try:
            key = tuple((t.data_ptr(), t._version, t.dtype) for t in sources)
        except RuntimeError:  # an inference-mode tensor has no version counter: build afresh, keep nothing
            return build()
        entry = self.__dict__.get("_" + name)
        if not isinstance(entry, _Derived) or entry.key != key:
            if hasattr(type(self), "_" + name):
                raise AttributeError(f"derived tensor name {name!r} would hide {type(self).__name__}._{name}")
            entry = _Derived(key, build())
            self.__dict__["_" + name] = entry  # one assignment: concurrent callers see the old or the new entry
        return entry.value

    def _drop_derived(self) -> None:
        for name in [k for k, v in list(self.__dict__.items()) if isinstance(v, _Derived)]:
            self.__dict__.pop(name, None)

    def _apply(self, fn, recurse: bool = True):  # .to() / .cuda() / .half(): drop copies of the old weights
        self._drop_derived()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True):
        if mode != self.training:  # a real switch; the per-call eval() of `caption` keeps the copies
            self._drop_derived()
        return super().train(mode)


class Linear(DerivedTensors, nn.Linear):
    """`nn.Linear` (same parameters and state_dict) that, without autograd on a CPU, multiplies by a
    cached (in, out) copy of its weight (`DerivedTensors`): decoding a few beams is bound by reading the
    weights, and MKL reads that layout ~1.5x faster than the transposed view `F.linear` passes."""

    def forward(self, x: torch.Tensor, bias_offset: torch.Tensor | None = None) -> torch.Tensor:
        """y = x W^T + b (+ bias_offset, e.g. -inf for words that are never predicted)."""
        bias = self.bias if bias_offset is None or self.bias is None else self.bias + bias_offset
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != self.weight.dtype:
            return F.linear(x, self.weight, bias)
        weight_t = self.derived("weight_t", [self.weight], lambda: self.weight.detach().t().contiguous())
        rows = x.reshape(-1, self.in_features)
        y = rows @ weight_t if bias is None else torch.addmm(bias, rows, weight_t)
        return y.view(*x.shape[:-1], self.out_features)


class StackedRecurrent(nn.Module):
    """`num_layers` cells of kind `cell`; layer 0's input projection lives in the decoder."""

    def __init__(self, cell: str, input_gates_dim: int, hidden_dim: int, num_layers: int, dropout: float):
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r}; choose one of: {', '.join(GATES)}")
        if not 1 <= num_layers <= 4:
            raise ValueError(f"num_layers must be 1-4, got {num_layers}")
        self.cell, self.hidden_dim, self.num_layers = cell, hidden_dim, num_layers
        gates = GATES[cell] * hidden_dim
        assert input_gates_dim == gates
        self.hidden_proj = nn.ModuleList(Linear(hidden_dim, gates, bias=i == 0 or cell == "gru")
                                         for i in range(num_layers))
        self.upper_input_proj = nn.ModuleList(Linear(hidden_dim, gates) for _ in range(num_layers - 1))
        self.dropout = nn.Dropout(dropout)

    @property
    def gates_dim(self) -> int:
        return GATES[self.cell] * self.hidden_dim

    @property
    def has_cell_state(self) -> bool:
        return self.cell == "lstm"

    def forward(self, x_gates: torch.Tensor, state: State, h_gates: torch.Tensor | None = None) -> State:
        """One time step. x_gates: (B, gates) for layer 0; returns the new state.

        h_gates: layer 0's `hidden_proj(h_{t-1})` when the caller already has it (the decoder computes
        it in the same matmul as the attention's projection of h_{t-1})."""
        h_all = state[0]
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            h = h_all[:, layer]
            if layer > 0:
                x_gates = self.upper_input_proj[layer - 1](self.dropout(new_h[-1]))
            if layer > 0 or h_gates is None:
                h_gates = self.hidden_proj[layer](h)
            if self.cell == "lstm":
                h, c = _lstm(x_gates, h_gates, state[1][:, layer])
                new_c.append(c)
            elif self.cell == "gru":
                h = _gru(x_gates, h_gates, h)
            else:
                h = torch.tanh(x_gates + h_gates)
            new_h.append(h)
        h_stack = torch.stack(new_h, dim=1)
        return (h_stack, torch.stack(new_c, dim=1)) if new_c else (h_stack,)


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

    Plain autograd forms a full (out, in) weight gradient at every step and adds them up: T thin
    matmuls and T full-size additions. Here each step's backward only records (x_t, dy_t), and a
    node that autograd runs after all of them forms the weight gradient in one matmul over all
    steps. Outside autograd (inference, or no gradient wanted) it is a plain `F.linear`.
    Not twice differentiable; one backward pass per forward pass."""

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
