"""Process-wide settings an entry point applies before torch loads (this module imports no torch).

`import captioning` does not import torch either (its names load on first use), so a command can
call these first thing: `captioning.engine.runtime.passive_openmp()`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def passive_openmp() -> None:
    """Idle OpenMP worker threads sleep instead of spin-waiting (unless OMP_WAIT_POLICY is already set).

    On a shared CPU the spinning threads steal the cores the busy ones need (measured: a CPU training
    epoch 8x slower). OpenMP reads the variable when torch loads it, so call this before importing torch."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A package's module `__getattr__` (PEP 562) importing each public name from its submodule on first
    use: `import captioning` / `import vqa` then load no torch."""
    def load(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value
    return load
