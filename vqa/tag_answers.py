"""Answers the encoder's classifier gives: "What is this?" -> cat, "Is there a dog?" -> no.

An answerer trained on questions generated from Flickr8k's captions knows Flickr8k's world; its encoder's
ImageNet head knows a thousand kinds of things (`captioning.lexicon.tags`). For the two question kinds that
head answers directly, `tag_answer` answers from the tags when they are confident, and the learned answer
stands otherwise (docs/vqa.md, "Answers from the tags", has the measurement behind the thresholds):

- "What is this?", "What animal is this?": the most probable tag word (of the asked kind: animal, vehicle,
  food, ...) when its probability is at least `what_threshold`;
- "Is there a cat?", "Is this a dog?", "Are there any horses?", "Do you see a dog?", "Is a cat in the
  picture?": "yes" when the asked word's probability is at least `yes_threshold`; "no" when the word is an
  animal, another animal is at least `yes_threshold` probable and the asked one below `rule_out_below` (a
  confident cat is not a dog)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from captioning.guidance import NAMED_KINDS
from captioning.lexicon.tags import TagTable, caption_words
from captioning.vocab import tokenize

from .caption_qa_lexicon import PERSON_WORDS
from .question_kinds import SCENE_PHRASE, asked_thing, question_kind

KIND_NAMES = {"animal": "animal", "animals": "animal", "vehicle": "vehicle", "food": "food", "dish": "food",
              "drink": "drink", "beverage": "drink", "instrument": "instrument", "furniture": "furniture",
              "device": "device", "plant": "plant", "place": "place", "object": "object", "thing": None}
# "is there a dog (in the picture)", "are there any dogs", "is this a dog", "do you see a dog", "can you see
# any dogs", and with the scene said: "is a dog in the picture", "are dogs in this photo"
PRESENCE = re.compile(r"(?:(?:is|are) (?:there|this|that|it|these|those)|(?:do|can) you see) "
                      rf"(?:a |an |any |some |two |the )?(?P<thing>[\w-]+)(?: {SCENE_PHRASE})?"
                      rf"|(?:is|are) (?:a |an |any |some )?(?P<placed>[\w-]+) {SCENE_PHRASE}")


@dataclass(frozen=True)
class TagAnswerSettings:
    """How the tags answer for one answerer: saved in its config.json ("tags")."""

    temperature: float = 0.35     # the classifier's softmax temperature (as `GuideSettings.temperature`)
    count_power: float = 0.5      # as `GuideSettings.count_power`
    what_threshold: float = 0.6
    yes_threshold: float = 0.6
    rule_out_below: float = 0.1
    exclusive_kinds: tuple[str, ...] = ("animal",)
    unreliable: tuple[str, ...] = ()  # tag words that mislead on the training photos: never an answer

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any) -> TagAnswerSettings:
        if not isinstance(data, dict) or set(data) - {f.name for f in fields(cls)}:
            raise ValueError(f"tags must be a mapping of {', '.join(f.name for f in fields(cls))}")
        numbers = ("temperature", "count_power", "what_threshold", "yes_threshold", "rule_out_below")
        if not all(isinstance(data.get(k, 1), (int, float)) and not isinstance(data.get(k, 1), bool) for k in numbers):
            raise ValueError("tags: temperature, count_power and the thresholds must be numbers")
        lists = ("exclusive_kinds", "unreliable")
        if not all(isinstance(data.get(k, []), list) and all(isinstance(w, str) for w in data.get(k, [])) for k in lists):
            raise ValueError("tags: exclusive_kinds and unreliable must be lists of words")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _word_of(name: str) -> str | None:
    """The tag word a question word names ("cats" -> cat, "puppy" -> dog), or None."""
    for word, entry in caption_words().items():
        if name in entry.names:
            return word
    return None


def tag_answer(question: str, word_probs: torch.Tensor, table: TagTable,
               settings: TagAnswerSettings = TagAnswerSettings(), learned: str | None = None) -> tuple[str, str] | None:
    """(answer, the tag behind it) when the tags answer `question` confidently, else None. `learned`: the
    answerer's own answer, which stands for a "what is this" when it names a person."""
    kind = question_kind(question)
    probs = {w: p for w, p in zip(table.words, word_probs.tolist(), strict=True) if w not in settings.unreliable}
    if kind == "what is this":
        if learned is not None and learned in PERSON_WORDS:
            return None
        asked = asked_thing(question)
        wanted = KIND_NAMES.get(asked) if asked in KIND_NAMES else None
        if asked is not None and asked not in KIND_NAMES:
            return None  # "what breed is this", "what dog is this": not a question tags answer
        kinds = (wanted,) if wanted else NAMED_KINDS
        candidates = [(p, w) for w, p in probs.items() if table.entry(w).kind in kinds]
        if not candidates:
            return None
        p, word = max(candidates)
        return (word, f"{word} {p:.0%}") if p >= settings.what_threshold else None
    if kind != "yes/no":
        return None
    match = PRESENCE.fullmatch(" ".join(tokenize(question)))
    word = _word_of(match.group("thing") or match.group("placed")) if match else None
    if word is None or word not in probs:
        return None
    if probs[word] >= settings.yes_threshold:
        return "yes", f"{word} {probs[word]:.0%}"
    entry = table.entry(word)
    if entry.kind in settings.exclusive_kinds and probs[word] < settings.rule_out_below:
        rivals = [(p, w) for w, p in probs.items() if w != word and table.entry(w).kind == entry.kind]
        p, rival = max(rivals, default=(0.0, ""))
        if p >= settings.yes_threshold:
            return "no", f"{rival} {p:.0%}, {word} {probs[word]:.0%}"
    return None
