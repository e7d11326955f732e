"""Visual7W-style visual question answering (LSTM-Att) on the captioning encoder, attention and cells.

Names load on first use (as in `captioning`), so `import vqa` imports no torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from captioning.engine.runtime import lazy_exports

_EXPORTS = {"AnswererConfig": ".config", "TrainConfig": ".config", "QATask": ".config", "AnswerResult": ".model",
            "Answerer": ".model", "QuestionError": ".model", "load_answerer": ".model"}
__all__ = ["AnswerResult", "Answerer", "AnswererConfig", "QATask", "QuestionError", "TrainConfig",
           "load_answerer"]

if TYPE_CHECKING:
    from .config import AnswererConfig, QATask, TrainConfig
    from .model import Answerer, AnswerResult, QuestionError, load_answerer


__getattr__ = lazy_exports(__name__, _EXPORTS)
