"""Guided decoding: the encoder's own classifier tells the caption what it must say.

A captioner trained on Flickr8k has seen thousands of dogs and a handful of cats; its encoder's ImageNet
head has seen a thousand kinds of things. Per image, `plan` turns the tag probabilities (the head's
classes summed into caption words, `captioning.lexicon.tags`) into a `search.Guidance`:

- the most probable tag word, when it is at least `threshold` probable, of a kind worth naming (not
  clothing or a sport: ImageNet's guesses at those mislead on photos of people) and one the captioner's
  training captions mention fewer than `known_from` times (what it knows well, dogs and bicycles, it says
  by itself, and forcing it in costs the caption more than it gives), must be said (constrained beam
  search, Anderson et al. 2017), by the word or any of its forms (cat, cats, kitten); unless the captioner's
  own training photos showed the tag to mislead (`unreliable_tags`: on Flickr8k's photos of people,
  ImageNet's head sees unicycles and whales that no caption mentions);
- within a kind whose words exclude each other (animals), the most probable word, once it has at least
  `dominant_at`, rules out the words it is `dominance` times as probable as, but for its stand-in (a wolf
  may still be called a dog), and every word of the kind below `say_from`, itself included: a likely cat
  is not called a dog, even when it is not confident enough to be required, and an animal the tags are
  unsure of is not named at all;
- a word the decoder's vocabulary lacks is said through its stand-in (zebra through "horse"): the search
  requires the stand-in, which the decoder knows how to place and continue after, and the caption
  prints the word instead (Hendricks et al. 2016's direct transfer, without touching a weight).

Where the evidence cannot choose, the caption hedges (Deng et al. 2012): an exclusive kind's words the tags
split between are printed as the kind ("an animal"), and `hedge_people` prints a word for who a person is
that the decoder itself was unsure of as "person"; each hedge comes with a notice saying why.

`out_of_depth` says when the strongest tag is a thing the captioner saw in few training captions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from .config import shown
from .lexicon.tags import TagTable, caption_words
from .search import Guidance
from .vocab import Vocabulary

NAMED_KINDS = ("animal", "vehicle", "food", "drink", "device", "furniture", "instrument", "object", "place", "plant")
TAG_FLOOR = 0.05   # tags below this probability are not reported
TAGS_SHOWN = 5


@dataclass(frozen=True)
class GuideSettings:
    """How tags guide one captioner: stored in its config.json ("guidance"), measured for the bundled one."""

    temperature: float = 0.35      # the classifier's logits / this, before the softmax: at 320 px the
                                   # ImageNet head (trained at 224-260 px) spreads its probability thinner
                                   # (0.35: most pets_dev cats named, val CIDEr kept; docs/training.md)
    count_power: float = 0.5       # each tag word's probability / its class count^this (TagTable.word_probabilities)
    threshold: float = 0.5         # the top tag word must be said when at least this probable ...
    known_from: int = 100          # ... unless the training captions mention it this often (when counts are known)
    dominant_at: float = 0.05      # a kind's top word this probable rules out ...
    dominance: float = 3.0         # ... the words of its kind it is this many times as probable as,
    say_from: float = 0.0          # ... and those less probable than this
    hedge_people: float = 0.0      # a word for who a person is ("boy", "women") that the decoder gave less
                                   # than this probability is said as "person" / "people"
    hedge_kinds: tuple[str, ...] = ()  # exclusive kinds whose words are said as the kind ("an animal") when
                                   # the tags cannot tell them apart (Deng et al. 2012, "hedging your bets"):
    hedge_split: float = 1.0       # ... the runner-up this probable and the top not `dominance` times it,
    hedge_absent: float = 0.0      # ... or the kind's top word less probable than this (the tags see none)
    exclusive_kinds: tuple[str, ...] = ("animal",)
    named_kinds: tuple[str, ...] = NAMED_KINDS
    unreliable: tuple[str, ...] = ()  # tag words never required: `unreliable_tags` of the training photos
    rare_below: int = 100          # out of depth: the top tag word occurs in fewer training captions than this
    notice_threshold: float = 0.5  # ... and the tags give it at least this probability
    group_beams: int = 2           # beams per group when a word is required (at most the beam size): 2 groups
                                   # of 2 cost a photo 5 ms where 2 of 3 cost 15; val and pets_dev alike

    def __post_init__(self) -> None:
        if isinstance(self.say_from, bool) or not isinstance(self.say_from, (int, float)) or not 0 <= self.say_from <= 1:
            raise ValueError(f"guidance say_from must be a number in [0, 1], got {shown(self.say_from)}")
        for name in ("hedge_split", "hedge_absent", "hedge_people"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"guidance {name} must be a number in [0, 1], got {shown(value)}")
        for name in ("temperature", "threshold", "dominant_at", "notice_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= (
                    100 if name == "temperature" else 1):
                raise ValueError(f"guidance {name} must be a number in (0, {100 if name == 'temperature' else 1}], "
                                 f"got {shown(value)}")
        if isinstance(self.dominance, bool) or not isinstance(self.dominance, (int, float)) or self.dominance < 1:
            raise ValueError(f"guidance dominance must be a number >= 1, got {shown(self.dominance)}")
        if isinstance(self.count_power, bool) or not isinstance(self.count_power, (int, float)) or \
                not 0 <= self.count_power <= 1:
            raise ValueError(f"guidance count_power must be a number in [0, 1], got {shown(self.count_power)}")
        if isinstance(self.group_beams, bool) or not isinstance(self.group_beams, int) or self.group_beams < 1:
            raise ValueError(f"guidance group_beams must be a positive integer, got {shown(self.group_beams)}")
        for name in ("rare_below", "known_from"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"guidance {name} must be a non-negative integer, got {shown(value)}")
        for name in ("exclusive_kinds", "named_kinds", "unreliable", "hedge_kinds"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(k, str) for k in value):
                raise ValueError(f"guidance {name} must be a list of words, got {shown(value)}")
            object.__setattr__(self, name, tuple(value))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any) -> GuideSettings:
        if not isinstance(data, dict):
            raise ValueError(f"guidance must be a mapping, got {shown(data)}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown guidance keys: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class Plan:
    """One image's guidance, and how to print what the search says."""

    guidance: Guidance = field(default_factory=Guidance)
    required: tuple[str, ...] = ()                         # the tag words the caption must name
    spoken_as: dict[int, str] = field(default_factory=dict)  # token id -> the word it stands in for
    plurals: dict[str, str] = field(default_factory=dict)    # required word -> its plural, said after "two"
    people_below: float = 0.0                                # `GuideSettings.hedge_people`
    hedges: list[tuple[frozenset[int], str]] = field(default_factory=list)  # (token ids said as their kind, why)


