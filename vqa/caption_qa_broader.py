"""The broader questions of `vqa.caption_qa` (its notes say what they ask and when): main subjects,
people counts, the premises of yes/no questions and the weights that balance their answers, and the
evidence words derived from other captions (`caption_qa_words.py`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from captioning.vocab import tokenize

from .caption_qa_lexicon import (
    ACTION_SKIP,
    COLOUR_ALIASES,
    COLOUR_NOUNS,
    DETERMINERS,
    NO_ARTICLE,
    NUMBERS,
    PEOPLE_PLURALS,
    PERSON_WORDS,
    PLACE_PREPS,
    PLACES,
    PRESENCE,
    PRESENCE_PLURAL,
    STOPS,
    SUBJECT_NAMES,
    SUBJECTS,
    VERBS,
    absent,
    with_stems,
)
from .caption_qa_rules import Question, could_be_right
from .caption_qa_wording import fill, slots_of

WORD_SHAPE = re.compile(r"[a-z]+(?:-[a-z]+)*")   # what an evidence word looks like


# ---- the broader questions: subjects and people counts -------------------------------------------------
def caption_subject(caption: str) -> str | None:
    """The canonical name of a caption's subject, its first person or animal word ("Two puppies ..." -> dog);
    None for none, or for one that names no kind of thing ("someone", "a crowd")."""
    word = next((w for w in tokenize(caption) if w in SUBJECTS), None)
    return SUBJECT_NAMES.get(word) if word else None


def main_subject(captions: Sequence[str]) -> str | None:
    """The subject most of the captions name (ties: None)."""
    ranked = Counter(s for s in map(caption_subject, captions) if s).most_common(2)
    if not ranked or len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


_NOT_MODIFIERS = SUBJECTS | COLOUR_NOUNS | PLACES | VERBS | STOPS | PLACE_PREPS | DETERMINERS | NUMBERS
_NOT_COUNTED = frozenset("he his him she her hers hand hands finger fingers".split())   # a person already counted


def caption_people(caption: str) -> str | None:
    """The number of people a caption gives ("Two young men ..." -> two), None when it gives none, and
    "" when it gives one that may not be all ("two men and a woman", "two boys and two girls")."""
    tokens = tokenize(caption)
    found: list[tuple[int, int]] = []
    for i, word in enumerate(tokens):
        if word not in NUMBERS:
            continue
        for j in range(i + 1, min(i + 4, len(tokens))):
            if tokens[j] in PEOPLE_PLURALS:
                found.append((i, j))
                break
            if tokens[j] in _NOT_MODIFIERS:
                break
    if not found:
        return None
    heads = {j for _, j in found}
    others = [w for k, w in enumerate(tokens) if k not in heads and w in PERSON_WORDS and w not in _NOT_COUNTED]
    return "" if len(found) > 1 or others else tokens[found[0][0]]


def people_count(captions: Sequence[str]) -> str | None:
    """The number of people when every caption that gives one gives the same (and none is unsure)."""
    given = {n for n in map(caption_people, captions) if n is not None}
    return given.pop() if len(given) == 1 and "" not in given else None


# ---- the broader questions: yes/no premises ------------------------------------------------------------
def present_objects(captions: Sequence[str]) -> list[str]:
    """The objects of `PRESENCE` that more than half of the captions name: a "yes" to "Is there a ...?"."""
    named = [with_stems(tokenize(c)) for c in captions]
    return [o for o, names in PRESENCE.items() if 2 * sum(bool(w & names) for w in named) > len(captions)]


def _article(noun: str) -> str:
    return noun if noun in NO_ARTICLE else f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def is_there(obj: str, plural: bool) -> str:
    return f"Are there any {PRESENCE_PLURAL[obj]}?" if plural else f"Is there {_article(obj)}?"


def is_colour(colour_question: str, colour: str) -> str:
    """"What colour is the dog?", "brown" -> "Is the dog brown?"."""
    be, noun = re.fullmatch(r"What colour (is|are) the (.+)\?", colour_question).groups()
    if noun.endswith("s") and (noun[:-1] in COLOUR_NOUNS or noun[:-2] in COLOUR_NOUNS):
        be = "are"   # "What colour is the shirts?" (the colour rule's "is") -> "Are the shirts ...?"
    return f"{be.capitalize()} the {noun} {colour}?"


def is_action(what_question: str, obj: str) -> str:
    """"What is the man riding?", "bike" -> "Is the man riding a bike?"."""
    be, rest = re.fullmatch(r"What (is|are) the (.+)\?", what_question).groups()
    return f"{be.capitalize()} the {rest} {_article(obj)}?"


@dataclass(frozen=True)
class YesOption:
    """A "yes" question an image could get: `key` is what balance counts (the object; the colour question
    and colour; the "what" form and object), `group` which "no" keys may pair with it, `base` the question
    the text is made from."""
    kind: str
    key: tuple[str, ...]
    group: str
    base: str


def yes_options(captions: Sequence[str], agreed: dict[tuple[str, str], tuple[Question, Counter]]) -> list[YesOption]:
    """Every "yes" question the captions support (see the module notes), in a fixed order."""
    out = [YesOption("is there", (o,), "", "") for o in present_objects(captions)]
    for (kind, text), (_, answers) in agreed.items():
        if len(answers) != 1:
            continue   # a "yes" needs every caption that answers to give the same answer
        answer = next(iter(answers))
        if kind == "colour":
            out.append(YesOption("is colour", (text, COLOUR_ALIASES.get(answer, answer)), text, text))
        elif kind == "what" and answer not in ACTION_SKIP:
            out.append(YesOption("is action", (text, answer), text, text))
    return out


def safe_no(kind: str, key: tuple[str, ...], words: set[str]) -> bool:
    """Whether `key`'s question is safely answered "no" for an image whose captions hold `words`."""
    if kind == "is there":
        return absent(key[0], words)
    if kind == "is colour":
        return not could_be_right("colour", key[1], words)
    obj = key[1]
    return obj not in ACTION_SKIP and not could_be_right("what", obj, words) and \
        (obj not in PRESENCE or absent(obj, words))


