"""The wordings of the generated questions (`vqa.caption_qa`). The parse rules make one canonical text
per question ("What colour is the dog?", "How many dogs are there?", "Is there a dog?"); real people word
the same question otherwise ("What color is the dog?", "How many dogs are in the picture?", "Do you see a
dog?"), so each question is asked in one of several common paraphrases of its type (`WORDINGS`, drawn with
their weights). A wording says the same thing differently: the answer and the premises are the canonical
question's. "Where is the dog?" (for "Where is the dog running?") is the one wording that says less, so it
is offered only where every caption puts that subject at a place the answer could name (`placed`).

Templates name their slots: {be} is/are, {Be} Is/Are, {this} this/these (by {be}), {noun} the subject (one
word), {things} a plural (one word), {a_thing} an object with its article, {verb}, {act}, {colour}."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import cache

from .caption_qa_lexicon import COLOUR_NOUNS, NOT_DOING
from .caption_qa_rules import caption_questions, could_be_right

WORDINGS: dict[str, tuple[tuple[str, int], ...]] = {   # type -> (template, weight); the first is canonical
    "colour": (("What colour {be} the {noun}?", 1), ("What color {be} the {noun}?", 3)),   # VQA says "color"
    "how many": (("How many {things} are there?", 2), ("How many {things} are in the picture?", 1),
                 ("How many {things} are in the photo?", 1), ("How many {things} can you see?", 1),
                 ("How many {things} are shown?", 1)),
    "doing": (("What {be} the {noun} doing?", 3), ("What {be} the {noun} doing in the picture?", 1)),
    "where": (("Where {be} the {noun} {verb}?", 1), ("Where {be} the {noun}?", 1)),     # the second: `placed`
    "what": (("What {be} the {noun} {verb}?", 3), ("What {be} {this} {noun} {verb}?", 1)),
    "who": (("Who is {act}?", 3), ("Who is {act} in the picture?", 1)),
    "what is this": (("What is this?", 1), ("What is in the picture?", 1), ("What is shown?", 1),
                     ("What is in this photo?", 1)),
    "what animal": (("What animal is this?", 1), ("What kind of animal is this?", 1),
                    ("What animal is in the picture?", 1), ("What animal is shown?", 1)),
    # singular and plural wordings weigh the same (6 each), as the two canonical ones were drawn half and half
    "is there": (("Is there {a_thing}?", 2), ("Is there {a_thing} in the picture?", 1),
                 ("Is there {a_thing} in this photo?", 1), ("Do you see {a_thing}?", 1),
                 ("Is {a_thing} in the picture?", 1),
                 ("Are there any {things}?", 3), ("Are there {things} in the picture?", 2),
                 ("Do you see any {things}?", 1)),
    "is colour": (("{Be} the {noun} {colour}?", 3), ("{Be} {this} {noun} {colour}?", 1)),
    "is action": (("{Be} the {noun} {act}?", 3), ("{Be} {this} {noun} {act}?", 1)),
}
CANONICAL = {**{kind: (templates[0][0],) for kind, templates in WORDINGS.items()},
             "is there": ("Is there {a_thing}?", "Are there any {things}?")}   # the one-wording set's
BARE_WHERE = "Where {be} the {noun}?"
_UNFIT = {"Who is {act} in the picture?": lambda slots: slots["act"] in NOT_DOING}   # not "Who is holding in ..."
LOCATING = frozenset("in on at through across along down into around".split())   # not over, near, by, under
_SLOT = {"be": "is|are", "Be": "Is|Are", "this": "this|these", "noun": r"\S+", "things": r"\S+", "colour": r"\S+"}


@cache
def pattern(template: str) -> re.Pattern:
    """A regular expression that matches the texts `template` makes."""
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{_SLOT.get(p, '.+')})"
                              for i, p in enumerate(parts)))


def template_of(kind: str, question: str) -> str | None:
    """The template of `WORDINGS[kind]` that made `question` (the most specific that matches), or None."""
    found = [t for t, _ in WORDINGS.get(kind, ()) if pattern(t).fullmatch(question)]
    return max(found, key=lambda t: len(re.sub(r"\{\w+\}", "", t)), default=None)


def _plural_noun(noun: str) -> bool:
    """"shirts", "dresses" (the plural of a colour noun), not "dress" or "bus"."""
    return noun.endswith("s") and (noun[:-1] in COLOUR_NOUNS or noun[:-2] in COLOUR_NOUNS)


def slots_of(kind: str, canonical: str) -> dict[str, str]:
    """The slots of a canonical question ("What colour is the dog?" -> be: is, noun: dog), with {this}, {be}
    and {Be} made to agree with a plural noun ("What colour is the shirts?" -> are, these)."""
    match = next((m for t in CANONICAL[kind] if (m := pattern(t).fullmatch(canonical))), None)
    if match is None:
        raise ValueError(f"not a canonical {kind!r} question: {canonical!r}")
    slots = {k: v for k, v in match.groupdict().items() if v is not None}
    be = (slots.get("be") or slots.get("Be") or "is").lower()
    if kind in ("colour", "is colour") and _plural_noun(slots["noun"]):
        be = "are"
    if "be" in slots or "Be" in slots:
        slots |= {"be": be, "Be": be.capitalize(), "this": "this" if be == "is" else "these"}
    return slots


def choose(kind: str, rng: random.Random, *, placed: bool = False, paraphrase: bool = True,
           slots: dict[str, str] | None = None) -> str:
    """A template of `kind` drawn with its weight (only `CANONICAL`'s, half and half, without `paraphrase`;
    the bare "Where is the dog?" only when `placed`; given `slots`, only templates they fill and fit)."""
    options = [(t, w) for t, w in WORDINGS[kind] if (paraphrase or t in CANONICAL[kind])
               and (placed or t != BARE_WHERE)
               and (slots is None or set(pattern(t).groupindex) <= set(slots)
                    and not (t in _UNFIT and _UNFIT[t](slots)))]
    weights = [w if paraphrase else 1 for _, w in options]
    return rng.choices([t for t, _ in options], weights)[0]


def fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def reword(kind: str, canonical: str, rng: random.Random, *, placed: bool = False, paraphrase: bool = True) -> str:
    """`canonical` (a question of type `kind`) in a wording drawn with `rng`; itself without `paraphrase`."""
    if not paraphrase:
        return canonical
    slots = slots_of(kind, canonical)
    return fill(choose(kind, rng, placed=placed, slots=slots), slots)


def _bare(where_question: str) -> str:
    return re.sub(r" \S+\?$", "?", where_question)   # "Where is the dog running?" -> "Where is the dog?"


def placed(captions: Sequence[str], question: str, answer: str) -> bool:
    """Whether "Where is the dog?" keeps the answer of `question` ("Where is the dog running?" -> `answer`):
    every caption that says where that subject is doing something puts it in, on, at, through ... a place
    (not over, near, by or under it) that the answer could name (itself, or a word of its group)."""
    bare, seen = _bare(question), False
    for caption in captions:
        for q in caption_questions(caption):
            if q.type == "where" and _bare(q.question) == bare:
                if q.prep not in LOCATING or not could_be_right("where", q.answer, {answer}):
                    return False
                seen = True
    return seen
