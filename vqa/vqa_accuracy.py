"""The official VQA accuracy (Antol et al. 2015; the evaluator of github.com/GT-Vision-Lab/VQA), written
again so that `vqa evaluate` and the evaluation server give the same numbers.

An answer is right as far as at least 3 of the humans gave it: acc = min(#humans who said it / 3, 1),
averaged over the leave-one-out subsets of the human answers (10 subsets of 9 in VQA v2). Answers are
compared after the evaluator's normalisation, reproduced with its quirks:

* the prediction: newlines and tabs become spaces, then `strip_punctuation`, then `words_digits_articles`
  (lower case, number words "none", "zero".."ten" -> digits, articles a/an/the dropped, a missing
  apostrophe put back: "dont" -> "don't");
* the human answers: `strip_punctuation` only, and only when the humans do not all agree (VQA v2's
  answers were already lower-cased, with digits and no articles, when the data set was made).

Pure Python, no torch."""

from __future__ import annotations

import re
from collections.abc import Sequence

# The evaluator's punctuation; the apostrophe, colon ("2:50 pm") and period are not in it.
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# A period not followed by a digit goes ("yes." -> "yes", "3.5" stays). The official pattern is
# "(?!<=\d)(\.)(?!\d)": its first group is a lookahead (not a lookbehind) that always holds before a ".",
# so it means exactly this. Its call passes re.UNICODE (32) where `sub` takes the count: at most 32 go.
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_COUNT = 32

NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})

# Whole words given their apostrophe back, as the evaluator's table does (its quirks kept:
# "somebody'd" loses its apostrophe). Left out, since they can never apply: its four keys with a
# capital I ("Im", "Ive", "Id've", "I'dve": words are lower-cased first) and its entries that map a word
# to itself ("let's", "she's").
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}


def strip_punctuation(text: str) -> str:
    """The evaluator's punctuation rule. Each mark is deleted where it touches a space in `text` ("yes ,
    no" -> "yes  no") and replaced by a space elsewhere ("yes,no" -> "yes no"); but when `text` holds a
    digit-comma-digit ("100,978") every mark is deleted ("100978"). Then periods go, except before a digit."""
    anywhere = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:  # the test looks at the original text; the replacing goes on in `out`
        out = out.replace(mark, "" if anywhere or f"{mark} " in text or f" {mark}" in text else " ")
    return _PERIOD.sub("", out, count=_PERIOD_COUNT)


def words_digits_articles(text: str) -> str:
    """Lower-cased words, number words as digits, no articles, contractions with their apostrophe."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(text: str) -> str:
    """A predicted answer as the evaluator compares it ("Two dogs." -> "2 dogs", "A Dog" -> "dog")."""
    return words_digits_articles(strip_punctuation(text.replace("\n", " ").replace("\t", " ").strip()))


def human_answers(answers: Sequence[str]) -> list[str]:
    """The human answers as the evaluator compares them: as given when they all agree, else each with
    `strip_punctuation` (and nothing more: no lower-casing, digits or articles)."""
    return list(answers) if len(set(answers)) <= 1 else [strip_punctuation(a) for a in answers]


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official accuracy of one predicted answer against the human answers of its question, in [0, 1].

    With n humans of whom m gave the (normalised) prediction, leaving out one of the m leaves m - 1 matches
    and leaving out any other leaves m: acc = (m min(1, (m-1)/3) + (n-m) min(1, m/3)) / n, so with 10
    humans m = 0, 1, 2, 3, 4+ give 0, 0.3, 0.6, 0.9, 1."""
    if not answers:
        raise ValueError("the VQA accuracy needs at least one human answer")
    predicted = normalize_answer(prediction)
    humans = human_answers(answers)
    m = sum(h == predicted for h in humans)
    return sum(min(1.0, (m - (h == predicted)) / 3) for h in humans) / len(humans)