def _ids(vocab: Vocabulary, words: Sequence[str]) -> set[int]:
    return {vocab.index[w] for w in words if w in vocab.index}


def training_mentions(vocab: Vocabulary, names: Sequence[str]) -> int:
    """How often the training captions use any of `names` (0 when the vocabulary records no counts)."""
    return sum(vocab.count(name) or 0 for name in names)


def plan(word_probs: torch.Tensor, table: TagTable, vocab: Vocabulary, settings: GuideSettings,
         threshold: float | None = None) -> Plan:
    """What one image's caption must and must not say, from its (W,) tag word probabilities."""
    threshold = settings.threshold if threshold is None else threshold
    probs = word_probs.tolist()
    column = max(range(len(probs)), key=probs.__getitem__)
    word, entry = table.words[column], table.entry(table.words[column])
    known = vocab.counts is not None and training_mentions(vocab, entry.names) >= settings.known_from
    requirable = (probs[column] >= threshold and entry.kind in settings.named_kinds and not known
                  and word not in settings.unreliable)
    excluded, hedged, hedges = _exclusive_kinds(probs, table, vocab, settings, column if requirable else None)
    required = _ids(vocab, entry.names) if requirable else set()
    spoken_as = dict(hedged)
    if requirable and word not in vocab.index and entry.stand_in in vocab.index:
        stand_in = vocab.index[entry.stand_in]
        required.add(stand_in)
        spoken_as[stand_in] = word
    if not required:
        return Plan(Guidance((), frozenset(excluded)), spoken_as=hedged, people_below=settings.hedge_people,
                    hedges=hedges)
    plural = next((form for form in entry.names if form in (word + "s", word + "es")), None)
    return Plan(Guidance((frozenset(required),), frozenset(excluded - required)), (word,), spoken_as,
                {word: plural} if plural else {}, settings.hedge_people, hedges)


