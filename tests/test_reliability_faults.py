"""Faults during training: `captioning train` killed with SIGKILL again and again (at random moments, while
a checkpoint folder is being written, between its renames) and rerun with the same command finishes
where it left off, with every checkpoint folder on disk loadable; a diverging run stops with one line
naming the step and leaves the last good checkpoint intact."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from captioning import load_captioner
from captioning.cli import main as captioning_cli
from captioning.data import write_shapes_dataset

EPOCHS, STEPS_PER_EPOCH = 4, 4  # 8 train images x 5 captions, batch 10 = 2 images x 5 captions
TINY_TRAIN = ["--image-size", "64", "--embed-dim", "16", "--hidden-dim", "32", "--attention-dim", "16",
              "--batch-size", "10", "--min-freq", "1", "--num-workers", "0", "--beam-size", "1", "--max-len", "8",
              "--dropout", "0", "--device", "cpu", "--seed", "1"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(root, splits=(8, 2, 2), image_size=64, seed=4)
    return root


# Children come from a fork server that imported torch and the trainer once: a fresh `python -m
# captioning.cli` pays ~5 s of imports per start on a loaded 2-core machine; a forked child starts at once.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["torch", "torch._dynamo", "torch.utils.tensorboard", "captioning.cli", "captioning.train",
                                 "captioning.evaluate", "captioning.metrics", "captioning.efficientnet_lite", "tqdm"])


def _train_child(argv: list[str], log: str) -> None:
    """`captioning train ARGV` with stdout and stderr appended to `log`; the exit code is the CLI's."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)
    code = captioning_cli(["train", *argv])
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def _start(argv: list[str], log: Path) -> multiprocessing.Process:
    process = _CONTEXT.Process(target=_train_child, args=(argv, str(log)), daemon=True)
    process.start()
    return process


def _wait_for(process: multiprocessing.Process, ready, timeout: float = 60.0, poll: float = 0.0005) -> bool:
    """Poll `ready()` until it holds (True) or the process ends / time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.is_alive():
        if ready():
            return True
        time.sleep(poll)
    return False


def _entries(run: Path, pattern: str) -> set[tuple[str, int, int]]:
    """(name, inode, ctime) of RUN's entries matching `pattern`: a folder made again under the same name differs."""
    try:
        return {(e.name, e.inode(), e.stat().st_ctime_ns) for e in os.scandir(run) if re.fullmatch(pattern, e.name)}
    except FileNotFoundError:
        return set()


def _step(run: Path) -> int:
    try:
        return json.loads((run / "last" / "trainer.json").read_text())["trainer"]["step"]
    except (OSError, ValueError):
        return 0


def _checkpoints_on_disk_are_sound(run: Path) -> int:
    """Every checkpoint folder a loader could pick loads; returns the trainer step of RUN/last (0: none)."""
    folders = []
    for name in ("last", "best"):
        # `.NAME.old` is what a kill between the two renames leaves; the loader falls back to it
        # only then. Otherwise it is the previous version being deleted, and may be partial.
        folder = run / name if (run / name).exists() else run / f".{name}.old"
        if folder.exists():
            folders.append(folder)
    for folder in folders:
        model = load_captioner(folder)                       # weights, config and vocabulary agree
        assert model.config.hidden_dim == 32
    if folders:
        load_captioner(run)                                  # what `captioning caption RUN` would load
    last = run / "last" if (run / "last").exists() else run / ".last.old"
    if not (last / "trainer.json").exists():
        return 0
    load_file(last / "trainer.safetensors")                  # optimizer state and RNG readable
    return json.loads((last / "trainer.json").read_text())["trainer"]["step"]


class _Trigger:
    """True once this launch is in its training loop at `from_step` or later and, with a `pattern`, a RUN
    entry matching it has (re)appeared since the launch."""

    def __init__(self, run: Path, log: Path, from_step: int, pattern: str | None):
        self.run, self.log, self.from_step, self.pattern = run, log, from_step, pattern
        self.launches = log.read_text().count("training on ")
        self.before = _entries(run, pattern) if pattern else set()
        self.armed = False

    def __call__(self) -> bool:
        if not self.armed:
            if self.log.read_text().count("training on ") == self.launches or _step(self.run) < self.from_step:
                return False
            self.armed = True
        return self.pattern is None or bool(_entries(self.run, self.pattern) - self.before)


WRITING, SWAPPING = r"\.last\..+\.tmp", r"\.last\.old"
KILLS = [  # (what, from which step on, RUN entry whose (re)appearance triggers the kill or None, random delay)
    ("at a random moment", 0, None, 0.6),
    ("while a checkpoint is written", 0, WRITING, 0.0),
    ("between the renames of a checkpoint swap", 7, SWAPPING, 0.0),
    ("while a checkpoint is written", 10, WRITING, 0.0),
]


