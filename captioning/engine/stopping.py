"""SIGINT / SIGTERM during training: finish the step in flight, save RUN/last, then stop and say so.

A signal only sets a flag; the loop checks it between optimizer steps, where the weights, the optimizer
and the counters agree, so the save is a clean resume point. A second signal stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving; the message says where and how to resume."""


class StopRequests:
    def __init__(self) -> None:
        self.signal_name: str | None = None

    @contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Catch SIGINT and SIGTERM while the block runs (main thread only; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def request(signum: int, frame: object) -> None:
            if self.signal_name is not None:  # asked twice: stop now, without the save
                raise KeyboardInterrupt
            self.signal_name = signal.Signals(signum).name

        previous = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, request)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves as Ctrl-C (KeyboardInterrupt) while a command runs: a feature cache being built
    commits what it has, as it does on SIGINT, instead of the process dying silently."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