def _said(table: TagTable, i: int) -> str:
    """The word the decoder says for tag word i: its stand-in (a wolf is said as "dog"), else itself."""
    return table.entry(table.words[i]).stand_in or table.words[i]


def _exclusive_kinds(probs: list[float], table: TagTable, vocab: Vocabulary, settings: GuideSettings,
                     required: int | None) -> tuple[set[int], dict[int, str], list[tuple[frozenset[int], str]]]:
    """Within each exclusive kind, the token ids the caption may not say (a likely cat is not called a dog)
    and those it says as the kind's own word ("animal") when the tags cannot choose; never for the kind
    of the `required` tag word, which the tags are sure of."""
    excluded: set[int] = set()
    hedged: dict[int, str] = {}
    hedges = []
    for kind in settings.exclusive_kinds:
        members = [i for i, k in enumerate(table.kinds) if k == kind]
        if not members:
            continue
        top = max(members, key=probs.__getitem__)
        unsure = None
        if kind in settings.hedge_kinds and required not in members:
            unsure = _unsure_of(probs, members, top, table, settings)
        if unsure is not None:
            said = _said_as(kind, unsure, table, vocab)
            hedged |= said
            hedges.append((frozenset(said), _why_hedged(kind, unsure, probs, table)))
        elif probs[top] >= settings.dominant_at:
            for i in members:  # a wolf may still be called a dog: its stand-in is not ruled out
                beaten = i != top and table.words[i] != _said(table, top) and \
                    probs[i] * settings.dominance <= probs[top]
                if beaten or probs[i] < settings.say_from:
                    excluded |= _ids(vocab, table.entry(table.words[i]).names)
    return excluded, hedged, hedges


def _why_hedged(kind: str, unsure: list[int], probs: list[float], table: TagTable) -> str:
    """The notice a hedged caption comes with, in plain words."""
    if len(unsure) != 2:
        return f'The encoder\'s classifier sees no {kind} here, so the caption says "{kind}" where it named one.'
    (a, b) = unsure
    return (f"The encoder's classifier cannot tell {article_for(table.words[a])} {table.words[a]} "
            f"({probs[a]:.0%}) from {article_for(table.words[b])} {table.words[b]} ({probs[b]:.0%}) here, "
            f'so the caption says "{kind}".')


def _unsure_of(probs: list[float], members: list[int], top: int, table: TagTable,
               settings: GuideSettings) -> list[int] | None:
    """The words of an exclusive kind the tags cannot choose between, or None when they can: every member
    when none is `hedge_absent` probable (the caption would name a guess), else the top word and a
    runner-up said as another word (a wolf and a dog are both said "dog"), at least `hedge_split` probable,
    that the top is not `dominance` times as likely as."""
    if max(probs[i] for i in members) < settings.hedge_absent:
        return members
    others = [i for i in members if _said(table, i) != _said(table, top) and probs[i] >= settings.hedge_split]
    second = max(others, key=probs.__getitem__, default=None)
    if second is None or probs[second] * settings.dominance <= probs[top]:
        return None
    return [top, second]


def _said_as(kind: str, words: list[int], table: TagTable, vocab: Vocabulary) -> dict[int, str]:
    """Token id -> the kind's own word for every form of `words` and of their stand-ins ("dogs" -> "animals")."""
    out = {}
    for i in words:
        entry = table.entry(table.words[i])
        stand_in = caption_words().get(entry.stand_in)
        forms = {*entry.names, *(stand_in.names if stand_in else ())}
        for form in forms:
            if form in vocab.index:
                out[vocab.index[form]] = kind + "s" if _plural(form, forms) else kind
    return out


def _plural(form: str, forms: set[str]) -> bool:
    """"dogs", "puppies", "walruses" among their forms: plural; "walrus", "octopus": not."""
    return form.endswith("s") and (form[:-1] in forms or form[:-2] in forms or form[:-3] + "y" in forms)


CONSONANT_SOUND = ("uni", "use", "usu", "eu", "one", "once")  # "a unicycle", "a european", "a one-way street"
MIN_PHOTOS, MIN_CONFIRMED = 5, 0.5


