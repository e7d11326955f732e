"""Issue 27's hostile inputs, each run in a fresh process: the one line it ends in, the seconds the call took
and the process's peak memory. The inputs are generated here (bench/hostile_inputs.py).

    python bench/hostile.py [--only NAME ...] [--json OUT] [--list]

Prints a Markdown table (docs/reliability.md quotes it). Each case runs in `python bench/hostile.py --child
NAME DIR` after its inputs were written to DIR by this process; "s" times only the call (not Python's or
torch's start-up), "peak MiB" is the child's whole peak resident memory (imports included, about 400 MiB
with torch; VmHWM at its end). Exit status 1 if a refusal took 5 s or more or peaked at 2 GiB or more,
or if any case ended in more than one line or changed an existing run folder."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__:
    from . import hostile_inputs as make
else:  # run as a script: `python bench/hostile.py`
    import hostile_inputs as make

ROOT = Path(__file__).resolve().parent.parent
LIMIT_SECONDS, LIMIT_MIB = 5.0, 2048


@dataclass(frozen=True)
class Case:
    name: str
    what: str                                  # the input, in words (the table's first column)
    prepare: Callable[[Path], None]            # writes the inputs into a folder (this process)
    run: Callable[[Path], str]                 # the call, in the child: returns the line it ended in
    timed: bool = True                         # held to 5 s (a refusal); False: work that takes its time


CASES: dict[str, Case] = {}


def case(name: str, what: str, prepare: Callable[[Path], None] = lambda d: None, timed: bool = True):
    def register(run: Callable[[Path], str]) -> Callable[[Path], str]:
        CASES[name] = Case(name, what, prepare, run, timed)
        return run
    return register


# ---- how a case calls the code ---------------------------------------------------------------------
def cli(package: str, *argv: str) -> str:
    """A command's error line (or its last output line when it succeeds), as a user sees it."""
    module = __import__(f"{package}.cli", fromlist=["main"])
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = module.main(list(argv))
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if code != 0:
        errors = [line for line in lines if line.startswith("error:")]
        return " | ".join(errors) if errors else f"exit {code}: {' | '.join(lines[-2:])}"
    shown = [line for line in out.getvalue().splitlines() if line.strip()]
    return f"exit 0 ({len(lines)} lines on stderr): {shown[-1] if shown else ''}"


def raised(call: Callable[[], object]) -> str:
    """`error: TYPE: message` for an exception, `returned: ...` otherwise."""
    try:
        value = call()
    except Exception as exc:  # the case is what the call raises
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return f"returned: {value}"


def _image(d: Path) -> str:
    return str(d / "photo.jpg")


def _with_checkpoint(d: Path) -> None:
    make.tiny_checkpoint(d / "ckpt")
    make.photo(d / "photo.jpg")


def _with_dataset(d: Path) -> None:
    make.karpathy_set(d)


def _train(d: Path, *extra: str) -> str:
    return cli("captioning", "train", "--annotations", str(d / "dataset_tiny.json"), "--images", str(d / "images"),
               "--out", str(d / "run"), "--epochs", "1", "--batch-size", "2", "--num-workers", "0",
               "--encoder", "efficientnet_lite0", "--hidden-dim", "32", "--embed-dim", "16",
               "--attention-dim", "16", *extra)


# ---- 1-8: memory and time without a limit --------------------------------------------------------------
def _config_at_maxima(d: Path) -> None:
    from captioning.config import set_in_layout

    _with_checkpoint(d)
    meta = json.loads((d / "ckpt/config.json").read_text())
    set_in_layout(meta["model"], hidden_dim=4096, embed_dim=4096, attention_dim=4096, num_layers=4, image_size=1024,
                  grid_size=64)
    (d / "ckpt/config.json").write_text(json.dumps(meta))


@case("1 config at its bounds", "config.json at the bounds' maxima (4096-d, 4 layers, 1024 px, grid 64) beside "
      "tiny weights", _config_at_maxima)
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), _image(d))


