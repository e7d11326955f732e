"""Defaults and bounds shared by the library, the commands and the app, in a module that imports nothing
heavy (a command's `--help` does not wait for torch). Each decoding argument is checked here once, by
`EncoderDecoder.decode`, which every caption and answer goes through, and by the commands with their own
option names."""

from __future__ import annotations

import math
from typing import Any

DEFAULT_BEAM_SIZE = 3  # what `caption`, `answer` and the commands use unless told otherwise
MAX_BEAM_SIZE = 64     # wider beams only cost memory (beam 5 already ranks as beam 3 does; docs/training.md)
MAX_LEN = 200          # the longest caption or answer any checkpoint may ask for (config.py's bound)
MAX_CHOICES = 1000     # candidate answers per question: each one is scored on its own copy of the grid
INFERENCE_KINDS = ("fast", "plain", "int8")  # the paths of the one inference seam (`captioning.inference`)
INFERENCE_HELP = "how decoding forms its products: fast (default), plain (the paper's equations) or int8 (CPU)"


def whole_number(name: str, value: Any, low: int, high: int) -> int:
    """`value` if it is an int in [low, high]; a one-line ValueError naming `name` otherwise (2.5, "3", True)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def check_decoding(*, beam_size: Any, max_len: Any, num_results: Any = 1, temperature: Any = 1.0,
                   names: tuple[str, str] = ("beam_size", "max_len")) -> None:
    """The bounds of one decoding call (`names`: how the caller calls beam size and length: "--beam-size")."""
    whole_number(names[0], beam_size, 1, MAX_BEAM_SIZE)
    whole_number(names[1], max_len, 1, MAX_LEN)
    whole_number("num_results", num_results, 1, MAX_BEAM_SIZE)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")


def beam_width(beam_size: Any, sample: bool) -> int:
    """The beam size a call decodes with: `beam_size` (None: DEFAULT_BEAM_SIZE), or 1 when sampling, which
    draws one caption per image; a beam size beside sample=True is an error, not silently ignored."""
    if sample:
        if beam_size is not None and beam_size != 1:
            raise ValueError(f"sample=True draws one caption per image; beam_size is for beam search (got "
                             f"{beam_size!r}): leave it out or pass 1")
        return 1
    return DEFAULT_BEAM_SIZE if beam_size is None else beam_size
