"""Show, Attend and Tell image captioning: pretrained CNN grid + attentive recurrent decoder.

The names below load on first use, so `import captioning` stays light and imports no torch: an
entry point can first apply process-wide settings (`captioning.engine.runtime.passive_openmp`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .engine.runtime import lazy_exports

_EXPORTS = {
    "CheckpointError": ".checkpoint", "ModelConfig": ".config", "ReinforceConfig": ".config",
    "WeightsUnavailableError": ".encoders", "create_encoder": ".encoders", "list_encoders": ".encoders",
    "Captioner": ".model", "CaptionResult": ".model", "load_captioner": ".model",
    "Vocabulary": ".vocab", "tokenize": ".vocab",
}
__all__ = ["CaptionResult", "Captioner", "CheckpointError", "ModelConfig", "ReinforceConfig", "Vocabulary",
           "WeightsUnavailableError", "create_encoder", "list_encoders", "load_captioner", "tokenize"]

if TYPE_CHECKING:
    from .checkpoint import CheckpointError
    from .config import ModelConfig, ReinforceConfig
    from .encoders import WeightsUnavailableError, create_encoder, list_encoders
    from .model import Captioner, CaptionResult, load_captioner
    from .vocab import Vocabulary, tokenize


__getattr__ = lazy_exports(__name__, _EXPORTS)
