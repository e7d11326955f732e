"""`captioning train` end to end on a tiny shapes set: run folder, resume (also after kill -9), NaN stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from captioning import load_captioner
from captioning.data import write_shapes_dataset
from captioning.decoder import ShowAttendTellDecoder
from captioning.train import main
from captioning.train_config import get_args_parser, read_yaml
from captioning.training import TrainerState, TrainingError, load_state, state_files

ROOT = Path(__file__).resolve().parents[1]
# 8 train images x 5 captions, batch 10 = 2 images x their 5 captions (the default): 4 steps per epoch.
STEPS_PER_EPOCH = 4


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--annotations", str(data / "dataset_shapes.json"), "--images", str(data), "--out", str(out),
            "--cache-dir", str(data / "cache"), "--image-size", "64", "--embed-dim", "16", "--hidden-dim", "32",
            "--attention-dim", "16", "--batch-size", "10", "--min-freq", "1", "--num-workers", "0",
            "--beam-size", "1", "--max-len", "12", "--epochs", "2", "--dropout", "0", *extra]


def make_tiny_dataset(folder: Path) -> Path:
    write_shapes_dataset(folder, splits=(8, 2, 2), image_size=64, seed=1)
    return folder


_SHARED: dict[str, Path] = {}


def shared_data(tmp_path_factory) -> Path:
    """One tiny dataset (and feature cache) for the whole test session."""
    if "data" not in _SHARED:
        _SHARED["data"] = make_tiny_dataset(tmp_path_factory.mktemp("shapes"))
    return _SHARED["data"]


def shared_run(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny trained run for the session: evaluate and CLI tests read it (and add only RUN/eval)."""
    if "run" not in _SHARED:
        data = shared_data(tmp_path_factory)
        _SHARED["run"] = tmp_path_factory.mktemp("shared") / "run"
        train(*tiny_args(data, _SHARED["run"], "--epochs", "1"))
    return _SHARED["run"], _SHARED["data"]


@pytest.fixture
def data(tmp_path_factory) -> Path:
    return shared_data(tmp_path_factory)


def train(*argv: str):
    return main(get_args_parser().parse_args(list(argv)))


def test_run_folder_resume_and_finish(data, tmp_path, capsys):
    run = tmp_path / "run"
    state = train(*tiny_args(data, run, "--epochs", "1"))
    assert (state.epoch, state.step) == (1, STEPS_PER_EPOCH)
    for name in ("config.yaml", "vocab.json", "best/model.safetensors", "last/model.safetensors",
                 "last/trainer.json", "last/trainer.safetensors"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert read_yaml(run / "config.yaml")["hidden_dim"] == 32
    tensors = load_file(run / "last" / "trainer.safetensors")  # no pickle anywhere
    assert any(k.startswith("optimizer.") for k in tensors) and "rng.torch" in tensors
    meta = json.loads((run / "last" / "trainer.json").read_text())
    assert meta["trainer"]["epoch"] == 1 and len(meta["trainer"]["history"]) == 1
    assert load_captioner(run).config.hidden_dim == 32

    capsys.readouterr()
    state = train(*tiny_args(data, run))  # same run, 2 epochs: resumes at epoch 2
    assert "resuming" in capsys.readouterr().out
    assert (state.epoch, state.step, len(state.history)) == (2, 2 * STEPS_PER_EPOCH, 2)
    train(*tiny_args(data, run))
    assert "already finished" in capsys.readouterr().out
    with pytest.raises(ValueError, match="hidden_dim=32"):
        train(*tiny_args(data, run, "--hidden-dim", "48"))


def test_optimizer_state_round_trip(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    for name, content in state_files(opt, TrainerState(step=7, best_score=0.5)).items():
        (tmp_path / name).write_bytes(content)
    expected = torch.rand(3)  # the RNG state was saved before this draw
    fresh = torch.optim.Adam(net.parameters(), lr=5.0)
    state = load_state(tmp_path, fresh, restore_rng=True)
    assert torch.equal(torch.rand(3), expected)
    assert (state.step, state.best_score) == (7, 0.5) and fresh.param_groups[0]["lr"] == 1e-3
    for p in net.parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(fresh.state[p][key], opt.state[p][key])


def test_resume_after_kill_9_mid_epoch(data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = tiny_args(data, run, "--checkpoint-every", "1")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([sys.executable, "-m", "captioning.cli", "train", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (run / "last" / "trainer.json").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((run / "last" / "trainer.json").read_text())["trainer"]["step"]
    assert killed_at < 2 * STEPS_PER_EPOCH
    capsys.readouterr()
    state = train(*argv)
    assert "resuming" in capsys.readouterr().out
    # The epoch order is seeded, so a mid-epoch resume skips exactly the batches already done.
    assert (state.epoch, state.step) == (2, 2 * STEPS_PER_EPOCH)


def test_nan_loss_stops_naming_the_step(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    calls = {"n": 0}
    forward = ShowAttendTellDecoder.forward

    def poisoned(self, features, captions):
        out = forward(self, features, captions)
        calls["n"] += 1
        if calls["n"] == STEPS_PER_EPOCH + 2:  # second step of epoch 2
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(ShowAttendTellDecoder, "forward", poisoned)
    with pytest.raises(TrainingError, match=f"nan at step {STEPS_PER_EPOCH + 2} "):
        train(*tiny_args(data, run))
    meta = json.loads((run / "last" / "trainer.json").read_text())["trainer"]
    assert meta["epoch"] == 1  # the epoch-1 checkpoint is intact
    weights = load_file(run / "last" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


def test_hard_attention_gru_fine_tuned_from_pixels(data, tmp_path):
    run = tmp_path / "run"
    state = train(*tiny_args(data, run, "--attention", "hard", "--cell", "gru", "--num-layers", "2",
                             "--fine-tune-blocks", "1", "--epochs", "1", "--no-gate", "--batch-size", "20"))
    assert state.epoch == 1
    assert not (run / "features").exists()  # fine-tuning reads pixels, not the cache
    model = load_captioner(run / "best")
    assert model.config.attention == "hard" and model.config.cell == "gru" and not model.encoder.frozen
    assert any(k.startswith("encoder.") for k in load_file(run / "best" / "model.safetensors"))


def test_skip_invalid_trains_without_a_corrupt_image(tmp_path, capsys):
    """--skip-invalid leaves an existing but truncated image out of the cache and out of training."""
    data = make_tiny_dataset(tmp_path / "shapes")
    victim = sorted((data / "images").glob("*.png"))[0]  # image 0: a training image
    victim.write_bytes(victim.read_bytes()[:200])
    args = tiny_args(data, tmp_path / "run", "--epochs", "1", "--captions-per-image", "1", "--batch-size", "8")
    with pytest.raises(Exception, match=victim.name):
        train(*args)
    state = train(*args, "--skip-invalid")
    assert "training on 7 images (35 captions)" in capsys.readouterr().out
    assert state.epoch == 1 and state.step == 5  # 35 captions, batch 8
