"""Property tests of hostile sizes (issue 27): images by decoded bytes and aspect, checkpoint configs at their
bounds, training settings past them, beam size, length and choices at their extremes. Every example runs in
its own process (tests/size_probe.py) so its peak memory is its own: it ends in a result or in one line, in
under 5 s, under 2 GB, and a refused training run leaves no run folder behind."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from captioning.config import INT_LIMITS, set_in_layout
from captioning.images import MAX_PIXELS
from captioning.vocab import Vocabulary

from .helpers import CAPTIONS, tiny_captioner

ROOT = Path(__file__).resolve().parent.parent
FEW = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
               phases=[Phase.explicit, Phase.generate])  # no shrinking: each example is a process
SECONDS, PEAK_MIB = 5.0, 2048


def run_probe(spec: dict, folder: Path) -> dict:
    """Runs one probe in a fresh interpreter; asserts the promise every probe keeps, returns its outcome."""
    number = len(list(folder.glob("probe-*")))
    out, spec_file = folder / f"probe-{number}-out.json", folder / f"probe-{number}-spec.json"
    spec_file.write_text(json.dumps({**spec, "out": str(out)}))
    done = subprocess.run([sys.executable, "-m", "tests.size_probe", str(spec_file)],
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    outcome = json.loads(out.read_text())
    assert len(outcome["lines"]) == 1 and len(outcome["lines"][0]) < 1000, (spec, outcome)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert outcome["seconds"] < SECONDS, (spec, outcome)
    assert outcome["peak_mib"] < PEAK_MIB, (spec, outcome)
    return outcome


def png_header(path: Path, width: int, height: int, bit_depth: int, colour_type: int) -> Path:
    """A PNG that declares any size but holds no pixel data: decoding it would allocate the declared size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


@st.composite
def sizes(draw) -> tuple[int, int]:
    """Width and height spread over every aspect ratio, up to the pixel limit."""
    a = draw(st.integers(0, 25))
    b = draw(st.integers(0, 25 - a))
    width, height = draw(st.integers(2**a, 2**(a + 1))), draw(st.integers(2**b, 2**(b + 1)))
    return (width, height) if width * height <= MAX_PIXELS else (width, MAX_PIXELS // width)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_captioner(Vocabulary.build(CAPTIONS, min_freq=1)).save(tmp_path_factory.mktemp("ckpt") / "ckpt")


@FEW
@given(size=sizes(), mode=st.sampled_from([(8, 0), (8, 2), (8, 6), (16, 2), (16, 6)]))
def test_images_of_any_decoded_size_and_aspect(tmp_path_factory, size, mode):
    folder = tmp_path_factory.mktemp("image")
    path = png_header(folder / "hostile.png", *size, *mode)
    run_probe({"kind": "image", "path": str(path)}, folder)


@FEW
@given(values=st.fixed_dictionaries({name: st.sampled_from(bounds) for name, bounds in INT_LIMITS.items()}))
def test_checkpoint_configs_at_their_bounds(tmp_path_factory, checkpoint, values):
    folder = tmp_path_factory.mktemp("bounds")
    for name in ("config.json", "vocab.json", "model.safetensors"):
        (folder / name).write_bytes((checkpoint / name).read_bytes())
    meta = json.loads((folder / "config.json").read_text())
    set_in_layout(meta["model"], **values)
    (folder / "config.json").write_text(json.dumps(meta))
    (folder / "photo.png").write_bytes(b"")  # never reached: the image is made in the probe
    outcome = run_probe({"kind": "caption", "checkpoint": str(folder), "options": {"beam_size": 2}}, folder)
    assert outcome["lines"][0].startswith(("returned", "CheckpointError", "ValueError")), outcome


PAST_BOUNDS = [("--beam-size", v) for v in ("0", "-1", "65", "1000000000")] + \
    [("--max-len", v) for v in ("0", "201", "1000000")] + [("--hidden-dim", v) for v in ("0", "4097", "100000000")] + \
    [("--image-size", v) for v in ("15", "1025", "1000000")] + [("--lr", v) for v in ("-1", "0", "nan", "inf")] + \
    [("--epochs", "-5"), ("--batch-size", "0"), ("--dropout", "1"), ("--dropout", "nan"), ("--num-layers", "5")]


@FEW
@given(package=st.sampled_from(["captioning", "vqa"]), settings_=st.lists(st.sampled_from(PAST_BOUNDS), min_size=1,
                                                                        max_size=2))
def test_training_settings_past_their_bounds_write_nothing(tmp_path_factory, package, settings_):
    folder = tmp_path_factory.mktemp("train")
    (folder / "a.json").write_text(json.dumps({"images": []}))
    flags = [x for pair in settings_ for x in pair]
    argv = ["train", "--annotations", str(folder / "a.json"), "--images", str(folder), "--out", str(folder / "run"),
            *flags]
    outcome = run_probe({"kind": "command", "package": package, "argv": argv}, folder)
    assert outcome["lines"][0].startswith("error: ") and any(flag in outcome["lines"][0] or flag[2:].replace(
        "-", "_") in outcome["lines"][0] for flag, _ in settings_), outcome
    assert not (folder / "run").exists()


EXTREME_INTS = st.one_of(st.integers(-10, 70), st.integers(190, 210), st.integers(10**6, 10**12))


@FEW
@given(beam_size=EXTREME_INTS, max_len=EXTREME_INTS)
def test_beam_size_and_length_at_their_extremes(tmp_path_factory, checkpoint, beam_size, max_len):
    outcome = run_probe({"kind": "caption", "checkpoint": str(checkpoint),
                         "options": {"beam_size": beam_size, "max_len": max_len}}, tmp_path_factory.mktemp("decode"))
    within = 1 <= beam_size <= 64 and 1 <= max_len <= 200
    assert outcome["lines"][0].startswith("returned" if within else "ValueError"), outcome


@FEW
@given(count=st.sampled_from([1, 2, 999, 1000, 1001, 20_000]), words=st.integers(0, 40))
def test_choices_at_their_extremes(tmp_path_factory, count, words):
    choices = [" ".join(["red"] * words + [f"w{i}"]) for i in range(count)]
    outcome = run_probe({"kind": "answer", "answerer": "easy-vqa-shapes", "question": "What color is the shape?",
                         "choices": choices}, tmp_path_factory.mktemp("choices"))
    assert outcome["lines"][0].startswith("returned" if count <= 1000 else "QuestionError"), outcome
