"""What generation never says: <unk>, or nothing at all; and unknown question words are named, not hidden."""

from __future__ import annotations

import torch

from app import backend as be
from captioning.images import open_image
from captioning.search import GenerationRules, beam_search, generation_step, sequential_search

START, END, UNK, VOCAB = 1, 2, 3, 6


def eager_step(tokens, state, memory):
    """A toy model that most wants to end at once, then to say <unk>, then word 4."""
    logits = torch.tensor([-9.0, -9.0, 5.0, 4.0, 3.0, 0.0]).expand(tokens.shape[0], VOCAB).clone()
    after_start = tokens == START
    logits[~after_start, END] = 6.0  # after a word, ending is best
    return logits.log_softmax(-1), state, torch.ones(tokens.shape[0], 1)


def run(search, step, **kw):
    state, memory = (torch.zeros(2, 1),), (torch.zeros(2, 1, 1),)
    return search(step, state, memory, start_id=START, end_id=END, max_len=5, **kw)


def test_plain_step_would_say_nothing_or_unk():
    (h, _) = run(sequential_search, eager_step)
    assert h.token_ids == []


def test_generation_says_neither_unk_nor_nothing():
    step = generation_step(eager_step, GenerationRules(never=(UNK,), start_id=START, end_id=END))
    for hyps in (run(sequential_search, step), [b[0] for b in run(beam_search, step, pad_id=0, beam_size=3)]):
        for h in hyps:
            assert h.token_ids == [4]


def test_unknown_question_words_are_named():
    from vqa import load_answerer

    torch.set_num_threads(1)
    model = load_answerer("easy-vqa-shapes")
    question = "What is in the picture of the cat?"
    result = model.answer(open_image(be.EXAMPLES_DIR / "cat-chelsea.jpg"), question)
    assert result.unknown_words == ["picture", "cat"]
    assert any("'cat'" in n and "not in this model's vocabulary" in n for n in result.notices)
    labels = be.question_labels(result, question, len(result.attention))
    assert "cat (unknown)" in labels and "<unk>" not in labels
    assert all(choice.strip() for choice in result.choices), result.choices


def test_open_ended_answers_to_odd_questions_are_never_empty_and_say_why():
    """Arabic with emoji, or 120 KB of text: an answer with words, and a notice (unknown words, truncation)."""
    from vqa import load_answerer

    torch.set_num_threads(1)
    model = load_answerer("easy-vqa-shapes")
    image = open_image(be.EXAMPLES_DIR / "cat-chelsea.jpg")
    for question in ("ما هذا الشكل؟ 🐱🔺", "what shape " * 11_000):
        result = model.answer(image, question)
        assert result.text.strip() and all(choice.strip() for choice in result.choices)
        assert result.notices, question[:40]