def _vocab_of(words: int) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        _with_checkpoint(d)
        make.vocabulary_file(d / "ckpt/vocab.json", words)
    return prepare


@case("1 vocab 10^7 words", "vocab.json of 10,000,000 words (118 MB)", _vocab_of(10_000_000))
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), _image(d))


@case("1 vocab 2x10^6 words", "vocab.json of 2,000,000 words (22 MB, inside the size limit) beside tiny weights",
      _vocab_of(2_000_000))
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), _image(d))


def _sparse_config(d: Path) -> None:
    _with_checkpoint(d)
    with open(d / "ckpt/config.json", "r+b") as f:
        f.truncate(2_500_000_000)


@case("2 config.json 2.5 GB", "a 2.5 GB sparse config.json", _sparse_config)
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), _image(d))


@case("2 --config /dev/zero", "`captioning train --config /dev/zero`", _with_dataset)
def _(d: Path) -> str:
    return _train(d, "--config", "/dev/zero")


@case("2 --config FIFO", "`captioning train --config` naming a FIFO",
      lambda d: (_with_dataset(d), os.mkfifo(d / "fifo.yaml")))
def _(d: Path) -> str:
    return _train(d, "--config", str(d / "fifo.yaml"))


@case("3 YAML alias bomb", "a YAML alias bomb (anchors nested 9 deep) as `--config`, captioning and vqa",
      lambda d: (_with_dataset(d), (d / "bomb.yaml").write_text(make.ALIAS_BOMB)))
def _(d: Path) -> str:
    return _train(d, "--config", str(d / "bomb.yaml")) + " / vqa: " + cli(
        "vqa", "train", "--config", str(d / "bomb.yaml"), "--out", str(d / "vqa_run"))


@case("4 PNG 1 x 63,999,999", "a 560 KB 16-bit RGBA PNG of 1 x 63,999,999 pixels, captioned",
      lambda d: (_with_checkpoint(d), make.flat_png(d / "strip.png", 1, 63_999_999)))
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), str(d / "strip.png"))


@case("4 PNG 63,999,999 x 1 (app)", "its 63,999,999 x 1 twin uploaded to the app beside a good photo",
      lambda d: (make.flat_png(d / "strip.png", 63_999_999, 1), make.photo(d / "good.png")))
def _(d: Path) -> str:
    from app.backend import load_image_bytes

    loaded = [load_image_bytes(p.name, p.read_bytes()) for p in (d / "strip.png", d / "good.png")]
    return "; ".join(f"{x.name}: {x.error or 'decoded ' + x.size_text}" for x in loaded)


def _big_uploads(d: Path) -> None:
    for i in range(20):
        make.flat_png(d / f"big{i}.png", 8000, 8000, bytes([i * 12, 80, 160]), bit_depth=8, colour_type=2,
                      note=str(i))


@case("5 app: 20 uploads 8000x8000", "20 different 8000x8000 PNG uploads kept by the app", _big_uploads,
      timed=False)
def _(d: Path) -> str:
    from app.backend import load_image_bytes

    kept = [load_image_bytes(p.name, p.read_bytes()) for p in sorted(d.glob("big*.png"))]
    held = sum(len(x.image.tobytes()) + len(x.preview.tobytes()) for x in kept)
    return f"{len(kept)} uploads kept, {held / 2**20:.0f} MiB of pixels in all ({kept[0].image.size} each)"


@case("6 --beam-size 10000", "`captioning caption --beam-size 10000`", _with_checkpoint)
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), _image(d), "--beam-size", "10000")


@case("7 --max-len 10^6", "`captioning caption --max-len 1000000`, and `caption(max_len=10**6)`", _with_checkpoint)
def _(d: Path) -> str:
    from captioning import load_captioner
    from captioning.images import open_image

    model = load_captioner(d / "ckpt")
    return cli("captioning", "caption", str(d / "ckpt"), _image(d), "--max-len", "1000000") + " / API: " + raised(
        lambda: model.caption([open_image(_image(d))], max_len=10**6))


