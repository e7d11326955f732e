"""Bad endings: "a man in a yellow shirt is holding", "sitting on the". A caption may not stop right after
a word listed in `endings.tsv` (articles, prepositions, conjunctions, determiners, and the words human
caption writers almost never end on; `derive_endings.py` says how the list was made). Decoding bans
<end> after them (`Captioner.generation_rules`); `bad_ending` measures what got through anyway."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

ENDINGS_FILE = Path(__file__).with_name("endings.tsv")


@cache
def no_end_words() -> dict[str, str]:
    """{word: category} of every word a caption may not end on."""
    table = {}
    for line in ENDINGS_FILE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            word, category = line.split("\t")[:2]
            table[word] = category
    return table


def bad_ending(tokens: Sequence[str]) -> str | None:
    """Why a caption's last word cannot end it ("preposition", "rarely final", ...), or None when it can
    (an empty caption has no ending to judge)."""
    return no_end_words().get(tokens[-1]) if tokens else None
