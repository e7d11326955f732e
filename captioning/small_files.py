"""Settings files (config.json, vocab.json, a `--config` YAML) read with a size limit and never from a pipe or a
device: a 2.5 GB sparse config.json, `--config /dev/zero` or a FIFO is one line of error, not gigabytes or a
hang. YAML anchors and aliases are refused: nested aliases (a "billion laughs" file) expand exponentially."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

MAX_SETTINGS_BYTES = 16 * 2**20  # config.json and config YAML files are a few kilobytes
MAX_VOCAB_BYTES = 64 * 2**20     # vocab.json: about 3 million words


def not_regular(path: Path, what: str) -> str | None:
    """Why `path` cannot be read as a `what`: a directory, or a FIFO or device (reading a FIFO would block,
    a device never ends); None for a regular file, or a missing one (its reader says so)."""
    if path.is_dir():
        return f"{path}: is a directory, not {what}"
    if path.exists() and not path.is_file():
        return f"{path}: not a regular file (a pipe, socket or device), not {what}"
    return None


def read_small_text(path: str | os.PathLike, what: str, limit: int = MAX_SETTINGS_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes; ValueError naming the file otherwise
    (FileNotFoundError and UnicodeDecodeError pass through for the caller's own message)."""
    path = Path(path)
    problem = not_regular(path, f"a {what}")
    if problem:
        raise ValueError(problem)
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{path}: {size:,} bytes, more than a {what} can hold ({limit:,})")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # it grew while read
        raise ValueError(f"{path}: more than {limit:,} bytes, more than a {what} can hold")
    return data.decode("utf-8")


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (*name) are not allowed in a "
                                              "config file", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str):  # noqa: ANN201 (any YAML value)
    """`yaml.safe_load` without aliases."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
