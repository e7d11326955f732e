"""The Show, Attend and Tell decoder (Xu et al. 2015): a recurrent network that, at every step,
attends over the image grid, gates the context, and predicts the next word.

Training is teacher-forced over whole padded batches (a mask, never a shrinking batch); the word
embeddings' share of the gates and the output layer run once over all steps, outside the loop.
Inside it, every product with h_{t-1} is one matmul, and the per-step weights form their gradients
once over all steps (`StepWeights`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AdditiveAttention, expected_context, location_context
from .cells import DerivedTensors, Linear, StackedRecurrent, State, StepWeights
from .config import ModelConfig


class Memory(NamedTuple):
    """Per-image tensors every step reads: the grid (B, P, D) and its attention projection (B, P, A).

    context_terms (decoding a few images only): the grid times the weights that read the context,
    [W_z of the gates; L_z of the deep output] (B, P, G [+ E]). The context is a weighted sum of grid
    rows, so alpha @ context_terms equals those products of the context; per step that reads P rows
    instead of the (D, G + E) weights, which is what decoding one image on a CPU waits for."""

    features: torch.Tensor
    projected: torch.Tensor
    context_terms: torch.Tensor | None = None


CONTEXT_TERMS_MAX_ROWS = 128  # B * P up to which `memory` precomputes them (a P x D x (G + E) product per image)


@dataclass
class DecoderOutput:
    loss: torch.Tensor            # what the optimiser minimises
    nll: torch.Tensor             # mean negative log-likelihood per target token
    attention_penalty: torch.Tensor  # doubly stochastic term (already weighted)
    alphas: torch.Tensor          # (B, T, P) attention per step, zero on padding
    sequence_log_probs: torch.Tensor  # (B,) log p(caption | image)


class OutputLayer(nn.Module):
    """Deep output: p(y_t) ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t)); or L_o(h_t) when shallow."""

    def __init__(self, embed_dim: int, hidden_dim: int, feature_dim: int, vocab_size: int, deep: bool, dropout: float):
        super().__init__()
        self.deep = deep
        self.dropout = nn.Dropout(dropout)
        if deep:
            self.hidden_proj = Linear(hidden_dim, embed_dim)
            self.context_proj = Linear(feature_dim, embed_dim, bias=False)
        self.logits = Linear(embed_dim if deep else hidden_dim, vocab_size)
        # <pad> (0) and <start> (1) are never a next word: -inf joins their bias, so they leave the softmax in
        # training and decoding alike, at no cost (a masked copy of the (N, V) logits would cost a pass each way).
        never = torch.zeros(vocab_size)
        never[:2] = float("-inf")
        self.register_buffer("never_predicted", never, persistent=False)

    def forward(self, embedded: torch.Tensor, hidden: torch.Tensor, context: torch.Tensor,
                context_projected: bool = False) -> torch.Tensor:
        """context_projected: `context` is already L_z z_t (from `Memory.context_terms`)."""
        if self.deep:
            hidden = embedded + self.hidden_proj(hidden) + (context if context_projected else self.context_proj(context))
        return self.logits(self.dropout(hidden), bias_offset=self.never_predicted)


class ShowAttendTellDecoder(DerivedTensors, nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, feature_dim: int):
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(vocab_size, c.embed_dim, padding_idx=0)
        self.attention = AdditiveAttention(feature_dim, c.hidden_dim, c.attention_dim)
        self.gate = Linear(c.hidden_dim, 1) if c.gate else None
        self.rnn = StackedRecurrent(c.cell, {"lstm": 4, "gru": 3, "rnn": 1}[c.cell] * c.hidden_dim,
                                    c.hidden_dim, c.num_layers, c.dropout)
        gates = self.rnn.gates_dim
        self.embed_gates = Linear(c.embed_dim, gates)           # W E y_{t-1} (+ bias), all steps at once
        self.context_gates = Linear(feature_dim, gates, bias=False)  # W z_t, per step
        # h_0 and c_0 are predicted from the mean annotation vector by two MLPs (paper, section 3.1.2).
        self.init_h = Linear(feature_dim, c.num_layers * c.hidden_dim)
        self.init_c = Linear(feature_dim, c.num_layers * c.hidden_dim) if self.rnn.has_cell_state else None
        self.output = OutputLayer(c.embed_dim, c.hidden_dim, feature_dim, vocab_size, c.deep_output, c.dropout)
        # REINFORCE's moving-average baseline: training state, saved with the weights.
        self.register_buffer("reward_baseline", torch.zeros(()))
        self.register_buffer("baseline_initialised", torch.zeros((), dtype=torch.bool))

    # ---- per-image setup -------------------------------------------------------------------
    def memory(self, features: torch.Tensor, context_terms: bool | None = None) -> Memory:
        """context_terms None: precomputed when decoding (no autograd) a few images (B * P <= 128)."""
        projected = self.attention.project(features)
        if context_terms is None:
            context_terms = not torch.is_grad_enabled() and features.shape[0] * features.shape[1] <= CONTEXT_TERMS_MAX_ROWS
        if not context_terms:
            return Memory(features, projected)
        return Memory(features, projected, features @ self._readers_matrix())  # (B, P, G [+ E])

    def _readers_matrix(self) -> torch.Tensor:
        """[W_z; L_z]^T (D, G [+ E]), kept between decoding calls (a 13 MB copy at COCO sizes; `DerivedTensors`)."""
        readers = [self.context_gates.weight, *([self.output.context_proj.weight] if self.output.deep else [])]
        return self.derived("context_readers", readers, lambda: torch.cat([w.detach() for w in readers]).t().contiguous())

    def init_state(self, features: torch.Tensor) -> State:
        mean = features.mean(dim=1)
        shape = (features.shape[0], self.config.num_layers, self.config.hidden_dim)
        h = torch.tanh(self.init_h(mean)).view(shape)
        return (h, torch.tanh(self.init_c(mean)).view(shape)) if self.init_c is not None else (h,)

    # ---- one step --------------------------------------------------------------------------
    def _hidden_weights(self) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """The attention's W_h, the gate's f_beta and (one layer) the recurrent W_hh stacked into one
        (weight, bias): every product with h_{t-1} in one matmul per step. Also the split sizes."""
        parts = [self.attention.hidden_proj, *([self.gate] if self.gate is not None else []),
                 *([self.rnn.hidden_proj[0]] if self.config.num_layers == 1 else [])]
        weight = torch.cat([p.weight for p in parts])
        bias = torch.cat([p.bias if p.bias is not None else weight.new_zeros(p.out_features) for p in parts])
        return weight, bias, [p.out_features for p in parts]

    def _attend(self, memory: Memory, hidden_projected: torch.Tensor, gate_logit: torch.Tensor | None,
                hard: str | None, scorer: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """Context for one step from W_h h_{t-1} and f_beta(h_{t-1}). hard: None (soft), 'sample' (training),
        'argmax' (test). scorer: `attention.scorer(memory.projected)`, made once per teacher-forced pass."""
        features, projected = memory[0], memory[1]
        alpha = scorer(hidden_projected) if scorer else self.attention.weights_from(projected, hidden_projected)
        log_p_location = entropy = None
        if hard is None:
            context = expected_context(features, alpha)
        elif hard == "argmax":
            context = location_context(features, alpha.argmax(dim=-1))
        else:
            location = torch.multinomial(alpha.detach().float(), 1).squeeze(1)
            use_soft = torch.rand(alpha.shape[0], device=alpha.device) < self.config.reinforce.soft_probability
            context = torch.where(use_soft.unsqueeze(1), expected_context(features, alpha),
                                  location_context(features, location))
            log_alpha = alpha.clamp_min(1e-12).log()
            log_p_location = log_alpha.gather(1, location.unsqueeze(1)).squeeze(1) * (~use_soft)
            entropy = -(alpha * log_alpha).sum(dim=-1)
        if gate_logit is not None:
            context = torch.sigmoid(gate_logit) * context
        return context, alpha, log_p_location, entropy

    def _inference_mode(self) -> str | None:
        if self.config.attention == "soft" or self.config.hard_inference == "expectation":
            return None
        return "argmax"

    def step(self, tokens: torch.Tensor, state: State, memory: Memory) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Decode one word. tokens (B,) -> log-probabilities (B, V), new state, alpha (B, P)."""
        embedded = self.embedding(tokens)
        hidden = state[0][:, -1]
        gate_logit = self.gate(hidden) if self.gate is not None else None
        terms = memory[2] if len(memory) > 2 else None
        if terms is None:
            context, alpha, _, _ = self._attend(memory, self.attention.hidden_proj(hidden), gate_logit,
                                                self._inference_mode())
            context_gates, context_out = self.context_gates(context), context
        else:  # the same attention over the grid's precomputed products: [W_z z_t, L_z z_t]
            terms, alpha, _, _ = self._attend((terms, memory[1]), self.attention.hidden_proj(hidden), gate_logit,
                                              self._inference_mode())
            context_gates, context_out = terms[:, :self.rnn.gates_dim], terms[:, self.rnn.gates_dim:]
        state = self.rnn(self.embed_gates(embedded) + context_gates, state)
        logits = self.output(embedded, state[0][:, -1], context_out, context_projected=terms is not None)
        return logits.float().log_softmax(dim=-1), state, alpha

    # ---- teacher-forced training -----------------------------------------------------------
    def forward(self, features: torch.Tensor, captions: torch.Tensor) -> DecoderOutput:
        """features (I, P, D) of I images; captions (I * k, T+1) = <start> w_1 ... <end> <pad>..., rows
        i*k .. i*k+k-1 describing image i (k = 1: one caption per grid). Loss over all targets.

        Several captions per image share one attention projection, initial state and grid read per step,
        so a batch of k captions for each of I images costs far less than I * k separate grids."""
        per_image, remainder = divmod(captions.shape[0], features.shape[0])
        if remainder or not per_image:
            raise ValueError(f"{captions.shape[0]} captions do not split evenly over {features.shape[0]} images")
        hard = self.config.attention == "hard" and self.training
        memory, state = self.memory(features, context_terms=False), self.init_state(features)
        if hard:  # N Monte-Carlo attention sequences per caption; each image's grid is still read once per step
            captions = captions.repeat_interleave(self.config.reinforce.samples, 0)
            per_image *= self.config.reinforce.samples
        state = tuple(s.repeat_interleave(per_image, 0) for s in state) if per_image > 1 else state
        inputs, targets = captions[:, :-1], captions[:, 1:]
        mask = targets != 0  # (B, T)
        steps = int(mask.sum(dim=1).max())
        inputs, targets, mask = inputs[:, :steps], targets[:, :steps], mask[:, :steps]

        embedded = self.embedding(inputs)            # (B, T, E)
        # (B, G) per step, computed once for all steps; unbind makes one gradient tensor, not one per step
        embed_gates = self.embed_gates(embedded).unbind(1)
        weight, bias, sizes = self._hidden_weights()
        from_hidden = StepWeights(weight, bias)     # [W_h; f_beta; W_hh] h_{t-1}
        context_gates = StepWeights(self.context_gates.weight)
        fused_rnn = self.config.num_layers == 1
        mode = "sample" if hard else self._inference_mode()
        scorer = self.attention.scorer(memory.projected)
        hiddens, contexts, alphas, log_p_locations, entropies = [], [], [], [], []
        for t in range(steps):
            products = from_hidden(state[0][:, -1]).split(sizes, dim=-1)
            gate_logit = products[1] if self.gate is not None else None
            context, alpha, log_p, entropy = self._attend(memory, products[0], gate_logit, mode, scorer)
            state = self.rnn(embed_gates[t] + context_gates(context), state, products[-1] if fused_rnn else None)
            hiddens.append(state[0][:, -1])
            contexts.append(context)
            alphas.append(alpha)
            if hard:
                log_p_locations.append(log_p)
                entropies.append(entropy)

        # Output layer and loss only where there is a target word (no padding rows).
        rows = mask.nonzero(as_tuple=True)
        logits = self.output(embedded[rows], torch.stack(hiddens, 1)[rows], torch.stack(contexts, 1)[rows])
        token_log_probs = -F.cross_entropy(logits.float(), targets[rows], reduction="none")
        sequence_log_probs = torch.zeros(captions.shape[0], device=logits.device).index_add(0, rows[0], token_log_probs)
        n_tokens = mask.sum()
        nll = -token_log_probs.sum() / n_tokens

        maskf = mask.unsqueeze(-1).to(alphas[0].dtype)
        alpha_seq = torch.stack(alphas, 1) * maskf  # (B, T, P)
        # Doubly stochastic attention: every location should receive about one unit of attention overall.
        penalty = self.config.doubly_stochastic * ((1.0 - alpha_seq.sum(dim=1)) ** 2).sum(dim=1).mean()
        loss = nll + penalty
        if hard:
            loss = loss + self._reinforce_loss(sequence_log_probs, mask, torch.stack(log_p_locations, 1),
                                               torch.stack(entropies, 1), n_tokens)
        return DecoderOutput(loss, nll, penalty, alpha_seq, sequence_log_probs)

    def _reinforce_loss(self, sequence_log_probs: torch.Tensor, mask: torch.Tensor, log_p_locations: torch.Tensor,
                        entropies: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
        """-(lambda_r (R - b) sum_t log p(s_t) + lambda_e H[s]) with R the per-word log-likelihood.

        The reward is divided by caption length so one scalar baseline fits captions of any length."""
        r = self.config.reinforce
        maskf = mask.to(log_p_locations.dtype)
        reward = (sequence_log_probs / mask.sum(dim=1)).detach()
        with torch.no_grad():
            batch_mean = reward.mean()
            if not bool(self.baseline_initialised):
                self.reward_baseline.copy_(batch_mean)
                self.baseline_initialised.fill_(True)
            advantage = reward - self.reward_baseline
            self.reward_baseline.mul_(r.baseline_decay).add_((1 - r.baseline_decay) * batch_mean)
        score_function = (advantage.unsqueeze(1) * log_p_locations * maskf).sum()
        entropy = (entropies * maskf).sum()
        return -(r.reward_weight * score_function + r.entropy_weight * entropy) / n_tokens