def _answer(d: Path, question: str, choices, **options) -> str:
    from vqa import load_answerer

    answerer = load_answerer("easy-vqa-shapes")
    image = make.Image.new("RGB", (64, 64), "red")
    return raised(lambda: _answer_line(answerer.answer(image, question, choices, **options)))


def _answer_line(result) -> str:
    return f"{result.text!r}" + (f" (notice: {result.notices[-1]})" if result.notices else "")


@case("8 10,000 choices", "`answer(..., choices=[10,000 strings])`")
def _(d: Path) -> str:
    return _answer(d, "What color is the shape?", [f"choice {i}" for i in range(10_000)])


# ---- 9-12: wrong results reported as success -------------------------------------------------------------
@case("9 line separators in captions", "references holding \\r and U+2028 scored as their own results (PTB, "
      "METEOR, CIDEr)", timed=False)
def _(d: Path) -> str:
    from captioning.metrics import score_captions

    refs = {i: [f"a dog\rruns number {i}", f"a cat\u2028sits {i}", f"two birds {i}"] for i in range(5)}
    scores = score_captions(refs, {i: r[0] for i, r in refs.items()}, spice=False)
    return ", ".join(f"{k} {scores.metrics[k]:.3f}" for k in ("Bleu_1", "METEOR", "CIDEr") if k in scores.metrics)


def _two_folders(d: Path) -> None:
    for folder, colours in (("a", [(200, 30, 30), (30, 200, 30), (30, 30, 200)]), ("b", [(0, 0, 0)] * 3)):
        (d / folder).mkdir()
        for i, colour in enumerate(colours):
            make.photo(d / folder / f"{i}.jpg", colour, (64, 64))


@case("10 cache, same file names", "the feature cache of a folder reused for another folder with the same file "
      "names (all-black images)", _two_folders)
def _(d: Path) -> str:
    import torch

    from captioning.data.cache import FeatureCache
    from captioning.data.records import ImageRecord
    from captioning.encoders import create_encoder

    encoder = create_encoder("efficientnet_lite0", pretrained=False, image_size=64)
    for folder in ("a", "b"):
        records = [ImageRecord(str(i), d / folder / f"{i}.jpg", "test", ["x"]) for i in range(3)]
        cache = FeatureCache.build(encoder, records, d / "cache", num_workers=0, progress=False)
    fresh = [torch.allclose(cache[str(i)].float(), encoder.encode_pil([make.Image.open(d / "b" / f"{i}.jpg")])[0],
                            atol=1e-2) for i in range(3)]
    return f"{sum(fresh)} of 3 rows hold the new (black) images' features"


def _scaled_weights(d: Path) -> None:
    from safetensors.torch import load_file, save_file

    _with_checkpoint(d)
    tensors = load_file(d / "ckpt/model.safetensors")
    save_file({k: v * 1e30 if v.is_floating_point() else v for k, v in tensors.items()}, d / "ckpt/model.safetensors")


@case("11 weights x 1e30", "a checkpoint whose weights are multiplied by 1e30 (finite)", _scaled_weights)
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), _image(d))


def _permuted_vocab(d: Path) -> None:
    _with_checkpoint(d)
    data = json.loads((d / "ckpt/vocab.json").read_text())
    data["words"][4:] = data["words"][4:][::-1]
    (d / "ckpt/vocab.json").write_text(json.dumps(data))


@case("12 permuted vocabulary", "vocab.json of the right size with its words reordered", _permuted_vocab)
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), _image(d))


# ---- 13-16: promises about runs ---------------------------------------------------------------------------
@case("13 resume with dropout", "SIGTERM mid-epoch with dropout 0.3, then the same command again (the test)",
      timed=False)
