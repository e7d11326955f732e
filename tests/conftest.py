"""Shared fixtures."""

import os

# Before torch loads: idle OpenMP threads sleep instead of spinning, so tests stay fast even when
# the two cores are shared with other work (spinning made tiny forwards ~100x slower here).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

from captioning import Vocabulary

from .helpers import CAPTIONS

torch.set_num_threads(1)  # the test models are tiny; one thread is fastest and predictable


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts on one intra-op thread, whatever the previous one set (the app and the bench set it)."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary.build(CAPTIONS)
