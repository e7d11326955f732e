"""The decoder registry, as timm's model registry: a decoder class says `@register_decoder("kind")`, and
`ModelConfig.decoder` names the kind a captioner is built with. Every module in this folder is imported the
first time the registry is read, so a new kind is one new file here (`show_and_tell.py` is the example).

What a registered decoder provides (the `Decoder` protocol; `captioning.decoder.ShowAttendTellDecoder` is
the paper's): `__init__(config, vocab_size, feature_dim)`; `memory(features)` and `init_state(features)` per
image; `step(tokens, state, memory) -> (log_probs, state, alpha)` for `captioning.search`; `forward(features,
captions, rules=None, temperature=1.0) -> DecoderOutput` for training (cross-entropy and SCST);
`estimate_parameters(config, vocab_size, feature_dim)` (a classmethod the loader checks against free memory
before building anything); `describe()`: a few words for the app. Importing this package imports no torch."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Protocol

DEFAULT_DECODER = "show_attend_tell"
_REGISTRY: dict[str, type] = {}
_BUILT_IN = ("captioning.decoder",)  # kinds defined outside this folder


class Decoder(Protocol):
    def memory(self, features: Any) -> Any: ...
    def init_state(self, features: Any) -> tuple: ...
    def step(self, tokens: Any, state: tuple, memory: Any) -> tuple[Any, tuple, Any]: ...
    def forward(self, features: Any, captions: Any, rules: Any = None, temperature: float = 1.0) -> Any: ...
    @classmethod
    def estimate_parameters(cls, config: Any, vocab_size: int, feature_dim: int) -> int: ...
    def describe(self) -> str: ...


def register_decoder(kind: str):  # noqa: ANN201 (a class decorator)
    """Class decorator: make the class the decoder of `kind`."""
    def register(cls: type) -> type:
        if _REGISTRY.get(kind, cls) is not cls:
            raise ValueError(f"decoder kind {kind!r} is registered twice ({_REGISTRY[kind].__name__}, {cls.__name__})")
        _REGISTRY[kind] = cls
        return cls
    return register


def _discover() -> None:
    for name in _BUILT_IN:
        importlib.import_module(name)
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def list_decoders() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def decoder_class(kind: str) -> type:
    """The class registered as `kind`; a ValueError naming the kinds there are otherwise."""
    if kind not in _REGISTRY:
        _discover()
    if kind not in _REGISTRY:
        raise ValueError(f"unknown decoder {kind!r} (choose from {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[kind]