def _(d: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
                           "tests/test_reliability_faults.py::test_a_signal_mid_epoch_saves_and_the_rerun_ends_"
                           "where_an_unbroken_run_ends[15-0.3]"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
    return f"weights equal to an unbroken run's to 1e-6 (tests/test_reliability_faults.py): {last}"


@case("14 two runs, one folder", "`captioning train --out RUN` while another run holds RUN", _with_dataset)
def _(d: Path) -> str:
    from captioning.training import run_folder_lock

    with run_folder_lock(d / "run"):
        return _train(d)


@case("15 disk full, feature cache", "`captioning train` while the disk is full (the cache's blocks cannot be "
      "allocated)", _with_dataset)
def _(d: Path) -> str:
    import errno

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    os.posix_fallocate = full
    return _train(d)


def _corrupt_photo(d: Path) -> None:
    _with_dataset(d)
    (d / "images/2.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


@case("16 data loader worker error", "`captioning train --num-workers 1` with a corrupt photo", _corrupt_photo)
def _(d: Path) -> str:
    return _train(d, "--num-workers", "1")


# ---- the minor cases, one line each --------------------------------------------------------------------
def _deep_json(d: Path) -> None:
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    make.coco_results(d / "res.json", {1: "a dog"})


@case("minor: JSON nested 10^5 deep", "an annotation file of 100,000 nested lists (`evaluate --results`)", _deep_json)
def _(d: Path) -> str:
    return cli("captioning", "evaluate", "--results", str(d / "res.json"), "--annotations", str(d / "deep.json"))


def _coco_case(captions: dict, results: dict) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        make.coco_captions(d / "captions.json", captions)
        make.coco_results(d / "res.json", results)
    return prepare


def _score(d: Path) -> str:
    return cli("captioning", "evaluate", "--results", str(d / "res.json"), "--annotations", str(d / "captions.json"),
               "--no-java")


@case("minor: every reference empty", "COCO annotations whose captions are all empty",
      _coco_case({1: ["", " "], 2: [""]}, {1: "a dog", 2: "a cat"}))
def _(d: Path) -> str:
    return _score(d)


@case("minor: a numeric reference", "a reference caption that is a number, with `--results`",
      _coco_case({1: [5, "a dog"]}, {1: "a dog"}))
def _(d: Path) -> str:
    return _score(d)


@case("minor: annotations file []", "an annotations file that is `[]`, with `--results`",
      lambda d: ((d / "captions.json").write_text("[]"), make.coco_results(d / "res.json", {1: "a dog"})))
def _(d: Path) -> str:
    return _score(d)


@case("minor: results for 1 of 60 images", "a results file captioning 1 of the 60 annotated images",
      _coco_case({i: ["a dog runs", "a brown dog"] for i in range(60)}, {3: "a dog runs"}))
def _(d: Path) -> str:
    err, out = io.StringIO(), io.StringIO()
    from captioning.cli import main

    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        main(["evaluate", "--results", str(d / "res.json"), "--annotations", str(d / "captions.json"), "--no-java"])
    return next(line for line in out.getvalue().splitlines() if "of the 60 images" in line)


@case("minor: not UTF-8", "an annotation file holding bytes that are not UTF-8",
      lambda d: (_with_dataset(d), (d / "dataset_tiny.json").write_bytes(b'{"images": [\xff\xfe]}')))
def _(d: Path) -> str:
    return _train(d)


@case("minor: --device meta", "`captioning caption --device meta`", _with_checkpoint)
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), _image(d), "--device", "meta")


def _api(d: Path, **options) -> str:
    from captioning import load_captioner
    from captioning.images import open_image

    model = load_captioner(d / "ckpt")
    images = options.pop("images", None) or [open_image(_image(d))]
    return raised(lambda: model.caption(images, **options)[0].text)


