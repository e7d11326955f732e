"""The one inference seam: how a decoding step forms its products with the decoder's weights, chosen when a
model is loaded (`load_captioner(..., inference=)`, `model.use_inference(kind)`, `--inference`).

    fast   today's CPU machinery (`ShowAttendTellDecoder.step`): cached transposed weights, a word-gate table,
           the grid's products with the context's readers precomputed per image. The default.
    plain  the paper's equations, below, on plain `nn.Linear` products: the reference `fast` is tested against.
    int8   `fast` with every weight product of a step in int8 (`Int8Linear`: int8 weights, activations quantised
           per call, PyTorch's dynamic-quantisation kernels): W_h, f_beta, U, L_h, L_o. The per-image memory (the
           grid's products, the word-gate table) stays fp32: computed once, it costs little and keeps captions
           closer to fp32's. CPU only.

The plain step (Xu et al. 2015, section 3.1.2), for a batch of beams over their images' grids a (I, P, D):

    e_ti    = w^T tanh(W_a a_i + W_h h_{t-1}) + b            attention scores; W_a a is the memory's `projected`
    alpha_t = softmax_i(e_t)                                  where the step looks
    z_t     = beta_t * sum_i alpha_ti a_i,  beta_t = sigma(f_beta(h_{t-1}))     (hard attention: a_argmax)
    h_t     = cell(W E y_{t-1} + Z z_t + U h_{t-1})           LSTM, GRU or tanh RNN, stacked
    p(y_t)  ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))         deep output (else L_o h_t)

Training always runs the decoder's own (fused, fast) path; the seam is for decoding only, so nothing a
training step changes needs invalidating here: `plain` reads the live weights, `int8` copies them when chosen."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

from .cells import State, gru_cell, lstm_cell
from .config import CellKind
from .limits import INFERENCE_KINDS

Step = Callable[[torch.Tensor, State, tuple], tuple[torch.Tensor, State, torch.Tensor]]


def _linear(module: nn.Linear) -> nn.Linear:
    """A plain `nn.Linear` on the same weight and bias (the decoder's own are `ops.Linear` subclasses, which
    PyTorch's quantisation passes over)."""
    plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    plain.weight, plain.bias = module.weight, module.bias
    return plain


class Products(nn.Module):
    """Every weight a decoding step multiplies by, as plain linear layers."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        rnn, output = decoder.rnn, decoder.output
        self.query = _linear(decoder.attention.hidden_proj)                    # W_h
        self.score = _linear(decoder.attention.score)                          # w, b
        self.gate = _linear(decoder.gate) if decoder.gate is not None else None  # f_beta
        self.word = _linear(decoder.embed_gates)                               # W (and the gates' bias)
        self.context = _linear(decoder.context_gates)                          # Z
        self.hidden = nn.ModuleList(_linear(p) for p in rnn.hidden_proj)       # U of each layer
        self.upper = nn.ModuleList(_linear(p) for p in rnn.upper_input_proj)   # input weights of layers 1..
        self.deep = output.deep
        if output.deep:
            self.out_hidden, self.out_context = _linear(output.hidden_proj), _linear(output.context_proj)  # L_h, L_z
        self.logits = _linear(output.logits)                                   # L_o


class PlainStep:
    """`step(tokens, state, memory)` from the equations above, on `products` (plain or quantised)."""

    def __init__(self, decoder: nn.Module, products: Products):
        self.decoder, self.p = decoder, products
        self.attend = decoder.policy(False)                          # soft, or hard attention's test-time rule

    def __call__(self, tokens: torch.Tensor, state: State, memory: tuple) -> tuple[torch.Tensor, State, torch.Tensor]:
        d, p = self.decoder, self.p
        grid, projected = memory[0], memory[1]                       # a (I, P, D), W_a a (I, P, A)
        images, beams = grid.shape[0], tokens.shape[0]
        h_prev = state[0][:, -1]                                     # top layer's h_{t-1} (B, H)
        query = p.query(h_prev).view(images, beams // images, 1, -1)  # W_h h_{t-1}, k beams per image
        scores = p.score(torch.tanh(projected.unsqueeze(1) + query)).view(beams, -1)   # e_t (B, P)
        glimpse = self.attend(grid, scores.softmax(dim=-1))          # alpha_t, z_t (soft or argmax)
        z = glimpse.context if p.gate is None else torch.sigmoid(p.gate(h_prev)) * glimpse.context
        embedded = d.embedding(tokens)                               # E y_{t-1}
        new_state = self._cells(p.word(embedded) + p.context(z), state)
        h = new_state[0][:, -1]
        hidden = embedded + p.out_hidden(h) + p.out_context(z) if p.deep else h
        logits = p.logits(d.output.dropout(hidden)) + d.output.never_predicted
        return logits.float().log_softmax(dim=-1), new_state, glimpse.alpha

    def _cells(self, x_gates: torch.Tensor, state: State) -> State:
        """The stacked cell: layer l reads layer l-1's new h (through its input weights) and its own h_{t-1}."""
        cell, p = self.decoder.rnn.cell, self.p
        hs, cs = [], []
        for layer, hidden in enumerate(p.hidden):
            if layer:
                x_gates = p.upper[layer - 1](hs[-1])
            h_prev = state[0][:, layer]
            if cell == CellKind.LSTM:
                h, c = lstm_cell(x_gates, hidden(h_prev), state[1][:, layer])
                cs.append(c)
            elif cell == CellKind.GRU:
                h = gru_cell(x_gates, hidden(h_prev), h_prev)
            else:
                h = torch.tanh(x_gates + hidden(h_prev))
            hs.append(h)
        return (torch.stack(hs, 1), torch.stack(cs, 1)) if cs else (torch.stack(hs, 1),)


class Int8Linear(nn.Module):
    """`linear`'s product with int8 weights (per tensor, symmetric) and the input quantised per call (dynamic
    quantisation, as `torch.ao.nn.quantized.dynamic.Linear` runs it); the bias is added in fp32. Takes
    `ops.Linear`'s `bias_offset` (the -inf of words never predicted)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = max(float(weight.abs().max()), 1e-12) / 127.5
        with warnings.catch_warnings():  # PyTorch says quantised tensors move to torchao; in the pinned 2.14 they work
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions", category=UserWarning)
            quantised = torch.quantize_per_tensor(weight, scale, 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(quantised, None)
        self.bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor, bias_offset: torch.Tensor | None = None) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, self.in_features).float(), self.packed, True)
        if self.bias is not None:
            y = y + (self.bias if bias_offset is None else self.bias + bias_offset)
        return y.view(*x.shape[:-1], self.out_features)


STEP_PRODUCTS = ("attention.hidden_proj", "gate", "rnn.hidden_proj", "rnn.upper_input_proj", "output.hidden_proj",
                 "output.logits")  # the layers (or lists of layers, one per cell layer) a step multiplies h by


def int8_decoder(decoder: nn.Module) -> nn.Module:
    """A copy of `decoder` whose step products (`STEP_PRODUCTS`) are `Int8Linear`s; the decoder is untouched."""
    quantised = copy.deepcopy(decoder)
    for name, module in list(quantised.named_modules()):
        owner, _, attribute = name.rpartition(".")
        if isinstance(module, nn.Linear) and (name in STEP_PRODUCTS or owner in STEP_PRODUCTS):
            setattr(quantised.get_submodule(owner), attribute, Int8Linear(module))
    return quantised.eval()


def inference_step(decoder: nn.Module, kind: str) -> Step:
    """The step function of `kind` for `decoder` (fast: the decoder's own)."""
    if kind not in INFERENCE_KINDS:
        raise ValueError(f"inference must be one of {', '.join(INFERENCE_KINDS)}, got {kind!r}")
    if kind == "fast":
        return decoder.step
    if not hasattr(decoder, "attention"):  # another registered kind: its own step is its only path
        raise ValueError(f"the {kind} path computes the Show, Attend and Tell step; this decoder "
                         f"({type(decoder).__name__}) decodes with its own step: use fast")
    if decoder.output is None:
        raise ValueError("this decoder predicts no words: it has nothing to decode with another inference path")
    if kind == "plain":
        return PlainStep(decoder, Products(decoder))
    if next(decoder.parameters()).device.type != "cpu":
        raise ValueError("int8 inference runs on the CPU (PyTorch's dynamic quantisation); use fast or plain")
    return int8_decoder(decoder).step