def unreliable_tags(word_probs: torch.Tensor, captions: Sequence[Sequence[str]], table: TagTable,
                    threshold: float) -> tuple[str, ...]:
    """The tag words that mislead on a captioner's own training photos: the top tag of at least MIN_PHOTOS
    photos at `threshold` or more, yet named (the word or a form) in their captions on fewer than half of
    them. word_probs (N, W) of the N photos; captions: each photo's captions as token lists.

    On Flickr8k (people and dogs, 224 px photos) ImageNet's head is confidently wrong in a long tail of its
    classes (a unicycle under a cyclist, a whale in a splash); forcing those into captions costs what
    guidance gains. A word the training photos never confidently show (a cat, a coffee, a rocket) has no
    evidence against it and stays trusted."""
    values, columns = word_probs.max(dim=1)
    shown_as: dict[str, list[int]] = {}
    for photo, (p, c) in enumerate(zip(values.tolist(), columns.tolist(), strict=True)):
        if p >= threshold:
            shown_as.setdefault(table.words[c], []).append(photo)
    out = []
    for word, photos in shown_as.items():
        names = set(table.entry(word).names)
        confirmed = sum(1 for i in photos if names & set(w for caption in captions[i] for w in caption))
        if len(photos) >= MIN_PHOTOS and confirmed < MIN_CONFIRMED * len(photos):
            out.append(word)
    return tuple(sorted(out))


VOWEL_SOUND = ("hour", "honest", "honor", "honour", "heir")     # "an hour"


def article_for(word: str) -> str:
    """"an" before a vowel sound, else "a" (by spelling, with the common exceptions)."""
    if word.startswith(VOWEL_SOUND):
        return "an"
    return "an" if word[:1] in ("a", "e", "i", "o", "u") and not word.startswith(CONSONANT_SOUND) else "a"


COUNTING = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "several", "many")


PEOPLE = {"man": "person", "woman": "person", "boy": "person", "girl": "person", "child": "person", "kid": "person",
          "guy": "person", "lady": "person", "men": "people", "women": "people", "boys": "people", "girls": "people",
          "children": "people", "kids": "people", "guys": "people", "ladies": "people"}


def hedge_people(words: list[str], word_log_probs: Sequence[float], below: float) -> tuple[list[str], str | None]:
    """Each word for who a person is that the decoder gave less than `below` probability, said as "person" or
    "people": a general word instead of a confident-looking wrong one (Deng et al. 2012, "hedging your
    bets"): a captioner that has seen children in red shirts, unsure what an astronaut is, says "a person".
    Also the notice saying so (None when nothing changed)."""
    if not below or len(word_log_probs) != len(words):
        return words, None
    unsure = [(i, w, math.exp(lp)) for i, (w, lp) in enumerate(zip(words, word_log_probs, strict=True))
              if w in PEOPLE and math.exp(lp) < below]
    if not unsure:
        return words, None
    out = list(words)
    for i, w, _ in unsure:
        out[i] = PEOPLE[w]
    _, word, p = unsure[0]
    return out, (f'The captioner is unsure who is in the photo ("{word}" {p:.0%}), so the caption says '
                 f'"{PEOPLE[word]}".')


def render(words: list[str], spoken_as: dict[str, str], plurals: dict[str, str] | None = None) -> list[str]:
    """The caption's words with stand-ins replaced by the words they stand for, a required word in its plural
    after a number ("two rockets": the decoder may have no plural of a word it rarely saw), and every a/an
    made to agree with the word after it (a required word the decoder did not expect can follow the article
    it chose)."""
    out = [spoken_as.get(w, w) for w in words]
    plurals = plurals or {}
    for i in range(1, len(out)):
        if out[i] in plurals and out[i - 1] in COUNTING:
            out[i] = plurals[out[i]]
    for i in range(len(out) - 1):
        if out[i] in ("a", "an"):
            out[i] = article_for(out[i + 1])
    return out


def out_of_depth(tags: list[tuple[str, float]], vocab: Vocabulary, table: TagTable,
                 settings: GuideSettings) -> str | None:
    """A plain sentence when the strongest tag names something the captioner rarely or never saw in
    training (None when its vocabulary records no counts, or it knows the thing well)."""
    if not tags or vocab.counts is None:
        return None
    word, p = tags[0]
    if p < settings.notice_threshold:
        return None
    seen = training_mentions(vocab, table.entry(word).names)
    if seen >= settings.rare_below:
        return None
    how_often = "never" if seen == 0 else f"only {seen} time{'s' if seen > 1 else ''}"
    return (f"This looks like {article_for(word)} {word} ({p:.0%} by the encoder's classifier), "
            f"which this captioner's training captions mention {how_often}: the caption may be wrong.")
