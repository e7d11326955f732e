"""Recurrent cells (LSTM, GRU, vanilla tanh RNN) stacked in layers, behind one interface.

The LSTM of Xu et al. (2015, eq. 1-3), with T_{D+m+n,n} split into what multiplies the previous
word, the context and the previous hidden state:

    (i, f, o, g) = (sigma, sigma, sigma, tanh)(W E y_{t-1} + U h_{t-1} + Z z_t)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

Each cell receives its input already multiplied by the input weights (`x_gates` = W E y + Z z),
so the decoder can project all teacher-forced word embeddings in one matrix product before the
time loop and add the per-step context on top."""

from __future__ import annotations

import torch
from torch import nn

from .config import CellKind
from .ops import Linear

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # gate blocks per cell kind (keys equal the `CellKind` members)
State = tuple[torch.Tensor, ...]  # (h, c) for LSTM, (h,) otherwise; each (B, layers, H)


def lstm_cell(x_gates: torch.Tensor, h_gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 4H), (B, 4H), c_{t-1} (B, H) -> h_t, c_t."""
    i, f, g, o = (x_gates + h_gates).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(x_gates: torch.Tensor, h_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """(B, 3H), (B, 3H), h_{t-1} (B, H) -> h_t."""
    xr, xu, xn = x_gates.chunk(3, dim=-1)
    hr, hu, hn = h_gates.chunk(3, dim=-1)
    r, u = torch.sigmoid(xr + hr), torch.sigmoid(xu + hu)
    candidate = torch.tanh(xn + r * hn)  # reset gate picks which parts of h_{t-1} feed the new content
    return (1 - u) * h + u * candidate


class StackedRecurrent(nn.Module):
    """`num_layers` cells of kind `cell`; layer 0's input projection lives in the decoder."""

    def __init__(self, cell: CellKind | str, input_gates_dim: int, hidden_dim: int, num_layers: int, dropout: float):
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r}; choose one of: {', '.join(GATES)}")
        if not 1 <= num_layers <= 4:
            raise ValueError(f"num_layers must be 1-4, got {num_layers}")
        self.cell, self.hidden_dim, self.num_layers = CellKind(cell), hidden_dim, num_layers
        gates = GATES[cell] * hidden_dim
        assert input_gates_dim == gates
        self.hidden_proj = nn.ModuleList(Linear(hidden_dim, gates, bias=i == 0 or cell == CellKind.GRU)
                                         for i in range(num_layers))
        self.upper_input_proj = nn.ModuleList(Linear(hidden_dim, gates) for _ in range(num_layers - 1))
        self.dropout = nn.Dropout(dropout)

    @property
    def gates_dim(self) -> int:
        return GATES[self.cell] * self.hidden_dim

    @property
    def has_cell_state(self) -> bool:
        return self.cell == CellKind.LSTM

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
            if self.cell == CellKind.LSTM:
                h, c = lstm_cell(x_gates, h_gates, state[1][:, layer])
                new_c.append(c)
            elif self.cell == CellKind.GRU:
                h = gru_cell(x_gates, h_gates, h)
            else:
                h = torch.tanh(x_gates + h_gates)
            new_h.append(h)
        h_stack = torch.stack(new_h, dim=1)
        return (h_stack, torch.stack(new_c, dim=1)) if new_c else (h_stack,)
