"""The official VQA accuracy (`vqa.vqa_accuracy`): the evaluator's answer normalisation on the examples
visualqa.org publishes (and on its quirks), and the leave-one-out accuracy computed by hand."""

from __future__ import annotations

import pytest

from vqa.vqa_accuracy import CONTRACTIONS, human_answers, normalize_answer, strip_punctuation, vqa_accuracy


@pytest.mark.parametrize("given, compared", [
    # visualqa.org/evaluation.html, "Before evaluating machine generated answers, we do the following":
    ("Yes", "yes"),                      # all characters lower case
    ("Yes.", "yes"),                     # periods removed ...
    ("3.5", "3.5"),                      # ... except as a decimal point
    ("two", "2"), ("Ten", "10"), ("none", "0"), ("zero", "0"),  # number words to digits
    ("a dog", "dog"), ("An apple", "apple"), ("the red one", "red 1"), ("The", ""),  # articles removed
    ("dont", "don't"), ("isnt", "isn't"), ("Whats", "what's"),  # a contraction's missing apostrophe put back
    ("girl's", "girl's"), ("it's", "it's"), ("its", "its"),     # the apostrophe is kept (possessives)
    ("2:50 pm", "2:50 pm"),              # and the colon (times)
    ("100,978", "100978"),               # a comma between digits leaves no space
    # punctuation: replaced by a space, or deleted where it touches a space
    ("black-and-white", "black and white"), ("yes,no", "yes no"), ("yes , no", "yes no"), ("red / blue", "red blue"),
    ("(a) cat!", "cat"), ("u.s.a.", "usa"), ("Two dogs.", "2 dogs"), ("  on\tthe\ntable  ", "on table"),
])
def test_answers_are_normalised_as_the_official_evaluator_does(given, compared):
    assert normalize_answer(given) == compared


def test_the_evaluators_quirks_are_kept():
    # a digit-comma-digit anywhere deletes every mark, even where it would have become a space
    assert strip_punctuation("1,000 red-ish") == "1000 redish"
    assert strip_punctuation("red-ish") == "red ish"
    # the period rule is "a period not before a digit", at most 32 of them (re.UNICODE passed as the count)
    assert strip_punctuation("." * 40) == "." * 8
    # its table's own oddity: "somebody'd" loses its apostrophe
    assert normalize_answer("somebody'd") == "somebodyd" and CONTRACTIONS["wont"] == "won't"
    # human answers get only the punctuation step, and only when the humans disagree
    assert human_answers(["Yes."] * 3) == ["Yes."] * 3
    assert human_answers(["yes.", "yes", "Two"]) == ["yes", "yes", "Two"]
    assert human_answers(["yes!", "no"]) == ["yes ", "no"]  # "!" touching no space becomes one, kept


def test_vqa_accuracy_by_hand():
    # 10 humans, 2 said "2". Leaving out one of the 8 others keeps both: min(2/3, 1) = 2/3 (8 subsets);
    # leaving out one of the two keeps one: 1/3 (2 subsets). (8 * 2/3 + 2 * 1/3) / 10 = 18/30 = 0.6
    humans = ["2", "2"] + ["1"] * 8
    assert vqa_accuracy("2", humans) == pytest.approx(0.6)
    assert vqa_accuracy("Two.", humans) == pytest.approx(0.6)          # the prediction is normalised first
    # 8 said "1": every subset keeps at least 7 of them, min(7/3, 1) = 1
    assert vqa_accuracy("one", humans) == pytest.approx(1.0)
    # 1 said it: 9 subsets keep it (1/3), the one leaving it out has none: 9 * 1/3 / 10 = 0.3
    assert vqa_accuracy("running", ["running"] + ["playing"] * 9) == pytest.approx(0.3)
    # 3 said it: 7 subsets keep 3 (1), 3 subsets keep 2 (2/3): (7 + 3 * 2/3) / 10 = 0.9
    assert vqa_accuracy("brown", ["brown"] * 3 + ["tan"] * 7) == pytest.approx(0.9)
    # 4 said it: every subset keeps at least 3: 1
    assert vqa_accuracy("man", ["man"] * 4 + ["boy"] * 6) == pytest.approx(1.0)
    assert vqa_accuracy("cat", ["dog"] * 10) == 0.0
    # the humans disagree, so "yes." is read as "yes": 3 of 10 said it -> 0.9
    assert vqa_accuracy("Yes", ["yes."] * 2 + ["yes"] + ["no"] * 7) == pytest.approx(0.9)
    # all 10 said "yes." alike: their answers stay as given, and the prediction "yes." is read as "yes"
    assert vqa_accuracy("yes.", ["yes."] * 10) == 0.0
    # 3 humans, 2 said "x": leaving out "y" keeps 2 (2/3), leaving out an "x" keeps 1 (1/3): (2/3 + 2 * 1/3) / 3
    assert vqa_accuracy("x", ["y", "x", "x"]) == pytest.approx(4 / 9)
    assert vqa_accuracy("a", ["a"] * 10) == 0.0  # "a" is an article: the prediction reads as ""
    with pytest.raises(ValueError):
        vqa_accuracy("yes", [])
