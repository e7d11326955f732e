"""The COCO-QA-style rules of `vqa.caption_qa` (its notes say what they do): the questions one caption
yields, the answers an image's captions agree on, and wrong choices that could not also be right."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from captioning.vocab import tokenize

from .caption_qa_lexicon import (
    COLOUR_ALIASES,
    COLOUR_GROUPS,
    COLOUR_NOUNS,
    COLOURS,
    DETERMINERS,
    NOT_DOING,
    NUMBERS,
    OBJECT_GROUPS,
    OBJECTS,
    PEOPLE,
    PERSON_WORDS,
    PLACE_GROUPS,
    PLACE_PREPS,
    PLACES,
    PLURALS,
    STOPS,
    SUBJECTS,
    TRANSITIVE,
    VERB_GROUPS,
    VERBS,
    WHO_ANSWERS,
    could_name_subject,
    people_compatible,
)

TYPES = ("what", "who", "where", "colour", "how many", "doing")   # the COCO-QA-style rules
SUBJECT_TYPES = ("what is this", "what animal")
YES_NO_TYPES = ("is there", "is colour", "is action")
ALL_TYPES = TYPES + SUBJECT_TYPES + YES_NO_TYPES
ANSWER_TYPES = {**dict.fromkeys(ALL_TYPES, "other"), "how many": "number", **dict.fromkeys(YES_NO_TYPES, "yes/no")}
YES, NO = "yes", "no"


# ---- parsing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    type: str
    question: str
    answer: str
    form: str          # the question form the wrong choices are drawn from first
    prep: str = ""     # "where": the preposition before the place ("on" the grass)


def _det_noun(tokens: Sequence[str], start: int, nouns: frozenset[str], span: int = 3) -> int | None:
    """Index of the noun of a noun phrase beginning at `start` (a determiner, up to 2 modifiers)."""
    if start >= len(tokens) or tokens[start] not in DETERMINERS:
        return None
    for k in range(start + 1, min(start + span + 1, len(tokens))):
        if tokens[k] in nouns:
            return k
        if tokens[k] in STOPS or tokens[k] in PLACE_PREPS:
            return None
    return None


def _verb_after(tokens: Sequence[str], i: int) -> int | None:
    """The activity verb of the subject at `i`: "dog is running", "dog running", "man in a hat rides"."""
    for j in range(i + 1, min(i + 7, len(tokens))):
        word = tokens[j]
        if word in VERBS:
            between = tokens[i + 1:j]
            direct = not between or between in (["is"], ["are"])
            modifier = bool(between) and between[0] in ("in", "with", "wearing", "of") and \
                not any(w in SUBJECTS or w in VERBS for w in between)
            return j if direct or modifier else None
        if word in STOPS or word in SUBJECTS and j > i + 1:
            return None
    return None


def caption_questions(caption: str) -> list[Question]:
    """Every question one caption yields (possibly none)."""
    tokens = tokenize(caption)
    out: list[Question] = []
    for i, word in enumerate(tokens):
        # colour: "a brown dog", not "a black and white dog"
        if word in COLOURS and i + 1 < len(tokens) and tokens[i + 1] in COLOUR_NOUNS and \
                (i == 0 or tokens[i - 1] not in COLOURS and tokens[i - 1] != "and"):
            noun = tokens[i + 1]
            verb = "are" if noun in PLURALS or noun in ("shorts", "pants", "jeans", "shoes", "boots") else "is"
            out.append(Question("colour", f"What colour {verb} the {noun}?", COLOUR_ALIASES.get(word, word), "colour"))
        # how many: "two dogs"
        if word in NUMBERS and i + 1 < len(tokens) and tokens[i + 1] in PLURALS:
            noun = tokens[i + 1]
            out.append(Question("how many", f"How many {noun} are there?", word, "how many"))
    subject = next((i for i, w in enumerate(tokens) if w in SUBJECTS), None)
    if subject is None:
        return out
    noun = tokens[subject]
    j = _verb_after(tokens, subject)
    if j is None:
        return out
    verb, plural = tokens[j], noun in PLURALS
    be = "are" if plural else "is"
    if noun not in ("someone", "crowd") and verb not in NOT_DOING:
        out.append(Question("doing", f"What {be} the {noun} doing?", verb, f"doing {noun}"))
    k = j + 1
    with_ = k < len(tokens) and tokens[k] == "with" and verb == "playing"
    obj = _det_noun(tokens, k + int(with_), OBJECTS) if verb in TRANSITIVE else None
    phrase = ""
    if obj is not None and tokens[obj] != noun:
        det = "a" if tokens[k + int(with_)] in ("a", "an", "one", "his", "her", "their", "its") else \
            tokens[k + int(with_)]
        det = "an" if det == "a" and tokens[obj][0] in "aeiou" else det
        phrase = f"{verb} {'with ' if with_ else ''}{det} {tokens[obj]}"
        if noun not in ("someone", "crowd"):
            out.append(Question("what", f"What {be} the {noun} {verb}{' with' if with_ else ''}?", tokens[obj],
                                f"what {verb}"))
        k = obj + 1
    unknown_object = verb in TRANSITIVE and obj is None and k < len(tokens) and tokens[k] in DETERMINERS
    places = range(k, min(k + 3, len(tokens))) if verb not in NOT_DOING and not unknown_object else range(0)
    for p in places:
        if tokens[p] in PLACE_PREPS:
            place = _det_noun(tokens, p + 1, PLACES)
            if place is None and p + 1 < len(tokens) and tokens[p + 1] in PLACES:
                place = p + 1
            if place is not None and noun not in ("someone", "crowd"):
                out.append(Question("where", f"Where {be} the {noun} {verb}?", tokens[place], f"where {verb}",
                                    tokens[p]))
            break
        if tokens[p] in STOPS:
            break
    if noun in WHO_ANSWERS:
        out.append(Question("who", f"Who is {phrase or verb}?", noun, "who"))
    return out


# ---- what could also be right -------------------------------------------------------------------
def _person_compatible(a: str, b: str) -> bool:
    return all(x is None or y is None or x == y for x, y in zip(PEOPLE[a], PEOPLE[b], strict=True))


GROUPS = {"colour": COLOUR_GROUPS, "where": PLACE_GROUPS, "what": OBJECT_GROUPS, "doing": VERB_GROUPS}


def could_be_right(kind: str, choice: str, caption_words: set[str]) -> bool:
    """Whether `choice` might also answer a `kind` question about an image whose captions hold these words.
    A yes/no answer is fixed by its premise rules (see the module notes): no other choice is ever right."""
    if kind in YES_NO_TYPES:
        return False
    if kind in SUBJECT_TYPES:
        return could_name_subject(choice, caption_words)
    if choice in caption_words or COLOUR_ALIASES.get(choice, choice) in caption_words:
        return True
    if kind == "colour" and choice == "gray" and "grey" in caption_words:
        return True
    if kind == "who":
        return any(w in PEOPLE and _person_compatible(choice, w) for w in caption_words)
    return any(choice in group and caption_words & group for group in GROUPS.get(kind, ()))


# ---- a data set ------------------------------------------------------------------------------------
def agreement(captions: Sequence[str]) -> dict[tuple[str, str], tuple[Question, Counter]]:
    """(type, question) -> (its first Question, how often each answer is given) over the captions."""
    answers: dict[tuple[str, str], Counter] = {}
    first: dict[tuple[str, str], Question] = {}
    for caption in captions:
        for q in caption_questions(caption):
            key = (q.type, q.question)
            answers.setdefault(key, Counter())[q.answer] += 1
            first.setdefault(key, q)
    return {key: (first[key], counts) for key, counts in answers.items()}


def image_questions(captions: Sequence[str]) -> list[Question]:
    """The questions an image's captions agree on: one answer each (see the module notes)."""
    out = []
    for key, (q, counts) in agreement(captions).items():
        ranked = counts.most_common()
        if key[0] in ("colour", "how many") and len(ranked) > 1:
            continue   # two colours or counts for one noun: two different things
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            continue
        out.append(Question(q.type, q.question, ranked[0][0], q.form))
    return out