@case("minor: NaN temperature", "`caption(sample=True, temperature=nan)`", _with_checkpoint)
def _(d: Path) -> str:
    return _api(d, sample=True, temperature=math.nan)


@case("minor: beam_size 2.5 / '3'", "`caption(beam_size=2.5)` and `beam_size='3'`", _with_checkpoint)
def _(d: Path) -> str:
    return _api(d, beam_size=2.5) + " / " + _api(d, beam_size="3")


@case("minor: caption([None])", "`caption([None])`", _with_checkpoint)
def _(d: Path) -> str:
    return _api(d, images=[None])


@case("minor: sample=True with beam_size", "`caption(sample=True, beam_size=5)`", _with_checkpoint)
def _(d: Path) -> str:
    return _api(d, sample=True, beam_size=5)


def _truncated_trainer(d: Path) -> None:
    _with_dataset(d)
    make.tiny_checkpoint(d / "run/last")
    (d / "run/last/trainer.json").write_text('{"trainer": {"step": 3, "ep')
    (d / "run/last/trainer.safetensors").write_bytes(b"")


@case("minor: truncated trainer.json", "a run whose last/trainer.json was cut short, resumed", _truncated_trainer)
def _(d: Path) -> str:
    return _train(d)


def _not_files(d: Path) -> None:
    _with_checkpoint(d)
    os.mkfifo(d / "fifo.jpg")
    (d / "zero.jpg").symlink_to("/dev/zero")
    (d / "folder.jpg").mkdir()


@case("minor: FIFO, /dev/zero, folder as image", "`captioning caption` of a FIFO, a link to /dev/zero and a "
      "folder", _not_files)
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), *(str(d / n) for n in ("fifo.jpg", "zero.jpg", "folder.jpg")))


@case("minor: choices='cat'", "`answer(..., choices='cat')`")
def _(d: Path) -> str:
    return _answer(d, "What color is the shape?", "cat")


@case("minor: choices with None", "`answer(..., choices=['red', None])`")
def _(d: Path) -> str:
    return _answer(d, "What color is the shape?", ["red", None])


@case("minor: answer(max_len=0)", "`answer(..., max_len=0)`")
def _(d: Path) -> str:
    return _answer(d, "What color is the shape?", None, max_len=0)


@case("minor: 1,000 unknown-word choices", "1,000 choices made of words the answerer does not know")
def _(d: Path) -> str:
    return _answer(d, "What color is the shape?", [f"zq{i} xv{i}" for i in range(1000)])


@case("minor: checkpoint permissions", "a checkpoint saved under umask 022")
def _(d: Path) -> str:
    os.umask(0o022)
    folder = make.tiny_checkpoint(d / "ckpt")
    return ", ".join(f"{p.name} {p.stat().st_mode & 0o777:04o}" for p in (folder, *sorted(folder.iterdir())))


@case("minor: --lr -1", "`captioning train --lr -1`", _with_dataset)
def _(d: Path) -> str:
    return _train(d, "--lr", "-1")


@case("minor: --epochs 0", "`captioning train --epochs 0`", _with_dataset)
def _(d: Path) -> str:
    return _train(d, "--epochs", "0")


def _bad_exif(d: Path) -> None:
    _with_checkpoint(d)
    buffer = io.BytesIO()
    make.Image.new("RGB", (300, 200), "red").save(buffer, "JPEG", exif=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08"
                                                                  b"\x00\x05\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06")
    (d / "exif.jpg").write_bytes(buffer.getvalue())


@case("minor: damaged EXIF", "`captioning caption` of a JPEG whose EXIF block is cut short", _bad_exif)
def _(d: Path) -> str:
    return cli("captioning", "caption", str(d / "ckpt"), str(d / "exif.jpg"))


