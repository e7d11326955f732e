"""Show, Attend and Tell image captioning: pretrained CNN grid + attentive recurrent decoder."""

from .checkpoint import CheckpointError
from .config import ModelConfig, ReinforceConfig
from .encoders import WeightsUnavailableError, create_encoder, list_encoders
from .model import Captioner, CaptionResult, load_captioner
from .vocab import Vocabulary, tokenize

__all__ = ["Captioner", "CaptionResult", "CheckpointError", "ModelConfig", "ReinforceConfig", "Vocabulary",
           "WeightsUnavailableError", "create_encoder", "list_encoders", "load_captioner", "tokenize"]
