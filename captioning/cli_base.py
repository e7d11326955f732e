"""What the `captioning` and `vqa` command lines share: an argument parser whose errors are one line,
and the one-line form of an exception that ends a command."""

from __future__ import annotations

import argparse


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with one-line errors (invalid choices still list the valid ones)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def one_line_error(exc: BaseException) -> str:
    """The message a command prints for `exc`: its first words, the type for unexpected kinds."""
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    message = " ".join(message.split()) or type(exc).__name__
    known = (ValueError, RuntimeError, OSError, KeyError)
    if type(exc).__name__ == "OutOfMemoryError":
        return f"out of memory ({message[:200]}); lower --batch-size"
    return message if isinstance(exc, known) else f"{type(exc).__name__}: {message}"
