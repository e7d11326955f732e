"""The shared training library on its own: the device resolver, the typed-config schema and the
Trainer's hooks (best/last saves, early stopping, the NaN stop, resume) on a toy regression."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from captioning import checkpoint as ckpt
from captioning.engine.device import resolve_device
from captioning.training import (
    ConfigSchema,
    Hooks,
    Trainer,
    TrainerSettings,
    TrainingError,
    Validation,
    can_resume,
    finished_message,
)


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu") and resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^--device cuda:1: CUDA is not available on this machine \(use --device cpu\)$"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("gpu")


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Inner:
    depth: int = 2
    colour: Colour = Colour.RED


@dataclass
class Outer:
    name: str | None = None
    rate: float = 0.1
    flag: bool = True
    model: Inner = field(default_factory=Inner)

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = Inner(**self.model)


def test_schema_flags_yaml_and_precedence(tmp_path):
    schema = ConfigSchema(Outer, resumable={"rate"}, path_keys=("name",))
    assert list(schema.keys) == ["name", "rate", "flag", "depth", "colour"]
    parser = argparse.ArgumentParser()
    schema.add_arguments(parser)
    args = parser.parse_args(["--depth", "5", "--no-flag", "--colour", "blue"])
    (tmp_path / "c.yaml").write_text("rate: 1e-3\ndepth: 3\nname: data\n")
    config = schema.resolve(tmp_path / "run", tmp_path / "c.yaml", schema.given(args), resuming=False)
    assert config.rate == pytest.approx(1e-3) and config.model.depth == 5 and config.flag is False
    assert config.model.colour == "blue" and Path(config.name).is_absolute()
    (tmp_path / "run").mkdir()
    schema.write(tmp_path / "run", config)
    assert schema.read_yaml(tmp_path / "run" / "config.yaml")["colour"] == "blue"  # an enum saved as its value
    with pytest.raises(ValueError, match=r"depth=5 \(now 4\)"):
        schema.resolve(tmp_path / "run", None, {"depth": 4}, resuming=True)
    assert schema.resolve(tmp_path / "run", None, {"rate": 0.5}, resuming=True).rate == 0.5
    for text, message in (("colour: green\n", "invalid colour 'green' \\(choose from red, blue\\)"),
                          ("depth: 2.5\n", "depth must be int"), ("flag: 1\n", "true or false"),
                          ("rate: null\n", "rate cannot be empty"), ("nope: 1\n", "unknown key")):
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(ValueError, match=message):
            schema.read_yaml(tmp_path / "bad.yaml")


@dataclass
class Out:
    loss: torch.Tensor
    nll: torch.Tensor


class Regression(Hooks):
    """y = 3x: validation scores a fixed sequence, so the best epoch and early stopping are known."""

    def __init__(self, model, scores, poison_at=None):
        self.model, self.scores, self.poison_at = model, list(scores), poison_at
        self.saved: list[tuple[str, int, float | None]] = []
        self.x = torch.linspace(-1, 1, 8).unsqueeze(1)

    def batches(self, epoch, done):
        return [[0, 1, 2, 3], [4, 5, 6, 7]][done:]

    def step(self, batch):
        x = self.x[batch]
        loss = ((self.model(x) - 3 * x) ** 2).mean()
        if self.poison_at is not None and len(self.saved) >= self.poison_at:
            loss = loss * math.nan
        return Out(loss, loss)

    def validate(self):
        score = self.scores.pop(0)
        return Validation(score, f"val {score}", {"val/score": score}, {}, {"val": score})

    def save(self, folder, state, validation, extra_files):
        self.saved.append((folder.name, state.epoch, validation.score if validation else None))
        self.model_save(folder, extra_files)

    def model_save(self, folder, extra_files):
        folder.mkdir(parents=True, exist_ok=True)
        for name in (ckpt.CONFIG, ckpt.VOCAB):
            (folder / name).write_text("{}")
        save_file(dict(self.model.state_dict()), str(folder / ckpt.WEIGHTS))
        for name, data in (extra_files or {}).items():
            (folder / name).write_bytes(data)


def _trainer(tmp_path, hooks, epochs=5, patience=2):
    optimizer = torch.optim.Adam(hooks.model.parameters(), lr=0.1)
    settings = TrainerSettings(epochs=epochs, patience=patience, clip_grad=1.0)
    return Trainer(hooks, hooks.model, optimizer, settings, tmp_path / "run", device=torch.device("cpu"))


def test_trainer_best_last_and_early_stopping(tmp_path, capsys):
    hooks = Regression(torch.nn.Linear(1, 1), [0.1, 0.3, 0.2, 0.25, 0.9])
    state = _trainer(tmp_path, hooks).fit()
    assert state.epoch == 4 and state.step == 8 and state.stopped_early  # 2 epochs without beating 0.3
    assert state.best_score == 0.3 and state.best_epoch == 2
    assert [s for s in hooks.saved if s[0] == "best"] == [("best", 1, 0.1), ("best", 2, 0.3)]
    assert [s[1] for s in hooks.saved if s[0] == "last"] == [1, 2, 3, 4]
    assert [h["val"] for h in state.history] == [0.1, 0.3, 0.2, 0.25]
    assert can_resume(tmp_path / "run" / "last")
    assert "already finished" in finished_message(tmp_path / "run", 5, 2, "val")
    assert finished_message(tmp_path / "run", 5, 3, "val") is None  # more patience: it can go on
    resumed = Regression(torch.nn.Linear(1, 1), [0.5])
    trainer = _trainer(tmp_path, resumed, epochs=5, patience=3)
    assert trainer.resume().epoch == 4
    assert trainer.fit().best_score == 0.5 and trainer.state.epoch == 5
    assert "early stopping" in capsys.readouterr().out


def test_trainer_nan_stop_names_the_last_checkpoint(tmp_path):
    hooks = Regression(torch.nn.Linear(1, 1), [0.1, 0.2], poison_at=2)  # after epoch 1's best and last
    with pytest.raises(TrainingError, match=r"loss became nan at step 3 \(epoch 2\).*the last good checkpoint is"):
        _trainer(tmp_path, hooks).fit()
    early = Regression(torch.nn.Linear(1, 1), [0.1], poison_at=0)
    with pytest.raises(TrainingError, match="no checkpoint was written"):
        _trainer(tmp_path / "b", early).fit()



class HalvingSchedule(Regression):
    """The schedule halves the learning rate every epoch (0.1, 0.05, 0.025)."""

    def start_epoch(self, epoch, optimizer):
        for group in optimizer.param_groups:
            group["lr"] = 0.1 * 0.5 ** epoch


def test_warmup_ramps_the_schedule_and_resumes_on_the_same_ramp(tmp_path):
    """warmup_steps 3 over 2 steps an epoch: 1/3, 2/3 of epoch 0's 0.1, then 3/3 of epoch 1's 0.05; the rest as
    scheduled. A run stopped after epoch 1 and resumed takes the same rates."""
    rates = []

    def trainer(scores, root, epochs, resume=False):
        hooks = HalvingSchedule(torch.nn.Linear(1, 1), scores)
        optimizer = torch.optim.Adam(hooks.model.parameters(), lr=0.1)
        t = Trainer(hooks, hooks.model, optimizer, TrainerSettings(epochs=epochs, warmup_steps=3), root / "run",
                    device=torch.device("cpu"))
        if resume:
            t.resume()
        step = optimizer.step
        optimizer.step = lambda *a, **k: (rates.append(optimizer.param_groups[0]["lr"]), step(*a, **k))[1]
        return t

    trainer([0.1, 0.2, 0.3], tmp_path / "a", 3).fit()
    assert rates == pytest.approx([0.1 / 3, 0.2 / 3, 0.05, 0.05, 0.025, 0.025])
    trainer([0.1], tmp_path / "b", 1).fit()
    rates.clear()
    trainer([0.2, 0.3], tmp_path / "b", 3, resume=True).fit()
    assert rates == pytest.approx([0.05, 0.05, 0.025, 0.025])