def yes_no_text(option: YesOption, key: tuple[str, ...], template: str) -> str:
    """The question of `option`'s kind about `key` ("yes" or "no") in `template` (`caption_qa_wording`)."""
    if option.kind == "is there":
        return fill(template, {"a_thing": _article(key[0]), "things": PRESENCE_PLURAL[key[0]]})
    canonical = (is_colour if option.kind == "is colour" else is_action)(option.base, key[1])
    return fill(template, slots_of(option.kind, canonical))


def balancing_weights(targets: Counter, slots: Sequence[Sequence], rounds: int = 25) -> dict:
    """Weights w such that drawing one key per slot (a list of the keys allowed there) with probability
    w[key] / (sum of w over the slot) gives each key about `targets[key]` draws (iterative proportional
    fitting; a key no slot allows keeps its weight). Sums run in a fixed order: same inputs, same weights."""
    weights = {k: float(n) for k, n in targets.items() if n > 0}
    for _ in range(rounds):
        expected = dict.fromkeys(weights, 0.0)
        for allowed in slots:
            total = sum(weights[k] for k in allowed)
            for k in allowed:
                expected[k] += weights[k] / total
        weights = {k: w * min(4.0, max(0.25, targets[k] / expected[k])) if expected[k] else w
                   for k, w in weights.items()}
    return weights


# ---- evidence words from other captions (caption_qa_words.py) -------------------------------------------
def derive_evidence(photos: Iterable[Collection[str]], *, min_photos: int = 5, min_share: float = 0.3,
                    min_lift: float = 1.5) -> dict[str, list[str]]:
    """For each object of `PRESENCE`, the words that suggest it: over `photos` (the words of each photo's
    captions), a word w (lower-case letters and hyphens, not one of the object's names) such that of the
    photos whose captions use w, at least `min_photos` and a share of at least `min_share`, and at least
    `min_lift` times the object's share of all photos, name the object ("leash" -> dog)."""
    named = [with_stems(p) for p in photos]
    if not named:
        return {o: [] for o in PRESENCE}
    used = Counter(w for p in named for w in p)
    out = {}
    for obj, names in PRESENCE.items():
        with_obj = [p for p in named if p & names]
        share = len(with_obj) / len(named)
        together = Counter(w for p in with_obj for w in p if w not in names)
        out[obj] = sorted(w for w, n in together.items() if n >= min_photos and WORD_SHAPE.fullmatch(w)
                          and n / used[w] >= max(min_share, min_lift * share))
    return out
