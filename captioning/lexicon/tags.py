"""Tags: what an encoder's own classifier sees, in the words captions use.

`imagenet_words.tsv` maps each ImageNet-1k class to one caption word ("tabby" -> cat, "airliner" ->
airplane, "espresso" -> coffee; classes with no sensible caption word map to nothing); `caption_words.tsv`
gives each caption word its kind (animal, vehicle, food, ...), the other words that name the same thing
(cats, kitten; plane, jet) and a stand-in: a common word of the same role that a decoder which never saw
the word can speak it like (`captioning.guidance`). A word's probability is the sum of its classes', divided
by its number of classes to a power (`word_probabilities`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

HERE = Path(__file__).parent
TABLES = {"imagenet-1k": HERE / "imagenet_words.tsv"}
CAPTION_WORDS = HERE / "caption_words.tsv"


@dataclass(frozen=True)
class CaptionWord:
    word: str
    kind: str                  # animal, vehicle, food, drink, clothing, place, plant, furniture, device, ...
    forms: tuple[str, ...]     # other words that name the same thing ("cats", "kitten")
    stand_in: str | None       # a common word of the same role, for a decoder that lacks this one

    @property
    def names(self) -> tuple[str, ...]:
        """Every word that names it: the word first, then its forms."""
        return (self.word, *self.forms)


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


@cache
def caption_words() -> dict[str, CaptionWord]:
    """Every caption word a classifier class can map to, with its kind, forms and stand-in."""
    words = {}
    for row in _rows(CAPTION_WORDS):
        row += [""] * (4 - len(row))
        word, kind, forms, stand_in = (cell.strip() for cell in row[:4])
        words[word] = CaptionWord(word, kind, tuple(forms.split()), stand_in or None)
    return words


class TagTable:
    """Class index -> caption word for one label set, and the (K, W) matrix that sums class probabilities
    into word probabilities."""

    def __init__(self, labels: str, class_names: Sequence[str], class_words: Sequence[str | None]):
        self.labels = labels
        self.class_names = tuple(class_names)
        self.class_words = tuple(class_words)
        known = caption_words()
        missing = sorted({w for w in class_words if w and w not in known})
        if missing:
            raise ValueError(f"{labels}: caption words without an entry in {CAPTION_WORDS.name}: {missing[:5]}")
        self.words = tuple(sorted({w for w in class_words if w}))
        self.kinds = tuple(known[w].kind for w in self.words)  # each word's kind, in `words` order
        column = {w: i for i, w in enumerate(self.words)}
        matrix = torch.zeros(len(class_words), len(self.words))
        for k, word in enumerate(class_words):
            if word:
                matrix[k, column[word]] = 1.0
        self.matrix = matrix

    def __len__(self) -> int:
        return len(self.class_words)

    def entry(self, word: str) -> CaptionWord:
        return caption_words()[word]

    def word_probabilities(self, class_probs: torch.Tensor, count_power: float = 0.0) -> torch.Tensor:
        """(B, K) class probabilities -> (B, W) probability of each caption word (`self.words`).

        A word's probability is the sum of its classes'. ImageNet gives "dog" 118 classes and "cat" 5, and a
        classifier trained on balanced classes spreads its doubt over many dog breeds, whose sum then
        outweighs the cat: with `count_power` a > 0 each word's sum (and the classes without a word, as one
        more group) is divided by its class count^a and the result renormalised (a = 1 would remove the
        class prior entirely; the bundled captioner's a was measured, docs/training.md)."""
        probs = class_probs.float() @ self.matrix.to(class_probs.device)
        if count_power == 0:
            return probs
        counts = self.matrix.sum(0).to(probs.device)
        unnamed = (class_probs.float() @ (1 - self.matrix.sum(1)).to(probs.device)).unsqueeze(1)
        unnamed_count = float(len(self) - counts.sum())
        weighted = probs / counts ** count_power
        rest = unnamed / max(unnamed_count, 1.0) ** count_power
        return weighted / (weighted.sum(1, keepdim=True) + rest)

    def top_words(self, word_probs: torch.Tensor, count: int = 5, floor: float = 0.05) -> list[list[tuple[str, float]]]:
        """Per image, up to `count` (word, probability) pairs of at least `floor`, most probable first, from
        (B, W) word probabilities (`word_probabilities`)."""
        values, columns = word_probs.topk(min(count, word_probs.shape[1]), dim=1)
        return [[(self.words[c], round(float(v), 4)) for v, c in zip(vs, cs, strict=True) if v >= floor]
                for vs, cs in zip(values.tolist(), columns.tolist(), strict=True)]


@cache
def tag_table(labels: str) -> TagTable:
    """The committed table of a label set ("imagenet-1k")."""
    if labels not in TABLES:
        raise ValueError(f"no tag table for the label set {labels!r} (known: {', '.join(sorted(TABLES))})")
    rows = _rows(TABLES[labels])
    names = [row[1] for row in rows]
    words = [(row[2].strip() if len(row) > 2 else "") or None for row in rows]
    return TagTable(labels, names, words)
