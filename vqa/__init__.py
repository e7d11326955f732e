"""Visual7W-style visual question answering (LSTM-Att) on the captioning encoder, attention and cells."""

from .config import AnswererConfig, TrainConfig
from .model import Answerer, AnswerResult, QuestionError, load_answerer

__all__ = ["AnswerResult", "Answerer", "AnswererConfig", "QuestionError", "TrainConfig", "load_answerer"]
