"""What the `captioning` and `vqa` command lines share: an argument parser whose errors are one line,
and the one-line form of an exception that ends a command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .stopping import sigterm_as_interrupt


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with one-line errors (invalid choices still list the valid ones)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def worker_message(message: str) -> str:
    """A DataLoader worker's error as its own message ("x.jpg: not an image file"), without the "Caught ... in
    DataLoader worker process 0. Original Traceback ..." wrapper torch puts around it."""
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    last = [line for line in message.strip().splitlines() if line.strip()][-1]
    _, sep, rest = last.partition(": ")
    return rest if sep and " " not in last.split(": ", 1)[0] else last


def one_line_error(exc: BaseException) -> str:
    """The message a command prints for `exc`: its first words, the type for unexpected kinds."""
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    message = worker_message(message)
    message = " ".join(message.split()) or type(exc).__name__
    if len(message) > 600:  # whatever a hostile file put in it, the error stays one short line
        message = f"{message[:400]} ... {message[-150:]}"
    known = (ValueError, RuntimeError, OSError, KeyError)
    if type(exc).__name__ == "OutOfMemoryError":
        return f"out of memory ({message[:200]}); lower --batch-size"
    return message if isinstance(exc, known) else f"{type(exc).__name__}: {message}"


def run_command(command: Callable[[argparse.Namespace], Any], args: argparse.Namespace, debug: bool = False) -> int:
    """Run one command: its exit status (an int it returns, else 0); an error is one `error: ...` line and status 1
    (an interrupt 130), unless `debug`, which lets the exception through with its traceback."""
    try:
        with sigterm_as_interrupt():
            status = command(args)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM; training says where it saved (`Interrupted`)
        if debug:
            raise
        print(f"error: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"error: {one_line_error(exc)}", file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0
