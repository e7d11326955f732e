"""Shared fixtures."""

import pytest
import torch

from captioning import Vocabulary

from .helpers import CAPTIONS

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary.build(CAPTIONS)
