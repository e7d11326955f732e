"""Bad endings: "a man in a yellow shirt is holding", "sitting on the", "holding a red". A caption may not
stop right after a word listed in `endings.tsv` (articles, prepositions, conjunctions, determiners, and the
words human caption writers almost never end on), nor on a pair listed in `end_pairs.tsv` (a describing
word right after an article: "a red", "the smiling"), also when joined to another ("a red and white");
`derive_endings.py` says how both were made.
Decoding bans <end> after them (`Captioner.generation_rules`); `bad_ending` measures what got through anyway."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

ENDINGS_FILE = Path(__file__).with_name("endings.tsv")
PAIRS_FILE = Path(__file__).with_name("end_pairs.tsv")
JOINERS = ("and",)  # inside a pair's noun phrase ("a red and white") the phrase is still open


@cache
def no_end_words() -> dict[str, str]:
    """{word: category} of every word a caption may not end on."""
    table = {}
    for line in ENDINGS_FILE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            word, category = line.split("\t")[:2]
            table[word] = category
    return table


@cache
def no_end_pairs() -> frozenset[tuple[str, str]]:
    """(word, last word) pairs a caption may not end on: ("a", "red")."""
    rows = (line.split("\t") for line in PAIRS_FILE.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#"))
    return frozenset((row[0], row[1]) for row in rows)


@cache
def _openers() -> frozenset[str]:
    return frozenset(opener for opener, _ in no_end_pairs())


def bad_ending(tokens: Sequence[str]) -> str | None:
    """Why a caption's last word cannot end it ("preposition", "rarely final", "noun missing" after "a red"
    or "a red and white"), or None when it can (an empty caption has no ending to judge)."""
    if not tokens:
        return None
    pairs, openers = no_end_pairs(), _openers()
    before = ""
    for word in tokens[:-1]:  # a pair's phrase stays open through "and" (`GenerationRules.next_before`)
        before = before if (before, word) in pairs or (word in JOINERS and before in openers) else word
    if (before, tokens[-1]) in pairs:
        return "noun missing"
    return no_end_words().get(tokens[-1])