# ---- running -------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    name: str
    what: str
    line: str
    seconds: float
    peak_mib: float
    left_in_run: list[str]       # files the case added to RUN (a run folder it made or found)
    timed: bool = True

    @property
    def within_limits(self) -> bool:
        fast = not self.timed or self.seconds < LIMIT_SECONDS
        return fast and self.peak_mib < LIMIT_MIB and "\n" not in self.line


def child(name: str, folder: Path, prepare: bool) -> None:
    """Prepares or runs one case in this (fresh) process; a run prints its line, seconds and peak as JSON."""
    if prepare:
        CASES[name].prepare(folder)
        return
    import torch  # imported before the clock starts: start-up is not the case's cost

    torch.set_num_threads(1)
    start = time.perf_counter()
    line = CASES[name].run(folder)
    seconds = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # case 13's test process
    print(json.dumps({"line": line, "seconds": seconds, "peak_mib": max(peak_mib(), children)}))


def peak_mib() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh at exec (ru_maxrss keeps the peak of the
    process image before the exec, so a child forked from a big parent would report the parent's size)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()} if run.exists() else set()


def _spawn(item: Case, folder: Path, step: str) -> subprocess.CompletedProcess:
    """A fresh interpreter (the parent stays small: a child's peak memory counts the parent's at the fork)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), step, item.name, str(folder)], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False)


def run_case(item: Case) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        folder = Path(tmp)
        prepared = _spawn(item, folder, "--prepare")
        if prepared.returncode != 0:
            raise RuntimeError(f"{item.name}: could not prepare its inputs: {prepared.stderr[-500:]}")
        before = _files(folder / "run")
        done = _spawn(item, folder, "--child")
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"line": f"the child failed: {done.stderr.strip()[-300:]}", "seconds": math.nan,
                      "peak_mib": math.nan}
        stray = [line for line in done.stderr.splitlines() if "Warning" in line]
        line = (result["line"] + (f" [stderr: {stray[0][:120]}]" if stray else "")).replace(str(folder), "DIR")
        return Outcome(item.name, item.what, line, result["seconds"], result["peak_mib"],
                       sorted(_files(folder / "run") - before), item.timed)


def markdown(outcomes: list[Outcome]) -> str:
    rows = ["| case | input | what happens now | s | peak MiB | left in RUN |", "| --- | --- | --- | ---: | ---: | --- |"]
    for o in outcomes:
        line = o.line.replace("|", "\\|").replace("\t", " ")
        if len(line) > 300:
            line = f"{line[:220]} ... {line[-60:]}"
        left = ", ".join(o.left_in_run[:2]) + (f" (+{len(o.left_in_run) - 2})" if len(o.left_in_run) > 2 else "")
        seconds = f"{o.seconds:.2f}" + ("" if o.timed else " *")
        rows.append(f"| {o.name} | {o.what} | {line} | {seconds} | {o.peak_mib:.0f} | {left or '-'} |")
    return "\n".join(rows) + "\n\n\\* work that is meant to be done, not a refusal: not held to 5 s."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run only the cases whose names start with these")
    parser.add_argument("--json", help="also write the outcomes here")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--prepare", nargs=2, metavar=("NAME", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child or args.prepare:
        child(*(args.child or args.prepare)[:1], Path((args.child or args.prepare)[1]), prepare=bool(args.prepare))
        return 0
    chosen = [c for c in CASES.values() if not args.only or c.name.startswith(tuple(args.only))]
    if args.list:
        print("\n".join(f"{c.name}: {c.what}" for c in chosen))
        return 0
    outcomes = []
    for item in chosen:
        outcomes.append(run_case(item))
        print(f"{item.name}: {outcomes[-1].seconds:.2f} s, {outcomes[-1].peak_mib:.0f} MiB", file=sys.stderr)
    print(markdown(outcomes))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    broken = [o.name for o in outcomes if not o.within_limits]
    if broken:
        print(f"over the limits ({LIMIT_SECONDS:g} s, {LIMIT_MIB} MiB, one line): "
              f"{', '.join(broken)}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
