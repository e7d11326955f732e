"""Show and Tell (Vinyals et al. 2015): the decoder without attention, registered as "show_and_tell".

The image is read once, as the LSTM's first input, and never looked at again:

    x_{-1} = W_I mean_i(a_i),   x_t = E y_t,   h_t = LSTM(x_t, h_{t-1}),   p(y_{t+1}) = softmax(L_o h_t)

Everything a captioner needs from a decoder is here (memory, initial state, step, teacher-forced loss,
parameter estimate): `captioning train --decoder show_and_tell` trains it, and the app, the commands and
the search use it unchanged. Its attention maps are uniform: it attends nowhere in particular."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..decoder import DecoderOutput, never_predicted
from ..losses import generation_logits, target_log_probs
from ..search import GenerationRules
from . import register_decoder


@register_decoder("show_and_tell")
class ShowAndTellDecoder(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, feature_dim: int):
        super().__init__()
        self.config = c = config
        self.image_proj = nn.Linear(feature_dim, c.embed_dim)                  # W_I
        self.embedding = nn.Embedding(vocab_size, c.embed_dim, padding_idx=0)  # E
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True,
                            dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        self.logits = nn.Linear(c.hidden_dim, vocab_size)                      # L_o
        self.register_buffer("never_predicted", never_predicted(vocab_size), persistent=False)

    @classmethod
    def estimate_parameters(cls, config: ModelConfig, vocab_size: int, feature_dim: int) -> int:
        e, h, n = config.embed_dim, config.hidden_dim, config.num_layers
        return (feature_dim + 1) * e + vocab_size * e + 4 * h * (e + h + 2) + (n - 1) * 4 * h * (2 * h + 2) \
            + (h + 1) * vocab_size

    def describe(self) -> str:
        return f"no attention (Show and Tell) · LSTM {self.config.hidden_dim}"

    # ---- per image ---------------------------------------------------------------------------------
    def memory(self, features: torch.Tensor) -> torch.Tensor:
        """The grid itself: the step reads only its size (for the uniform attention it reports)."""
        return features

    def init_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c) (B, layers, H) after reading the image as the first input."""
        _, (h, c) = self.lstm(self.image_proj(features.mean(dim=1)).unsqueeze(1))
        return h.transpose(0, 1), c.transpose(0, 1)

    # ---- decoding ----------------------------------------------------------------------------------
    def step(self, tokens: torch.Tensor, state: tuple, memory: torch.Tensor):
        """tokens (B,) -> log p of the next word (B, V), the new state, uniform attention (B, P)."""
        out, (h, c) = self.lstm(self.embedding(tokens).unsqueeze(1),
                                (state[0].transpose(0, 1).contiguous(), state[1].transpose(0, 1).contiguous()))
        log_probs = self._logits(out[:, 0]).float().log_softmax(dim=-1)
        positions = memory.shape[1]
        alpha = memory.new_full((tokens.shape[0], positions), 1.0 / positions)
        return log_probs, (h.transpose(0, 1), c.transpose(0, 1)), alpha

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.logits(self.dropout(hidden)) + self.never_predicted

    # ---- training ----------------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, captions: torch.Tensor, rules: GenerationRules | None = None,
                temperature: float = 1.0) -> DecoderOutput:
        """features (I, P, D); captions (I * k, T + 1) = <start> w_1 ... <end> <pad>..., k captions per image.
        rules / temperature: score under the distribution generation samples from (SCST), as the paper's."""
        per_image = captions.shape[0] // features.shape[0]
        if per_image * features.shape[0] != captions.shape[0] or not per_image:
            raise ValueError(f"{captions.shape[0]} captions do not split evenly over {features.shape[0]} images")
        h, c = (s.repeat_interleave(per_image, 0).transpose(0, 1).contiguous() for s in self.init_state(features))
        inputs, targets = captions[:, :-1], captions[:, 1:]
        mask = targets != 0
        steps = int(mask.sum(dim=1).max())
        inputs, targets, mask = inputs[:, :steps], targets[:, :steps], mask[:, :steps]
        hiddens, _ = self.lstm(self.embedding(inputs), (h, c))
        rows = mask.nonzero(as_tuple=True)
        logits = generation_logits(self._logits(hiddens[rows]), inputs, rows, rules, temperature)
        _, sequence, nll = target_log_probs(logits, targets[rows], rows[0], captions.shape[0])
        alphas = mask.unsqueeze(-1).to(features.dtype).expand(-1, -1, features.shape[1]) / features.shape[1]
        return DecoderOutput(nll, nll, nll.new_zeros(()), alphas, sequence)
