"""Hostile questions and choices for `Answerer.answer`: whatever text (or non-text) comes in, the result
is an answer or a one-line `ValueError` subclass, never a crash. A tiny random-weight answerer, built
the way the VQA tests build one, keeps every example fast."""

from __future__ import annotations

import math
import string

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from captioning import encoders
from captioning.vocab import UNK, Vocabulary, tokenize
from vqa import AnswererConfig, AnswerResult, QuestionError
from vqa.model import Answerer

from .test_vqa_helpers import TINY, _tiny_encoder

WORDS = ["what", "color", "is", "the", "square", "which", "box", "red", "green", "blue", "a", "sailor"]
MAX_QUESTION = 6
IMAGE = Image.new("RGB", (48, 40), (200, 30, 30))


def _answerer(task: str) -> Answerer:
    """The tiny answerer of tests/test_vqa_model.py (registry entry only while it is built)."""
    saved = encoders._REGISTRY.get(TINY)
    encoders._REGISTRY[TINY] = _tiny_encoder
    try:
        torch.manual_seed(0)
        config = AnswererConfig(encoder=TINY, embed_dim=16, hidden_dim=32, attention_dim=16, dropout=0.0,
                                task=task, max_len=4, max_question_len=MAX_QUESTION)
        return Answerer(config, Vocabulary.build(WORDS)).eval()
    finally:
        if saved is None:
            encoders._REGISTRY.pop(TINY, None)
        else:
            encoders._REGISTRY[TINY] = saved


@pytest.fixture(scope="module")
def telling() -> Answerer:
    return _answerer("telling")


@pytest.fixture(scope="module")
def pointing() -> Answerer:
    return _answerer("pointing")


# Questions: anything Unicode (control characters, RTL marks, emoji, NUL), plus hand-made hard cases.
SPECIAL = st.sampled_from([
    "", " ", "\t\n\r ", "?", "?!?!...", "\x00\x01\x7f", "\u200b\u200e\ufeff", "what", "WHAT COLOR IS THE SQUARE??",
    "Qu'est-ce que c'est ?", "¿Qué color tiene el cuadrado?", "这是什么颜色", "ما لون المربع؟", "🟥🟦?",
    "what " * 500, "zzz " * 10_000, "İstanbul ǅ ß ﬁ", "what\x00color\x1bis\u2028the\u2029square",
    "<unk> <pad> <start> <end>", "- ' _ --", "a" * 100_000])
QUESTIONS = st.one_of(st.text(max_size=300), SPECIAL,
                      st.lists(st.sampled_from(WORDS + ["hexagon", "purple", "¿", "!"]), max_size=40).map(" ".join))
CHOICE_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["red", "a sailor", "", "!!", "hexagon", "red " * 50]))


def _check(call, question) -> AnswerResult | None:
    """`call()` answers or raises a one-line ValueError; anything else fails the test."""
    try:
        result = call()
    except ValueError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        assert len(message) < 500, f"error message of {len(message)} characters"
        return None
    assert isinstance(result, AnswerResult)
    assert result.text in result.choices and len(result.scores) == len(result.choices)
    assert all(not math.isnan(s) for s in result.scores)
    words = tokenize(question)
    assert len(result.question_tokens) == min(len(words), MAX_QUESTION)
    assert result.attention.shape[0] == len(result.question_tokens)
    assert torch.isfinite(result.attention).all()
    known = set(WORDS)
    assert all(t == UNK or t in known for t in result.question_tokens)  # unknown words read as <unk>
    assert [t for t, w in zip(result.question_tokens, words) if w not in known] == \
        [UNK] * sum(w not in known for w in words[:MAX_QUESTION])
    assert result.truncated == (len(words) > MAX_QUESTION)
    assert any("truncated" in n for n in result.notices) == result.truncated
    return result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(question=QUESTIONS, choices=st.one_of(st.none(), st.lists(CHOICE_TEXT, max_size=5)))
def test_any_question_gets_an_answer_or_a_one_line_error(telling, question, choices):
    result = _check(lambda: telling.answer(IMAGE, question, choices=choices, beam_size=2), question)
    if result is None:
        assert not tokenize(question) or choices == []  # only those two are refused
    elif choices:
        assert result.choices == [str(c) for c in choices]


EDGE = st.sampled_from([0, 5, -3, 24.5, 1e-300, 1e308, -1e308, 10**400, math.inf, -math.inf, math.nan, True])
NUMBER = st.one_of(EDGE, st.floats(), st.integers(-10**30, 10**30))
BOX = st.one_of(
    st.tuples(NUMBER, NUMBER, NUMBER, NUMBER),
    st.tuples(NUMBER, NUMBER, NUMBER, NUMBER).map(lambda b: ",".join(map(str, b))),
    st.text(alphabet=string.digits + ",. -einfa", max_size=20),
    st.fixed_dictionaries({"x": NUMBER, "y": NUMBER, "width": NUMBER, "height": NUMBER}),
    st.lists(st.floats(0, 60), max_size=6), st.none(), st.text(max_size=10))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(question=QUESTIONS, boxes=st.lists(BOX, max_size=4))
def test_pointing_choices_are_boxes_or_a_one_line_error(pointing, question, boxes):
    result = _check(lambda: pointing.answer(IMAGE, question, choices=boxes), question)
    if result is not None:
        assert len(result.choices) == len(boxes)


@pytest.mark.parametrize("question", [None, 42, b"what color", ["what", "color"], 3.5])
def test_a_question_that_is_not_text_is_refused_by_name(telling, question):
    with pytest.raises(QuestionError, match="a question is text"):
        telling.answer(IMAGE, question)


def test_notice_and_unk_on_a_typical_bad_question(telling):
    result = telling.answer(IMAGE, "What COLOUR is the hexagon, please, tell me now?!", choices=["red", "blue"])
    assert result.question_tokens == ["what", UNK, "is", "the", UNK, UNK]
    assert result.truncated and result.notices == [
        f"question truncated to its first {MAX_QUESTION} words",
        "'colour', 'hexagon', 'please' are not in this model's vocabulary: it reads them as unknown words"]
    assert result.unknown_words == ["colour", "hexagon", "please"]
    with pytest.raises(QuestionError) as info:
        telling.answer(IMAGE, "?" * 1_000_000)
    assert "no words" in str(info.value) and len(str(info.value)) < 500


def test_choices_given_as_one_string_or_by_the_thousand_are_refused(telling):
    with pytest.raises(QuestionError, match="not one string"):
        telling.answer(IMAGE, "what color is the circle?", choices="red")
    with pytest.raises(QuestionError, match="at most 1000"):
        telling.answer(IMAGE, "what color is the circle?", choices=[f"c{i}" for i in range(1001)])


def test_decoding_bounds_apply_to_answers_too(telling):
    """max_len=0 was taken as "the default"; a beam of 10,000 allocated gigabytes."""
    with pytest.raises(ValueError, match="max_len must be between 1 and 200"):
        telling.answer(IMAGE, "what color is the circle?", max_len=0)
    with pytest.raises(ValueError, match="beam_size must be between 1 and 64"):
        telling.answer(IMAGE, "what color is the circle?", beam_size=10_000)
