"""LSTM-Att of Visual7W (Zhu et al. 2016) built from the Show, Attend and Tell decoder's parts.

One sequence per question: the image's mean grid feature (projected into the word-embedding space)
is the first input, then the question words, then `<start>` and the answer words. At every step
the recurrent cell attends over the image grid exactly as in captioning (soft, or hard with
REINFORCE), through the inherited `unroll` and `step` (one recurrence, `recur`). Telling: the
answer is decoded like a caption, so a candidate's score is log p(answer words, <end> | image,
question) and open-ended answers come from `captioning.search` driving `step`. Pointing: each
candidate box's pooled feature, through a linear layer, is dotted with the last hidden state
after the question; softmax over the boxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from captioning.cells import State
from captioning.decoder import Memory, ShowAttendTellDecoder, Unrolled
from captioning.decoders import ANSWER, DEFAULT_DECODER, register_decoder
from captioning.hard_attention import Policy, repeat_samples
from captioning.losses import target_log_probs

from .config import AnswererConfig, QATask

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


class QuestionPass(NamedTuple):
    """The cell run over a `Sequences` batch."""

    embedded: torch.Tensor    # (B, T, E) inputs in embedding space (row 0: the image)
    memory: Memory            # the (projected) grid and its attention projection
    out: Unrolled             # hiddens, contexts, alphas (zero past a row's length), final state, samples


@dataclass
class AnswerOutput:
    loss: torch.Tensor              # what the optimiser minimises
    nll: torch.Tensor               # telling: mean NLL per answer token; pointing: box cross-entropy
    alphas: torch.Tensor            # (B, T, P)
    scores: torch.Tensor            # telling: (B,) log p(answer | image, question); pointing: (B, K) box logits


@register_decoder(DEFAULT_DECODER, task=ANSWER)
class QuestionAnsweringDecoder(ShowAttendTellDecoder):
    """`ShowAttendTellDecoder` whose state starts at zero and first reads the image, then the question: the
    paper's decoder as the answerer's registered kind (`AnswererConfig.decoder`, the "answer" task)."""

    def __init__(self, config: AnswererConfig, vocab_size: int, encoder_dim: int):
        feature_dim = config.visual_dim or encoder_dim
        pointing = config.task == QATask.POINTING
        # The image is the first input (v_0 = W_i F(I)), not an initial state predicted from it; a pointing
        # model generates no words.
        super().__init__(config, vocab_size, feature_dim, predict_initial_state=False, predict_words=not pointing)
        # Optional W_v: the encoder grid (B, P, C) -> (B, P, visual_dim) before attention; every
        # per-step product with a context vector then costs visual_dim instead of C.
        self.visual_proj = nn.Linear(encoder_dim, feature_dim) if config.visual_dim else None
        self.image_embed = nn.Linear(feature_dim, config.embed_dim)
        if pointing:
            self.box_proj = nn.Linear(encoder_dim, config.hidden_dim)  # on the crop's pooled encoder feature

    def memory(self, features: torch.Tensor, context_terms: bool | None = False) -> Memory:
        """The grid through W_v (when set), then as in captioning (no precomputed context terms by default)."""
        if self.visual_proj is not None:
            features = self.visual_proj(features)
        return super().memory(features, context_terms=context_terms)

    def read(self, features: torch.Tensor, seq: Sequences, policy: Policy) -> QuestionPass:
        """Run the cell over every step of `seq` (the decoder's `unroll`); rows stop at their length."""
        memory = self.memory(features)
        state = self.init_state(features)
        image = self.image_embed(memory.features.mean(dim=1)).unsqueeze(1)         # (B, 1, E)
        embedded = torch.cat([image, self.embedding(seq.inputs[:, 1:])], dim=1)    # (B, T, E)
        gates = self.embed_gates(embedded).unbind(1)                                # (B, G) per step: once
        out = self.unroll(gates, state, memory, policy, fused=torch.is_grad_enabled(), lengths=seq.lengths)
        return QuestionPass(embedded, memory, out)

    def encode(self, features: torch.Tensor, seq: Sequences) -> tuple[State, Memory, torch.Tensor]:
        """Inference: the state after each question (ready for `step` from <start>), memory, alphas."""
        p = self.read(features, seq, self.policy(sampling=False))
        return p.out.state, p.memory, p.out.alphas

    def forward(self, features: torch.Tensor, seq: Sequences, box_features: torch.Tensor | None = None,
                box_targets: torch.Tensor | None = None) -> AnswerOutput:
        """Teacher-forced loss. Telling: `seq` holds answers. Pointing: `box_features` (B, K, D) and
        `box_targets` (B,) index of the right box (None: no loss, scores only)."""
        sampling = self.sampling()
        if sampling:  # N Monte-Carlo attention sequences per question
            n = self.config.reinforce.samples
            features, box_features, box_targets = repeat_samples(n, features, box_features, box_targets)
            seq = Sequences(*repeat_samples(n, *seq))
        p = self.read(features, seq, self.policy(sampling))
        out = p.out
        steps = torch.arange(seq.inputs.shape[1], device=seq.lengths.device)
        step_mask = steps.unsqueeze(0) < seq.lengths.unsqueeze(1)  # (B, T)

        if self.config.task == QATask.POINTING:
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
            logits = self.output(p.embedded[rows], out.hiddens[rows], out.contexts[rows])
            _, scores, nll = target_log_probs(logits, seq.targets[rows], rows[0], features.shape[0])
            reward = scores
        loss = nll
        if self.config.doubly_stochastic:
            coverage = out.alphas.sum(dim=1)  # (B, P)
            loss = loss + self.config.doubly_stochastic * ((1.0 - coverage) ** 2).sum(dim=1).mean()
        if sampling:
            loss = loss + self.reinforce_loss(reward, step_mask, out, step_mask.sum())
        return AnswerOutput(loss, nll, out.alphas, scores)
