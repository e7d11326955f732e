"""Recurrent cells (LSTM, GRU, vanilla tanh RNN) stacked in layers, behind one interface.

Each cell receives its input already multiplied by the input weights (`x_gates`), so the decoder
can project all teacher-forced word embeddings in one matrix product before the time loop and
add the per-step attention context on top."""

from __future__ import annotations

import torch
from torch import nn

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
        self.hidden_proj = nn.ModuleList(nn.Linear(hidden_dim, gates, bias=i == 0 or cell == "gru")
                                         for i in range(num_layers))
        self.upper_input_proj = nn.ModuleList(nn.Linear(hidden_dim, gates) for _ in range(num_layers - 1))
        self.dropout = nn.Dropout(dropout)

    @property
    def gates_dim(self) -> int:
        return GATES[self.cell] * self.hidden_dim

    @property
    def has_cell_state(self) -> bool:
        return self.cell == "lstm"

    def forward(self, x_gates: torch.Tensor, state: State) -> State:
        """One time step. x_gates: (B, gates) for layer 0; returns the new state."""
        h_all = state[0]
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            h = h_all[:, layer]
            if layer > 0:
                x_gates = self.upper_input_proj[layer - 1](self.dropout(new_h[-1]))
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
