"""Show, Attend and Tell image captioning: pretrained CNN grid + attentive recurrent decoder."""

import os

# Before torch loads OpenMP: idle worker threads sleep instead of spin-waiting. On a shared CPU the
# spinning threads steal the cores the busy ones need (measured: a CPU training epoch 8x slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoint import CheckpointError
from .config import ModelConfig, ReinforceConfig
from .encoders import WeightsUnavailableError, create_encoder, list_encoders
from .model import Captioner, CaptionResult, load_captioner
from .vocab import Vocabulary, tokenize

__all__ = ["Captioner", "CaptionResult", "CheckpointError", "ModelConfig", "ReinforceConfig", "Vocabulary",
           "WeightsUnavailableError", "create_encoder", "list_encoders", "load_captioner", "tokenize"]
