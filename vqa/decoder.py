"""LSTM-Att of Visual7W (Zhu et al. 2016) built from the Show, Attend and Tell decoder's parts.

One sequence per question: the image's mean grid feature (projected into the word-embedding space)
is the first input, then the question words, then `<start>` and the answer words. At every step
the recurrent cell attends over the image grid exactly as in captioning (soft, or hard with
REINFORCE). Telling: the answer is decoded like a caption, so a candidate's score is
log p(answer words, <end> | image, question) and open-ended answers come from `captioning.search`
driving the inherited `step`. Pointing: each candidate box's pooled feature, through a linear
layer, is dotted with the last hidden state after the question; softmax over the boxes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from captioning.cells import State
from captioning.decoder import Memory, ShowAttendTellDecoder

from .config import AnswererConfig

IMAGE_SLOT = 0  # token id where the image is the input (its embedding is replaced by the image's)


class Sequences(NamedTuple):
    """A padded batch laid out as [image, q_1..q_n, <start>, a_1..a_m] (the answer part optional)."""

    inputs: torch.Tensor     # (B, T) token ids; column 0 is IMAGE_SLOT
    targets: torch.Tensor    # (B, T) the next answer word at each step (a_1..a_m, <end>), 0 elsewhere
    lengths: torch.Tensor    # (B,) steps per row

    def to(self, device: torch.device | str) -> Sequences:
        return Sequences(*(t.to(device) for t in self))


def pack(questions: list[list[int]], answers: list[list[int]] | None, *, start_id: int, end_id: int) -> Sequences:
    """Question ids (no <start>/<end>) and optional answer ids -> a padded `Sequences` batch."""
    rows, targets = [], []
    for i, q in enumerate(questions):
        row, target = [IMAGE_SLOT, *q], [0] * (1 + len(q))
        if answers is not None:
            row += [start_id, *answers[i]]
            target += [*answers[i], end_id]
        rows.append(row)
        targets.append(target)
    width = max(map(len, rows))
    inputs = torch.zeros(len(rows), width, dtype=torch.long)
    target_ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (row, target) in enumerate(zip(rows, targets, strict=True)):
        inputs[i, :len(row)] = torch.tensor(row)
        target_ids[i, :len(target)] = torch.tensor(target)
    return Sequences(inputs, target_ids, torch.tensor([len(r) for r in rows]))


class Unrolled(NamedTuple):
    embedded: torch.Tensor    # (B, T, E) inputs in embedding space (row 0: the image)
    hiddens: torch.Tensor     # (B, T, H) top-layer hidden state after each step
    contexts: torch.Tensor    # (B, T, D) gated context of each step
    alphas: torch.Tensor      # (B, T, P) attention of each step, zero past a row's length
    state: State              # the state after each row's last step
    memory: Memory            # the (projected) grid and its attention projection
    log_p_locations: torch.Tensor | None  # (B, T) hard attention: log p(sampled location)
    entropies: torch.Tensor | None        # (B, T)


@dataclass
class AnswerOutput:
    loss: torch.Tensor              # what the optimiser minimises
    nll: torch.Tensor               # telling: mean NLL per answer token; pointing: box cross-entropy
    alphas: torch.Tensor            # (B, T, P)
    scores: torch.Tensor            # telling: (B,) log p(answer | image, question); pointing: (B, K) box logits


class QuestionAnsweringDecoder(ShowAttendTellDecoder):
    """`ShowAttendTellDecoder` whose state starts at zero and first reads the image, then the question."""

    def __init__(self, config: AnswererConfig, vocab_size: int, encoder_dim: int):
        feature_dim = config.visual_dim or encoder_dim
        super().__init__(config, vocab_size, feature_dim)
        # Optional W_v: the encoder grid (B, P, C) -> (B, P, visual_dim) before attention; every
        # per-step product with a context vector then costs visual_dim instead of C.
        self.visual_proj = nn.Linear(encoder_dim, feature_dim) if config.visual_dim else None
        # The image is the first input (v_0 = W_i F(I)), not an initial state predicted from it.
        self.init_h = self.init_c = None
        self.image_embed = nn.Linear(feature_dim, config.embed_dim)
        if config.task == "pointing":
            self.output = None  # no words are generated
            self.box_proj = nn.Linear(encoder_dim, config.hidden_dim)  # on the crop's pooled encoder feature

    def memory(self, features: torch.Tensor) -> Memory:
        if self.visual_proj is not None:
            features = self.visual_proj(features)
        return Memory(features, self.attention.project(features))

    def init_state(self, features: torch.Tensor) -> State:
        c = self.config
        zeros = features.new_zeros(features.shape[0], c.num_layers, c.hidden_dim)
        return (zeros, zeros.clone()) if self.rnn.has_cell_state else (zeros,)

    def advance(self, x_gates: torch.Tensor, state: State, memory: Memory, mode: str | None,
                scorer: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """One step from input gates (B, G), as `step` does for a word: attend with h_{t-1}, then the
        cell. Returns (new state, context, alpha, log p(location), entropy). scorer: see `_attend`."""
        hidden = state[0][:, -1]
        gate_logit = self.gate(hidden) if self.gate is not None else None
        context, alpha, log_p, entropy = self._attend(memory, self.attention.hidden_proj(hidden), gate_logit, mode,
                                                      scorer)
        return self.rnn(x_gates + self.context_gates(context), state), context, alpha, log_p, entropy

    def unroll(self, features: torch.Tensor, seq: Sequences, mode: str | None) -> Unrolled:
        """Run the cell over every step of `seq`; rows stop updating their state at their length."""
        memory = self.memory(features)
        state = self.init_state(features)
        image = self.image_embed(memory.features.mean(dim=1)).unsqueeze(1)         # (B, 1, E)
        embedded = torch.cat([image, self.embedding(seq.inputs[:, 1:])], dim=1)    # (B, T, E)
        gates = self.embed_gates(embedded)                                          # (B, T, G): once
        scorer = self.attention.scorer(memory.projected)
        hiddens, contexts, alphas, log_ps, entropies = [], [], [], [], []
        for t in range(seq.inputs.shape[1]):
            new, context, alpha, log_p, entropy = self.advance(gates[:, t], state, memory, mode, scorer)
            live = (t < seq.lengths).view(-1, 1, 1)
            state = tuple(torch.where(live, n, s) for n, s in zip(new, state, strict=True))
            hiddens.append(new[0][:, -1])
            contexts.append(context)
            alphas.append(alpha * live[:, 0])
            log_ps.append(log_p)
            entropies.append(entropy)
        hard = mode == "sample"
        return Unrolled(embedded, torch.stack(hiddens, 1), torch.stack(contexts, 1), torch.stack(alphas, 1), state,
                        memory, torch.stack(log_ps, 1) if hard else None, torch.stack(entropies, 1) if hard else None)

    def encode(self, features: torch.Tensor, seq: Sequences) -> tuple[State, Memory, torch.Tensor]:
        """Inference: the state after each question (ready for `step` from <start>), memory, alphas."""
        out = self.unroll(features, seq, self._inference_mode())
        return out.state, out.memory, out.alphas

    def forward(self, features: torch.Tensor, seq: Sequences, box_features: torch.Tensor | None = None,
                box_targets: torch.Tensor | None = None) -> AnswerOutput:
        """Teacher-forced loss. Telling: `seq` holds answers. Pointing: `box_features` (B, K, D) and
        `box_targets` (B,) index of the right box (None: no loss, scores only)."""
        hard = self.config.attention == "hard" and self.training
        if hard:  # N Monte-Carlo attention sequences per question
            n = self.config.reinforce.samples
            features, seq = features.repeat_interleave(n, 0), Sequences(*(t.repeat_interleave(n, 0) for t in seq))
            if box_features is not None:
                box_features = box_features.repeat_interleave(n, 0)
                box_targets = None if box_targets is None else box_targets.repeat_interleave(n, 0)
        out = self.unroll(features, seq, "sample" if hard else self._inference_mode())
        steps = torch.arange(seq.inputs.shape[1], device=seq.lengths.device)
        step_mask = steps.unsqueeze(0) < seq.lengths.unsqueeze(1)  # (B, T)

        if self.config.task == "pointing":
            if box_features is None:
                raise ValueError("a pointing model needs box_features")
            query = out.state[0][:, -1]                                                # (B, H)
            scores = torch.einsum("bkh,bh->bk", self.box_proj(box_features), query)   # (B, K)
            log_probs = scores.float().log_softmax(dim=-1)
            if box_targets is None:
                zero = scores.new_zeros(())
                return AnswerOutput(zero, zero, out.alphas, scores)
            reward = log_probs.gather(1, box_targets.unsqueeze(1)).squeeze(1)         # log p(right box)
            nll = -reward.mean()
        else:
            rows = (seq.targets != 0).nonzero(as_tuple=True)
            logits = self.output(out.embedded[rows], out.hiddens[rows], out.contexts[rows])
            token_log_probs = -F.cross_entropy(logits.float(), seq.targets[rows], reduction="none")
            scores = reward = torch.zeros(features.shape[0], device=logits.device).index_add(0, rows[0],
                                                                                          token_log_probs)
            nll = -token_log_probs.sum() / max(1, rows[0].numel())
        loss = nll
        if self.config.doubly_stochastic:
            coverage = out.alphas.sum(dim=1)  # (B, P)
            loss = loss + self.config.doubly_stochastic * ((1.0 - coverage) ** 2).sum(dim=1).mean()
        if hard:
            loss = loss + self._reinforce_loss(reward, step_mask, out.log_p_locations, out.entropies,
                                               step_mask.sum())
        return AnswerOutput(loss, nll, out.alphas, scores)
