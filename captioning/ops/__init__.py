"""Speed machinery behind the model's parts: weight-derived caches, per-step autograd tapes and
cache-blocked attention scores. Nothing here changes what the model computes, only how fast."""

from .attention_scores import (
           Kernel,
           StepScores,
           additive_scores,
           additive_weights,
           attention_weights,
           step_weights,
)
from .cache import DerivedTensors, Linear
from .tape import StepWeights, step_token

__all__ = ["DerivedTensors", "Kernel", "Linear", "StepScores", "StepWeights", "additive_scores",
           "additive_weights", "attention_weights", "step_token", "step_weights"]
