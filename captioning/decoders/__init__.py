"""The decoder registry, as timm's model registry: a decoder class says `@register_decoder("kind")`, and
`ModelConfig.decoder` names the kind a captioner is built with. Every module in this folder is imported the
first time the registry is read, so a new kind is one new file here (`show_and_tell.py` is the example).

What a registered decoder provides (the `Decoder` protocol; `captioning.decoder.ShowAttendTellDecoder` is
the paper's): `__init__(config, vocab_size, feature_dim)`; `memory(features)` and `init_state(features)` per
image; `step(tokens, state, memory) -> (log_probs, state, alpha)` for `captioning.search`; `forward(features,
captions, rules=None, temperature=1.0) -> DecoderOutput` for training (cross-entropy and SCST);
`estimate_parameters(config, vocab_size, feature_dim)` (a classmethod the loader checks against free memory
before building anything); `describe()`: a few words for the app. Kinds are registered per task: "caption"
(the above) and "answer" (the answerer's decoders, registered by `vqa.decoder`). Importing this package
imports no torch."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Protocol

DEFAULT_DECODER = "show_attend_tell"
CAPTION, ANSWER = "caption", "answer"  # the tasks: a caption decoder writes text, an answer decoder reads a question first
_REGISTRY: dict[str, dict[str, type]] = {}
_MODULES: dict[str, list[str]] = {CAPTION: ["captioning.decoder"]}  # kinds defined outside this folder, per task


class Decoder(Protocol):
    def memory(self, features: Any) -> Any: ...
    def init_state(self, features: Any) -> tuple: ...
    def step(self, tokens: Any, state: tuple, memory: Any) -> tuple[Any, tuple, Any]: ...
    def forward(self, features: Any, captions: Any, rules: Any = None, temperature: float = 1.0) -> Any: ...
    @classmethod
    def estimate_parameters(cls, config: Any, vocab_size: int, feature_dim: int) -> int: ...
    def describe(self) -> str: ...


def register_decoder(kind: str, task: str = CAPTION):  # noqa: ANN201 (a class decorator)
    """Class decorator: make the class the decoder of `kind` for `task` ("caption"; "answer": a decoder that
    reads a question before it answers, `vqa.decoder`, with `encode` and its own `forward` beside `step`)."""
    def register(cls: type) -> type:
        kinds = _REGISTRY.setdefault(task, {})
        if kinds.get(kind, cls) is not cls:
            raise ValueError(f"{task} decoder kind {kind!r} is registered twice ({kinds[kind].__name__}, {cls.__name__})")
        kinds[kind] = cls
        return cls
    return register


def decoder_modules(task: str, *modules: str) -> None:
    """Modules to import before `task`'s kinds are looked up: a package that defines decoders of another task
    (vqa) names them here, so this registry never imports it by name."""
    known = _MODULES.setdefault(task, [])
    known += [m for m in modules if m not in known]


def _discover(task: str) -> None:
    for name in _MODULES.get(task, ()):
        importlib.import_module(name)
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def list_decoders(task: str = CAPTION) -> list[str]:
    _discover(task)
    return sorted(_REGISTRY.get(task, {}))


def decoder_class(kind: str, task: str = CAPTION) -> type:
    """The class registered as `kind` for `task`; a ValueError naming the kinds there are otherwise."""
    if kind not in _REGISTRY.get(task, {}):
        _discover(task)
    kinds = _REGISTRY.get(task, {})
    if kind not in kinds:
        what = "decoder" if task == CAPTION else f"{task} decoder"
        raise ValueError(f"unknown {what} {kind!r} (choose from {', '.join(sorted(kinds))})")
    return kinds[kind]
