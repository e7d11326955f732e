"""Typed model configuration, saved as `config.json` beside the weights so a loader rebuilds the
exact model from the checkpoint folder alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

ATTENTION_KINDS = ("soft", "hard")
HARD_INFERENCE = ("expectation", "argmax")


@dataclass
class ReinforceConfig:
    """Monte-Carlo REINFORCE for hard attention (Xu et al. 2015, eq. 12)."""

    samples: int = 2            # N attention sequences sampled per caption
    reward_weight: float = 1.0  # lambda_r
    entropy_weight: float = 0.01  # lambda_e
    baseline_decay: float = 0.9  # b_k = 0.9 b_{k-1} + 0.1 log p(y|s, a)
    soft_probability: float = 0.5  # chance per step of using the expected context instead of a sample


@dataclass
class ModelConfig:
    encoder: str = "efficientnet_lite0"
    image_size: int | None = None       # None: the encoder's own default
    grid_size: int | None = None        # None: the encoder's natural conv grid
    fine_tune_blocks: int = 0           # 0 keeps the encoder frozen
    attention: str = "soft"             # soft | hard
    hard_inference: str = "expectation"  # how a hard model attends at test time: expectation | argmax
    cell: str = "lstm"                  # lstm | gru | rnn
    num_layers: int = 1
    embed_dim: int = 512
    hidden_dim: int = 512
    attention_dim: int = 512
    dropout: float = 0.5
    deep_output: bool = True            # p(y_t) from E y_{t-1} + L_h h_t + L_z z_t, as in the paper
    gate: bool = True                   # beta_t = sigmoid(f_beta(h_{t-1})) scales the context
    max_len: int = 20                   # default decoding length
    doubly_stochastic: float = 1.0      # lambda in lambda * sum_i (1 - sum_t alpha_ti)^2
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)

    def __post_init__(self) -> None:
        if isinstance(self.reinforce, dict):
            self.reinforce = ReinforceConfig(**self.reinforce)
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {self.attention!r}")
        if self.hard_inference not in HARD_INFERENCE:
            raise ValueError(f"hard_inference must be one of {HARD_INFERENCE}, got {self.hard_inference!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**data)
