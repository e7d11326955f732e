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

`out_of_depth` says when the strongest tag is a thing the captioner saw in few training captions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from .config import shown
from .lexicon.tags import TagTable
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
        for name in ("exclusive_kinds", "named_kinds", "unreliable"):
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
    kinds = [table.entry(w).kind for w in table.words]
    excluded: set[int] = set()
    for kind in settings.exclusive_kinds:
        members = [i for i, k in enumerate(kinds) if k == kind]
        if not members:
            continue
        top = max(members, key=probs.__getitem__)
        kin = table.entry(table.words[top]).stand_in  # a wolf may still be called a dog
        if probs[top] >= settings.dominant_at:
            for i in members:
                beaten = i != top and table.words[i] != kin and probs[i] * settings.dominance <= probs[top]
                if beaten or probs[i] < settings.say_from:
                    excluded |= _ids(vocab, table.entry(table.words[i]).names)
    column = max(range(len(probs)), key=probs.__getitem__)
    word, entry = table.words[column], table.entry(table.words[column])
    known = vocab.counts is not None and training_mentions(vocab, entry.names) >= settings.known_from
    if probs[column] < threshold or entry.kind not in settings.named_kinds or known or word in settings.unreliable:
        return Plan(Guidance((), frozenset(excluded)))
    required = _ids(vocab, entry.names)
    spoken_as = {}
    if word not in vocab.index and entry.stand_in in vocab.index:
        stand_in = vocab.index[entry.stand_in]
        required.add(stand_in)
        spoken_as[stand_in] = word
    if not required:
        return Plan(Guidance((), frozenset(excluded)))
    plural = next((form for form in entry.names if form in (word + "s", word + "es")), None)
    return Plan(Guidance((frozenset(required),), frozenset(excluded - required)), (word,), spoken_as,
                {word: plural} if plural else {})


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
