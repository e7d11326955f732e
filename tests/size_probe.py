"""One hostile-size probe, run in a fresh process by tests/test_reliability_sizes.py:

    python -m tests.size_probe SPEC.json     (SPEC: {"kind": ..., "out": where to write the outcome, ...})

prints {"lines": [...], "seconds": S, "peak_mib": M}: what the call ended in (an error's one line, or a short
account of the result), how long the call took (start-up excluded) and the process's peak resident memory."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

from bench.hostile import peak_mib


def _command(package: str, argv: list[str]) -> list[str]:
    module = __import__(f"{package}.cli", fromlist=["main"])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = module.main(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip() and not line.startswith("note:")]
    return lines if code != 0 else [f"exit 0 ({len(lines)} lines on stderr)"]


def _call(fn) -> list[str]:
    try:
        return [f"returned {fn()!r}"[:300]]
    except Exception as exc:  # what the call raises is the probe's result
        return f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__]


def probe(spec: dict) -> list[str]:
    kind = spec["kind"]
    if kind == "image":
        from captioning.images import open_image, shrunk_copy

        return _call(lambda: shrunk_copy(open_image(spec["path"], at_least=640)).size)
    if kind == "command":
        return _command(spec["package"], spec["argv"])
    if kind == "caption":
        from PIL import Image

        from captioning import load_captioner

        image = Image.new("RGB", (80, 60), "red")  # loading is part of the call: a checkpoint is hostile input too
        return _call(lambda: len(load_captioner(spec["checkpoint"]).caption([image], **spec["options"])))
    if kind == "answer":
        from PIL import Image

        from vqa import load_answerer

        answerer = load_answerer(spec["answerer"])
        return _call(lambda: answerer.answer(Image.new("RGB", (64, 64), "red"), spec["question"], spec["choices"],
                                             **spec.get("options", {})).text)
    raise ValueError(f"unknown probe kind {kind!r}")


def main() -> None:
    import torch  # loaded before the clock starts

    torch.set_num_threads(1)
    spec = json.loads(Path(sys.argv[1]).read_text())
    start = time.perf_counter()
    lines = probe(spec)
    seconds = time.perf_counter() - start
    Path(spec["out"]).write_text(json.dumps({"lines": lines, "seconds": seconds, "peak_mib": peak_mib()}))


if __name__ == "__main__":
    main()
