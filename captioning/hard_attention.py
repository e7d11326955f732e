"""Where each step looks: the attention policy, and REINFORCE for stochastic hard attention.

Xu et al. (2015, section 4.1, eq. 12): with hard attention the context is one sampled location,
z_t = a_s with s_t ~ Multinoulli(alpha_t), so log p(y | a) is maximised through a variational lower
bound whose gradient is estimated from N sampled attention sequences s^n:

    dL/dW ~ 1/N sum_n [ d log p(y | s^n, a)/dW
                        + lambda_r (log p(y | s^n, a) - b) d log p(s^n | a)/dW
                        + lambda_e dH[s^n]/dW ]

with b a moving average of log p(y | s, a) (variance reduction) and an entropy bonus H. With
probability 0.5 per step the sample is replaced by the expected (soft) context.

A policy maps (grid, alpha) to a `Glimpse`; the decoder picks one with `attention_policy`:
soft attention and hard attention at test time are deterministic, hard attention in training
samples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .attention import expected_context, location_context
from .config import AttentionMode, HardInference, ModelConfig, ReinforceConfig


class Glimpse(NamedTuple):
    """What one step read from the grid."""

    context: torch.Tensor                 # (B, D) z_t (ungated)
    alpha: torch.Tensor                   # (B, P) the attention distribution
    log_p_location: torch.Tensor | None   # (B,) sampling: log p(s_t | a), 0 where the soft context was used
    entropy: torch.Tensor | None          # (B,) sampling: H[alpha_t]


Policy = Callable[[torch.Tensor, torch.Tensor], Glimpse]  # (grid (I, P, D), alpha (I * k, P)) -> Glimpse


def expectation(grid: torch.Tensor, alpha: torch.Tensor) -> Glimpse:
    """Soft attention, and hard attention's deterministic test-time rule: z = E[a_s] = sum_i alpha_i a_i."""
    return Glimpse(expected_context(grid, alpha), alpha, None, None)


def most_likely(grid: torch.Tensor, alpha: torch.Tensor) -> Glimpse:
    """Hard attention at test time (argmax): z = a_s with s = argmax_i alpha_i."""
    return Glimpse(location_context(grid, alpha.argmax(dim=-1)), alpha, None, None)


@dataclass(frozen=True)
class Sampled:
    """Hard attention in training: s ~ Multinoulli(alpha), or the soft context with `soft_probability`."""

    soft_probability: float

    def __call__(self, grid: torch.Tensor, alpha: torch.Tensor) -> Glimpse:
        location = torch.multinomial(alpha.detach().float(), 1).squeeze(1)
        use_soft = torch.rand(alpha.shape[0], device=alpha.device) < self.soft_probability
        context = torch.where(use_soft.unsqueeze(1), expected_context(grid, alpha), location_context(grid, location))
        log_alpha = alpha.clamp_min(1e-12).log()
        log_p_location = log_alpha.gather(1, location.unsqueeze(1)).squeeze(1) * (~use_soft)
        entropy = -(alpha * log_alpha).sum(dim=-1)
        return Glimpse(context, alpha, log_p_location, entropy)


def attention_policy(config: ModelConfig, sampling: bool) -> Policy:
    """How a model with `config` attends; `sampling`: a hard-attention model in training."""
    if config.attention == AttentionMode.HARD:
        if sampling:
            return Sampled(config.reinforce.soft_probability)
        if config.hard_inference == HardInference.ARGMAX:
            return most_likely
    return expectation


def repeat_samples(samples: int, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Each row `samples` times in a row: N Monte-Carlo attention sequences per example."""
    return tuple(None if t is None else t.repeat_interleave(samples, 0) for t in tensors)


def reinforce_loss(config: ReinforceConfig, reward: torch.Tensor, mask: torch.Tensor, log_p_locations: torch.Tensor,
                   entropies: torch.Tensor, n_tokens: torch.Tensor, baseline: torch.Tensor,
                   baseline_initialised: torch.Tensor) -> torch.Tensor:
    """-(lambda_r (R - b) sum_t log p(s_t) + lambda_e H[s]) / n_tokens, and b moves towards this batch's R.

    reward (B,): log p(y | s, a) of each sampled sequence, divided here by its steps (`mask` (B, T)) so
    one scalar baseline fits sequences of any length. `baseline` and `baseline_initialised` are 0-d
    buffers the caller keeps (training state, saved with the weights); they are updated in place."""
    maskf = mask.to(log_p_locations.dtype)
    reward = (reward / mask.sum(dim=1)).detach()
    with torch.no_grad():
        batch_mean = reward.mean()
        if not bool(baseline_initialised):
            baseline.copy_(batch_mean)
            baseline_initialised.fill_(True)
        advantage = reward - baseline
        baseline.mul_(config.baseline_decay).add_((1 - config.baseline_decay) * batch_mean)
    score_function = (advantage.unsqueeze(1) * log_p_locations * maskf).sum()
    entropy = (entropies * maskf).sum()
    return -(config.reward_weight * score_function + config.entropy_weight * entropy) / n_tokens
