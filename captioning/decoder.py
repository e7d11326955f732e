"""The Show, Attend and Tell decoder (Xu et al. 2015, section 3.1.2): a recurrent network that, at
every step, attends over the image grid, gates the context, and predicts the next word.

    alpha_t = f_att(a, h_{t-1});  z_t = beta_t * phi(a, alpha_t),  beta_t = sigma(f_beta(h_{t-1}))
    h_t = LSTM(E y_{t-1}, h_{t-1}, z_t)
    p(y_t | a, y_1..y_{t-1}) ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))        (deep output, eq. 7)

`recur` is the one place that recurrence happens; decoding (`step`, driven by `captioning.search`)
and the teacher-forced pass (`unroll`, used by `forward` and by the VQA decoder) both call it.
They differ only in how the products with the weights are formed (`Reads`): one matmul per module
while decoding, and in training every product with h_{t-1} fused into one matmul whose weight
gradient is formed once over all steps (`ops.StepWeights`). Word embeddings' share of the gates
and the output layer run once over all steps, outside the loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .attention import AdditiveAttention
from .cells import GATES, StackedRecurrent, State
from .config import AttentionMode, ModelConfig
from .decoders import register_decoder
from .hard_attention import Glimpse, Policy, attention_policy, reinforce_loss, repeat_samples
from .losses import generation_logits, target_log_probs
from .ops import DerivedTensors, Linear, StepWeights
from .search import GenerationRules


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


class Reads(NamedTuple):
    """How one step multiplies by the decoder's weights: the same maths, formed for speed."""

    hidden: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]
    # h_{t-1} (B, H) -> (W_h h (B, A), f_beta(h) (B, 1) or None, layer 0's U h (B, G) or None: the cell forms it)
    alpha: Callable[[torch.Tensor], torch.Tensor]          # W_h h_{t-1} (B, A) -> alpha (B, P)
    context_gates: Callable[[torch.Tensor], torch.Tensor]  # z_t (B, D) -> Z z_t (B, G)


class Unrolled(NamedTuple):
    """A teacher-forced pass over T steps."""

    hiddens: torch.Tensor     # (B, T, H) top-layer hidden state after each step
    contexts: torch.Tensor    # (B, T, D) gated context of each step
    alphas: torch.Tensor      # (B, T, P) attention of each step (zero past a row's length, when given)
    state: State              # the state after each row's last step
    log_p_locations: torch.Tensor | None  # (B, T) sampled hard attention: log p(s_t)
    entropies: torch.Tensor | None        # (B, T)


@dataclass
class DecoderOutput:
    loss: torch.Tensor            # what the optimiser minimises
    nll: torch.Tensor             # mean negative log-likelihood per target token
    attention_penalty: torch.Tensor  # doubly stochastic term (already weighted)
    alphas: torch.Tensor          # (B, T, P) attention per step, zero on padding
    sequence_log_probs: torch.Tensor  # (B,) log p(caption | image)


def never_predicted(vocab_size: int) -> torch.Tensor:
    """A bias offset for the (V,) word logits: <pad> (0) and <start> (1) are never a next word, so -inf joins
    their bias and they leave the softmax in training and decoding alike, at no cost (a masked copy of the
    (N, V) logits would cost a pass each way)."""
    never = torch.zeros(vocab_size)
    never[:2] = float("-inf")
    return never


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
        self.register_buffer("never_predicted", never_predicted(vocab_size), persistent=False)

    def forward(self, embedded: torch.Tensor, hidden: torch.Tensor, context: torch.Tensor,
                context_projected: bool = False) -> torch.Tensor:
        """context_projected: `context` is already L_z z_t (from `Memory.context_terms`)."""
        if self.deep:
            hidden = embedded + self.hidden_proj(hidden) + (context if context_projected else self.context_proj(context))
        return self.logits(self.dropout(hidden), bias_offset=self.never_predicted)


