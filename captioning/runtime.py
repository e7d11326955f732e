"""Process-wide settings an entry point applies before torch loads (this module imports no torch).

`import captioning` does not import torch either (its names load on first use), so a command can
call these first thing: `captioning.runtime.passive_openmp()`."""

from __future__ import annotations

import os


def passive_openmp() -> None:
    """Idle OpenMP worker threads sleep instead of spin-waiting (unless OMP_WAIT_POLICY is already set).

    On a shared CPU the spinning threads steal the cores the busy ones need (measured: a CPU training
    epoch 8x slower). OpenMP reads the variable when torch loads it, so call this before importing torch."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