def test_sigkill_again_and_again_then_rerun_finishes_where_it_left_off(shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run, log = tmp_path / "run", tmp_path / "train.log"
    argv = ["--annotations", str(shapes / "dataset_shapes.json"), "--images", str(shapes), "--out", str(run),
            "--cache-dir", str(shapes / "cache"), "--epochs", str(EPOCHS), "--checkpoint-every", "1", *TINY_TRAIN]
    rng = random.Random(7)
    log.touch()
    steps, starts, landed = [0], [], []
    for what, from_step, pattern, delay in KILLS:
        starts.append(_checkpoints_on_disk_are_sound(run))
        ready = _Trigger(run, log, from_step, pattern)
        process = _start(argv, log)
        if _wait_for(process, ready):
            time.sleep(rng.uniform(0, delay))
            os.kill(process.pid, signal.SIGKILL)
            landed.append(what)
        process.join(30)
        assert process.exitcode in (-signal.SIGKILL, 0), log.read_text()[-2000:]
        steps.append(_checkpoints_on_disk_are_sound(run))
        assert steps[-1] >= steps[-2], f"killed {what}: training went back from step {steps[-2]} to {steps[-1]}"
        if process.exitcode == 0:
            break
    assert len(landed) >= 3, f"only {len(landed)} kills landed ({landed}); the machine may be too slow"

    starts.append(_checkpoints_on_disk_are_sound(run))
    process = _start(argv, log)
    process.join(120)
    assert process.exitcode == 0, log.read_text()[-2000:]

    text = log.read_text()
    # every rerun that found a checkpoint continued from it, at its exact step (none restarted from scratch)
    resumed = [int(s) for s in re.findall(r"resuming .* at epoch \d+, step (\d+)", text)]
    assert resumed == [s for s in starts if s > 0], (resumed, starts)
    assert "Traceback" not in text and "error:" not in text
    meta = json.loads((run / "last" / "trainer.json").read_text())["trainer"]
    assert (meta["epoch"], meta["step"]) == (EPOCHS, EPOCHS * STEPS_PER_EPOCH)
    assert [h["epoch"] for h in meta["history"]] == list(range(1, EPOCHS + 1))
    assert [h["step"] for h in meta["history"]] == [STEPS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
    _checkpoints_on_disk_are_sound(run)
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"half-written or half-deleted folders of killed saves remain: {leftovers}"


def test_divergence_stops_with_one_line_and_keeps_the_last_good_checkpoint(shapes, tmp_path, capsys):
    """Epoch 1 trains normally; `--lr-decay 1e30` makes epoch 2's learning rate absurd, so the weights
    blow up and a later step's loss is not finite."""
    run = tmp_path / "run"
    argv = ["train", "--annotations", str(shapes / "dataset_shapes.json"), "--images", str(shapes), "--out", str(run),
            "--cache-dir", str(shapes / "cache"), "--epochs", "3", "--lr-decay", "1e30", *TINY_TRAIN]
    assert captioning_cli(argv) == 1
    captured = capsys.readouterr().err
    err = captured.split("\r")[-1]  # after the cleared progress bars
    assert err.count("\n") == 1 and "Traceback" not in captured, captured
    match = re.fullmatch(r"error: (loss|gradient norm) became (nan|inf|-inf) at step (\d+) \(epoch 2\); .*"
                         r"last good checkpoint is (\S+) .*\n", err)
    assert match, err
    assert STEPS_PER_EPOCH < int(match.group(3)) <= 2 * STEPS_PER_EPOCH
    assert Path(match.group(4)) == run / "last"
    meta = json.loads((run / "last" / "trainer.json").read_text())["trainer"]
    assert (meta["epoch"], meta["step"]) == (1, STEPS_PER_EPOCH)     # the end of epoch 1, untouched
    weights = load_file(run / "last" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    result = load_captioner(run).caption([Image.new("RGB", (64, 64), (240, 240, 240))], beam_size=1)[0]
    assert isinstance(result.text, str)


@pytest.mark.parametrize("signum, dropout", [(signal.SIGTERM, "0"), (signal.SIGINT, "0"), (signal.SIGTERM, "0.3")])
def test_a_signal_mid_epoch_saves_and_the_rerun_ends_where_an_unbroken_run_ends(shapes, tmp_path, monkeypatch,
                                                                                 capsys, signum, dropout):
    """SIGTERM (or Ctrl-C) arriving during step 2 of epoch 1: that step finishes, RUN/last is saved there with
    one line saying so, exit 130; the rerun resumes there and ends with the weights of an unbroken run, with
    dropout too (its masks come from the generator the checkpoint restores; the data loader no longer draws
    from it when the resumed epoch's iterator is made)."""
    from captioning.train import CaptionHooks

    common = ["train", "--annotations", str(shapes / "dataset_shapes.json"), "--images", str(shapes),
              "--cache-dir", str(shapes / "cache"), "--epochs", "2", *TINY_TRAIN, "--dropout", dropout]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert captioning_cli([*common, "--out", str(whole)]) == 0

    step, calls = CaptionHooks.step, []

    def step_with_a_signal(self, batch):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signum)  # handled between steps: this step still completes
        return step(self, batch)

    monkeypatch.setattr(CaptionHooks, "step", step_with_a_signal)
    capsys.readouterr()
    assert captioning_cli([*common, "--out", str(broken)]) == 130
    err = capsys.readouterr().err.split("\r")[-1]
    name = signal.Signals(signum).name
    assert err == f"error: stopped by {name} at step 2 (epoch 1); saved {broken / 'last'}: rerun the same command " \
                  "to resume\n", err
    meta = json.loads((broken / "last" / "trainer.json").read_text())["trainer"]
    assert (meta["step"], meta["step_in_epoch"], meta["epoch"]) == (2, 2, 0)
    assert signal.getsignal(signal.SIGTERM) is not None and signal.getsignal(signal.SIGINT) is signal.default_int_handler

    monkeypatch.setattr(CaptionHooks, "step", step)
    assert captioning_cli([*common, "--out", str(broken)]) == 0
    ours, theirs = load_file(broken / "last" / "model.safetensors"), load_file(whole / "last" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6, msg=key)


def test_sigterm_while_caching_features_keeps_what_was_encoded(tmp_path, monkeypatch, capsys):
    """As with Ctrl-C: the rows encoded so far are committed, one line says how many, exit 130; a rerun
    encodes only the rest."""
    from captioning.encoders import ImageEncoder

    root = tmp_path / "shapes"
    write_shapes_dataset(root, splits=(8, 2, 2), image_size=64, seed=4)
    argv = ["train", "--annotations", str(root / "dataset_shapes.json"), "--images", str(root), "--out",
            str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--epochs", "1", "--cache-batch-size", "2",
            *TINY_TRAIN]
    forward, calls = ImageEncoder.forward, []

    def forward_then_sigterm(self, pixels):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return forward(self, pixels)

    monkeypatch.setattr(ImageEncoder, "forward", forward_then_sigterm)
    assert captioning_cli(argv) == 130
    err = capsys.readouterr().err
    match = re.search(r"interrupted: (\d+) of 12 images encoded into (\S+); a rerun encodes the rest", err)
    assert match and "error: interrupted" in err, err
    index = json.loads((Path(match.group(2)) / "index.json").read_text())
    assert len(index["ids"]) == int(match.group(1)) >= 4
    monkeypatch.setattr(ImageEncoder, "forward", forward)
    calls.clear()
    assert captioning_cli(argv) == 0
    assert len(json.loads((Path(match.group(2)) / "index.json").read_text())["ids"]) == 12


def test_an_epoch_resumed_after_its_last_step_logs_no_loss_not_zero(shapes, tmp_path, monkeypatch, capsys):
    from captioning.train import CaptionHooks

    argv = ["train", "--annotations", str(shapes / "dataset_shapes.json"), "--images", str(shapes), "--out",
            str(tmp_path / "run"), "--cache-dir", str(shapes / "cache"), "--epochs", "1", *TINY_TRAIN]
    step, calls = CaptionHooks.step, []

    def signal_at_the_last_step(self, batch):
        calls.append(1)
        if len(calls) == STEPS_PER_EPOCH:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, batch)

    monkeypatch.setattr(CaptionHooks, "step", signal_at_the_last_step)
    assert captioning_cli(argv) == 130
    monkeypatch.setattr(CaptionHooks, "step", step)
    capsys.readouterr()
    assert captioning_cli(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"epoch 1/1  loss -  nll -  ", out) and "loss 0.0000" not in out, out
    history = json.loads((tmp_path / "run" / "last" / "trainer.json").read_text())["trainer"]["history"]
    assert history[-1]["loss"] is None


def test_a_crash_mid_epoch_then_rerun_ends_with_the_weights_of_an_unbroken_run(shapes, tmp_path, monkeypatch):
    """Killed (here: a crash inside step 3) after the periodic checkpoint of step 2: the rerun resumes from
    it (data order and RNG states are in the checkpoint) and ends identical to a run never killed."""
    from captioning.train import CaptionHooks

    common = ["train", "--annotations", str(shapes / "dataset_shapes.json"), "--images", str(shapes),
              "--cache-dir", str(shapes / "cache"), "--epochs", "2", "--checkpoint-every", "2", *TINY_TRAIN]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert captioning_cli([*common, "--out", str(whole)]) == 0
    step, calls = CaptionHooks.step, []

    def crash_in_step_3(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return step(self, batch)

    monkeypatch.setattr(CaptionHooks, "step", crash_in_step_3)
    assert captioning_cli([*common, "--out", str(broken)]) == 1
    assert json.loads((broken / "last" / "trainer.json").read_text())["trainer"]["step"] == 2
    monkeypatch.setattr(CaptionHooks, "step", step)
    assert captioning_cli([*common, "--out", str(broken)]) == 0
    ours, theirs = load_file(broken / "last" / "model.safetensors"), load_file(whole / "last" / "model.safetensors")
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6, msg=key)
