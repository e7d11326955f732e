"""Attention grounding: does the model look at the object a colour or shape word names?

For every colour or shape word in a generated caption, the peak of that word's attention map
(argmax over the grid) is mapped to the pixel centre of its grid cell in the original image; the
word is grounded when that point lies inside the box of an object in the image having that colour
(or shape). The score is the share of grounded words over all colour/shape words generated."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class GroundingScore:
    score: float        # grounded / words (0 when no colour or shape word was generated)
    grounded: int
    words: int
    colour: tuple[int, int]  # (grounded, words) for colour words
    shape: tuple[int, int]   # (grounded, words) for shape words

    def to_dict(self) -> dict:
        return {"score": self.score, "grounded": self.grounded, "words": self.words,
                "colour": list(self.colour), "shape": list(self.shape)}

    def line(self) -> str:
        return (f"attention grounding  {self.score:.4f}  ({self.grounded}/{self.words} colour/shape words "
                f"attended inside a matching object; colour {self.colour[0]}/{self.colour[1]}, "
                f"shape {self.shape[0]}/{self.shape[1]})")


def _forms(word: str) -> set[str]:
    """A shape name and its plurals ("circle" -> circles, "cross" -> crosses)."""
    word = word.lower()
    return {word, word + "s", word + "es"}


def peak_point(attention: torch.Tensor, width: int, height: int) -> tuple[float, float]:
    """(x, y) pixel centre of the grid cell where a (H_grid, W_grid) attention map peaks."""
    rows, cols = attention.shape
    index = int(attention.reshape(-1).argmax())
    r, c = divmod(index, cols)
    return (c + 0.5) * width / cols, (r + 0.5) * height / rows


def _inside(point: tuple[float, float], box: Sequence[float]) -> bool:
    x, y = point
    x0, y0, x1, y1 = box
    return x0 <= x <= x1 and y0 <= y <= y1


def grounding_score(items: Iterable[tuple[Sequence[str], torch.Tensor, Sequence[dict], tuple[int, int]]],
                    colours: Iterable[str], shapes: Iterable[str]) -> GroundingScore:
    """items: (generated words, attention (words, H, W), objects of the image, (width, height)).

    `colours` and `shapes` are the names that count (usually every colour and shape in the dataset)."""
    colour_words = {c.lower(): c.lower() for c in colours}
    shape_words = {form: s.lower() for s in shapes for form in _forms(s)}
    counts = {"colour": [0, 0], "shape": [0, 0]}
    for words, attention, objects, (width, height) in items:
        for t, word in enumerate(words):
            word = word.lower()
            if word in colour_words:
                kind, key, value = "colour", "color", colour_words[word]
            elif word in shape_words:
                kind, key, value = "shape", "shape", shape_words[word]
            else:
                continue
            point = peak_point(attention[t], width, height)
            hit = any(str(o.get(key, "")).lower() == value and _inside(point, o["box"]) for o in objects)
            counts[kind][0] += int(hit)
            counts[kind][1] += 1
    grounded = counts["colour"][0] + counts["shape"][0]
    total = counts["colour"][1] + counts["shape"][1]
    return GroundingScore(grounded / total if total else 0.0, grounded, total,
                          tuple(counts["colour"]), tuple(counts["shape"]))