@register_decoder("show_attend_tell")
class ShowAttendTellDecoder(DerivedTensors, nn.Module):
    """predict_initial_state: h_0, c_0 from the mean annotation vector (else zeros: the VQA decoder
    reads the image as its first input); predict_words: build the output layer (a pointing VQA model
    picks boxes instead)."""

    def __init__(self, config: ModelConfig, vocab_size: int, feature_dim: int, *, predict_initial_state: bool = True,
                 predict_words: bool = True):
        super().__init__()
        self.config = c = config
        self.embedding = nn.Embedding(vocab_size, c.embed_dim, padding_idx=0)
        self.attention = AdditiveAttention(feature_dim, c.hidden_dim, c.attention_dim)
        self.gate = Linear(c.hidden_dim, 1) if c.gate else None
        self.rnn = StackedRecurrent(c.cell, GATES[c.cell] * c.hidden_dim, c.hidden_dim, c.num_layers, c.dropout)
        gates = self.rnn.gates_dim
        self.embed_gates = Linear(c.embed_dim, gates)           # W E y_{t-1} (+ bias), all steps at once
        self.context_gates = Linear(feature_dim, gates, bias=False)  # Z z_t, per step
        self.predicts_initial_state = predict_initial_state
        if predict_initial_state:  # two MLPs on the mean annotation vector (paper, section 3.1.2)
            self.init_h = Linear(feature_dim, c.num_layers * c.hidden_dim)
            self.init_c = Linear(feature_dim, c.num_layers * c.hidden_dim) if self.rnn.has_cell_state else None
        self.output = OutputLayer(c.embed_dim, c.hidden_dim, feature_dim, vocab_size, c.deep_output, c.dropout
                                  ) if predict_words else None
        # REINFORCE's moving-average baseline: training state, saved with the weights.
        self.register_buffer("reward_baseline", torch.zeros(()))
        self.register_buffer("baseline_initialised", torch.zeros((), dtype=torch.bool))

    @classmethod
    def estimate_parameters(cls, config: ModelConfig, vocab_size: int, feature_dim: int) -> int:
        """About how many parameters `__init__` makes (the loader's check before building)."""
        e, h, a, d, n = config.embed_dim, config.hidden_dim, config.attention_dim, feature_dim, config.num_layers
        recurrent = 4 * h * (e + d + h) + (n - 1) * 4 * h * 2 * h
        return (2 * vocab_size * e + recurrent + 2 * n * d * h + a * (d + h + 1) + h * d + (h + d) * e
                + vocab_size)

    def describe(self) -> str:
        c = self.config
        return f"{c.attention} attention · {c.cell.upper()} {c.hidden_dim}"

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

    def word_gate_table(self) -> torch.Tensor:
        """W E y + b for every word (V, G), kept between decoding calls: a step then reads its k rows instead
        of the (E, G) weight (4 MB at 512-d), which is what one beam step on a CPU waits for."""
        sources = [self.embedding.weight, self.embed_gates.weight, self.embed_gates.bias]
        return self.derived("word_gates", sources, lambda: self.embed_gates(self.embedding.weight.detach()))

    def init_state(self, features: torch.Tensor) -> State:
        """(h_0, c_0) (B, layers, H) from the grid (B, P, D): tanh(f_init(mean_i a_i)), or zeros."""
        shape = (features.shape[0], self.config.num_layers, self.config.hidden_dim)
        if not self.predicts_initial_state:
            zeros = features.new_zeros(shape)
            return (zeros, zeros.clone()) if self.rnn.has_cell_state else (zeros,)
        mean = features.mean(dim=1)
        h = torch.tanh(self.init_h(mean)).view(shape)
        return (h, torch.tanh(self.init_c(mean)).view(shape)) if self.init_c is not None else (h,)

    def policy(self, sampling: bool) -> Policy:
        """Soft, expected or argmax attention; sampled (hard attention in training) when `sampling`."""
        return attention_policy(self.config, sampling)

    # ---- one step --------------------------------------------------------------------------
    def recur(self, x_gates: torch.Tensor, state: State, memory: Memory, reads: Reads,
              policy: Policy) -> tuple[State, Glimpse]:
        """The recurrence, once: attend with h_{t-1}, gate the context, run the cell on x_gates (B, G)
        (the input's share of the gates) plus the context's. Returns the new state and what was read
        (its context gated: L_z z_t when the memory holds context terms)."""
        query, gate_logit, h_gates = reads.hidden(state[0][:, -1])
        terms = memory.context_terms
        glimpse = policy(memory.features if terms is None else terms, reads.alpha(query))
        context = glimpse.context if gate_logit is None else torch.sigmoid(gate_logit) * glimpse.context
        if terms is None:
            context_gates = reads.context_gates(context)
        else:  # attention read the grid's products [Z z_t, L_z z_t] directly
            context_gates, context = context[:, :self.rnn.gates_dim], context[:, self.rnn.gates_dim:]
        return self.rnn(x_gates + context_gates, state, h_gates), glimpse._replace(context=context)

    def step(self, tokens: torch.Tensor, state: State, memory: Memory) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Decode one word. tokens (B,) -> log-probabilities (B, V), new state, alpha (B, P)."""
        memory = memory if isinstance(memory, Memory) else Memory(*memory)  # a caller's plain tuple of its fields
        embedded = self.embedding(tokens)
        x_gates = self.embed_gates(embedded) if torch.is_grad_enabled() else self.word_gate_table()[tokens]
        state, glimpse = self.recur(x_gates, state, memory, self.module_reads(memory), self.policy(False))
        logits = self.output(embedded, state[0][:, -1], glimpse.context, context_projected=memory.context_terms is not None)
        return logits.float().log_softmax(dim=-1), state, glimpse.alpha

    def module_reads(self, memory: Memory, per_pass: bool = False) -> Reads:
        """Each product by its module (decoding: cached transposed weights). per_pass: scores for a whole
        teacher-forced pass (`attention.scorer`)."""
        gate, attention = self.gate, self.attention
        alpha = attention.scorer(memory.projected) if per_pass else \
            (lambda query: attention.weights_from(memory.projected, query))
        return Reads(lambda h: (attention.hidden_proj(h), gate(h) if gate is not None else None, None), alpha,
                     self.context_gates)

    def fused_reads(self, memory: Memory) -> Reads:
        """[W_h; f_beta; U] h_{t-1} in one matmul per step, weight gradients once per pass (`StepWeights`)."""
        parts = [self.attention.hidden_proj, *([self.gate] if self.gate is not None else []),
                 *([self.rnn.hidden_proj[0]] if self.config.num_layers == 1 else [])]
        weight = torch.cat([p.weight for p in parts])
        bias = torch.cat([p.bias if p.bias is not None else weight.new_zeros(p.out_features) for p in parts])
        from_hidden, sizes = StepWeights(weight, bias), [p.out_features for p in parts]
        gated, fused_rnn = self.gate is not None, self.config.num_layers == 1

        def hidden(h: torch.Tensor):
            products = from_hidden(h).split(sizes, dim=-1)
            return products[0], products[1] if gated else None, products[-1] if fused_rnn else None

        context_gates = StepWeights(self.context_gates.weight)
        return Reads(hidden, self.attention.scorer(memory.projected), context_gates)

    # ---- teacher-forced training -----------------------------------------------------------
    def unroll(self, x_gates: Sequence[torch.Tensor], state: State, memory: Memory, policy: Policy, *,
               fused: bool = True, lengths: torch.Tensor | None = None) -> Unrolled:
        """`recur` over the per-step input gates x_gates[t] (B, G). lengths (B,): rows stop updating their
        state (and attend nowhere) past their length. fused: `fused_reads`, else `module_reads`."""
        reads = self.fused_reads(memory) if fused else self.module_reads(memory, per_pass=True)
        hiddens, contexts, alphas, log_ps, entropies = [], [], [], [], []
        for t, gates in enumerate(x_gates):
            new, glimpse = self.recur(gates, state, memory, reads, policy)
            alpha = glimpse.alpha
            if lengths is None:
                state = new
            else:
                live = (t < lengths).view(-1, 1, 1)
                state = tuple(torch.where(live, n, s) for n, s in zip(new, state, strict=True))
                alpha = alpha * live[:, 0]
            hiddens.append(new[0][:, -1])
            contexts.append(glimpse.context)
            alphas.append(alpha)
            log_ps.append(glimpse.log_p_location)
            entropies.append(glimpse.entropy)
        sampled = log_ps[0] is not None
        return Unrolled(torch.stack(hiddens, 1), torch.stack(contexts, 1), torch.stack(alphas, 1), state,
                        torch.stack(log_ps, 1) if sampled else None, torch.stack(entropies, 1) if sampled else None)

    def sampling(self) -> bool:
        """Hard attention in training: N sampled attention sequences per example, REINFORCE."""
        return self.config.attention == AttentionMode.HARD and self.training

    def reinforce_loss(self, reward: torch.Tensor, mask: torch.Tensor, out: Unrolled,
                       n_tokens: torch.Tensor) -> torch.Tensor:
        """`hard_attention.reinforce_loss` with this decoder's moving-average baseline."""
        return reinforce_loss(self.config.reinforce, reward, mask, out.log_p_locations, out.entropies, n_tokens,
                              self.reward_baseline, self.baseline_initialised)

    def forward(self, features: torch.Tensor, captions: torch.Tensor, rules: GenerationRules | None = None,
                temperature: float = 1.0) -> DecoderOutput:
        """features (I, P, D) of I images; captions (I * k, T+1) = <start> w_1 ... <end> <pad>..., rows
        i*k .. i*k+k-1 describing image i (k = 1: one caption per grid). Loss over all targets.
        rules: score the words under the distribution generation samples from (banned words removed and
        the rest renormalised): SCST's policy. None: the plain model distribution (cross-entropy).
        temperature: score under softmax(logits / temperature), the distribution sampling at that
        temperature draws from.

        Several captions per image share one attention projection, initial state and grid read per step,
        so a batch of k captions for each of I images costs far less than I * k separate grids."""
        per_image, remainder = divmod(captions.shape[0], features.shape[0])
        if remainder or not per_image:
            raise ValueError(f"{captions.shape[0]} captions do not split evenly over {features.shape[0]} images")
        sampling = self.sampling()
        memory, state = self.memory(features, context_terms=False), self.init_state(features)
        if sampling:  # N Monte-Carlo attention sequences per caption; each image's grid is still read once per step
            (captions,) = repeat_samples(self.config.reinforce.samples, captions)
            per_image *= self.config.reinforce.samples
        state = tuple(s.repeat_interleave(per_image, 0) for s in state) if per_image > 1 else state
        inputs, targets = captions[:, :-1], captions[:, 1:]
        mask = targets != 0  # (B, T)
        steps = int(mask.sum(dim=1).max())
        inputs, targets, mask = inputs[:, :steps], targets[:, :steps], mask[:, :steps]

        embedded = self.embedding(inputs)            # (B, T, E)
        # (B, G) per step, computed once for all steps; unbind makes one gradient tensor, not one per step
        out = self.unroll(self.embed_gates(embedded).unbind(1), state, memory, self.policy(sampling))

        # Output layer and loss only where there is a target word (no padding rows).
        rows = mask.nonzero(as_tuple=True)
        logits = self.output(embedded[rows], out.hiddens[rows], out.contexts[rows])
        logits = generation_logits(logits, inputs, rows, rules, temperature)
        _, sequence_log_probs, nll = target_log_probs(logits, targets[rows], rows[0], captions.shape[0])
        n_tokens = mask.sum()

        alpha_seq = out.alphas * mask.unsqueeze(-1).to(out.alphas.dtype)  # (B, T, P)
        # Doubly stochastic attention: every location should receive about one unit of attention overall.
        penalty = self.config.doubly_stochastic * ((1.0 - alpha_seq.sum(dim=1)) ** 2).sum(dim=1).mean()
        loss = nll + penalty
        if sampling:
            loss = loss + self.reinforce_loss(sequence_log_probs, mask, out, n_tokens)
        return DecoderOutput(loss, nll, penalty, alpha_seq, sequence_log_probs)
