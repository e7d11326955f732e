"""Visual7W-style visual question answering (LSTM-Att) on the captioning encoder, attention and cells.

Names load on first use (as in `captioning`), so `import vqa` imports no torch."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {"AnswererConfig": ".config", "TrainConfig": ".config", "QATask": ".config", "AnswerResult": ".model",
            "Answerer": ".model", "QuestionError": ".model", "load_answerer": ".model"}
__all__ = ["AnswerResult", "Answerer", "AnswererConfig", "QATask", "QuestionError", "TrainConfig",
           "load_answerer"]

if TYPE_CHECKING:
    from .config import AnswererConfig, QATask, TrainConfig
    from .model import Answerer, AnswerResult, QuestionError, load_answerer


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