def weighted_sample(pool: Counter, k: int, rng: random.Random, exclude) -> list[str]:
    """Up to `k` distinct entries of `pool`, drawn with probability proportional to their counts;
    `exclude(answer, picked so far)` rules an entry out."""
    items = sorted((a, n) for a, n in pool.items() if not exclude(a, []))
    picked: list[str] = []
    while items and len(picked) < k:
        r = rng.random() * sum(n for _, n in items)
        for idx, (a, n) in enumerate(items):
            r -= n
            if r < 0 or idx == len(items) - 1:
                picked.append(a)
                break
        items = [(a, n) for a, n in items if a not in picked and not exclude(a, picked)]
    return picked


def wrong_choices(q: Question, caption_words: set[str], form_pool: Counter, type_pool: Counter,
                  rng: random.Random, k: int = 3) -> list[str]:
    """Up to `k` wrong answers for `q`: from its question form's answers first, then its type's; never one
    that could also be right for the image (`could_be_right` on all its captions' words), nor two of one
    group (bike and bicycle both wrong would give the answer away by elimination)."""
    def bad(a: str, picked: list[str]) -> bool:
        return a == q.answer or a in picked or could_be_right(q.type, a, caption_words | set(picked)) or \
            q.type == "who" and _person_compatible(a, q.answer) or \
            q.type in SUBJECT_TYPES and a in PERSON_WORDS and q.answer in PERSON_WORDS and \
            people_compatible(a, q.answer)
    wrong = weighted_sample(form_pool, k, rng, bad)
    return wrong + weighted_sample(type_pool, k - len(wrong), rng, lambda a, picked: bad(a, wrong + picked))
