"""Settings files with no limit on what they cost (issue 27): a huge sparse config.json or vocab.json, `--config`
naming /dev/zero or a FIFO, a YAML alias bomb. Each is one line of error, quickly, with little memory."""

from __future__ import annotations

import os
import time

import pytest

from captioning import CheckpointError, Vocabulary, load_captioner
from captioning.cli import main as cli
from captioning.small_files import MAX_SETTINGS_BYTES, MAX_VOCAB_BYTES

from .helpers import tiny_captioner

BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"]
                 + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)])


def _train_args(tmp_path, config) -> list[str]:
    return ["train", "--config", str(config), "--annotations", str(tmp_path / "a.json"), "--images", str(tmp_path),
            "--out", str(tmp_path / "run")]


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "sparse", "alias-bomb"])
def test_a_config_file_that_would_cost_without_bound_is_one_line(tmp_path, capsys, kind):
    config = tmp_path / "config.yaml"
    if kind == "dev-zero":
        config.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(config)
    elif kind == "sparse":
        with open(config, "wb") as f:
            f.truncate(MAX_SETTINGS_BYTES + 1)
    else:
        config.write_text(BOMB)
    start = time.monotonic()
    assert cli(_train_args(tmp_path, config)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(config) in err and time.monotonic() - start < 5, err
    assert {"dev-zero": "not a regular file", "fifo": "not a regular file", "sparse": "bytes, more than",
            "alias-bomb": "aliases"}[kind] in err
    assert len(err) < 400  # the value is never echoed


def test_a_checkpoint_with_a_huge_config_or_vocabulary_is_refused_before_reading_it(tmp_path):
    folder = tiny_captioner(Vocabulary.build(["a red circle", "a blue square"])).save(tmp_path / "ckpt")
    config = folder / "config.json"
    config.unlink()
    with open(config, "wb") as f:
        f.truncate(MAX_SETTINGS_BYTES + 10)
    with pytest.raises(CheckpointError, match="bytes, more than a checkpoint config can hold"):
        load_captioner(folder, pretrained_encoder=False)
    huge = tmp_path / "vocab.json"
    with open(huge, "wb") as f:
        f.truncate(MAX_VOCAB_BYTES + 10)
    with pytest.raises(ValueError, match="more than a vocabulary file can hold"):
        Vocabulary.load(huge)
