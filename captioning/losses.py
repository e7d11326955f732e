"""The one loss helper of every decoder (the paper's, Show and Tell, the VQA answerer): teacher-forced
log-likelihoods of the target words, per token and per sequence, optionally under the distribution
generation samples from (what SCST's policy gradient needs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .search import GenerationRules


def generation_logits(logits: torch.Tensor, inputs: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor],
                      rules: GenerationRules | None = None, temperature: float = 1.0) -> torch.Tensor:
    """logits (N, V) of the target rows `rows` of inputs (B, T), as sampling at `temperature` under `rules`
    (banned words removed, the rest renormalised) sees them; unchanged with neither."""
    if temperature != 1.0:
        logits = logits / temperature
    if rules is not None:
        before = rules.befores(inputs) if rules.no_end_pairs else None
        logits = rules.masked_logits(logits, inputs[rows], before[rows] if before is not None else None)
    return logits


def target_log_probs(logits: torch.Tensor, targets: torch.Tensor, sequence_of_row: torch.Tensor,
                     sequences: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p of each target token (N,), their sum per sequence (sequences,), and the mean negative
    log-likelihood per token (the cross-entropy loss). `sequence_of_row` (N,): the sequence of each row."""
    token = -F.cross_entropy(logits.float(), targets, reduction="none")
    sequence = torch.zeros(sequences, device=logits.device).index_add(0, sequence_of_row, token)
    return token, sequence, -token.sum() / max(1, token.numel())
