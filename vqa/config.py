"""Typed configuration: the model (`AnswererConfig`, saved in every checkpoint) and a training run
(`TrainConfig`, saved flat as RUN/config.yaml, itself a valid `--config`).

Keys are flat, as in `captioning train`: `hidden_dim`, `reinforce_samples`, `batch_size`; each is
also a command-line flag (`--hidden-dim`). Precedence: built-in defaults < the run folder's saved
config (when resuming) < `--config` YAML < command line."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import typing
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from captioning.config import ModelConfig
from captioning.train_config import read_yaml_mapping

TASKS = ("telling", "pointing")


class QATask(str, Enum):
    """What a QA model answers with: words (telling) or one of four boxes (pointing)."""

    TELLING = "telling"
    POINTING = "pointing"


FORMATS = ("visual7w", "easy-vqa", "shapes")
SELECT_METRICS = ("mc", "open")
RUN_CONFIG = "config.yaml"


@dataclass
class AnswererConfig(ModelConfig):
    """The captioning decoder's hyperparameters plus what question answering adds."""

    max_len: int = 8                    # longest answer generated (open-ended), and kept in training
    doubly_stochastic: float = 0.0      # Visual7W uses no attention regulariser
    visual_dim: int | None = None       # project the encoder grid to this many channels first (None: as is)
    task: str = "telling"               # telling: answers are words | pointing: answers are boxes
    max_question_len: int = 24          # longer questions are truncated (with a notice)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        for name in ("max_question_len", "max_len", "embed_dim", "hidden_dim", "attention_dim", "visual_dim"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class TrainConfig:
    format: str = "visual7w"            # visual7w | easy-vqa | shapes, or several joined by "+"
    annotations: str | None = None      # annotation JSON (visual7w, shapes)
    images: str | None = None           # images folder (visual7w, shapes)
    skip_invalid: bool = False          # skip (and count) malformed entries, duplicate ids, missing images
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_grad: float = 5.0              # max gradient norm (0: no clipping)
    patience: int = 5                   # epochs without a better validation score before stopping (0: never)
    select_metric: str = "mc"           # mc | open: the validation accuracy that picks RUN/best
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    min_freq: int = 1                   # words seen fewer times in the training text become <unk>
    val_holdout: float = 0.1            # share of training images held out where a source has no val split
    choices_seed: int = 0               # seed of sampled wrong answers (easy-VQA)
    beam_size: int = 1                  # beam size of open-ended validation (1: greedy)
    limit: int | None = None            # use at most this many training questions (quick runs)
    cache_dir: str | None = None        # encoder feature cache (default: RUN/features)
    num_workers: int = 0                # image-decoding workers while caching features
    model: AnswererConfig = field(default_factory=AnswererConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = AnswererConfig.from_dict(self.model)
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ValueError(f"unknown format {self.format!r}; choose from {', '.join(FORMATS)} "
                             "(or several joined by '+', e.g. easy-vqa+shapes)")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"select_metric must be one of {', '.join(SELECT_METRICS)}, got {self.select_metric!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.beam_size < 1:
            raise ValueError("epochs must be >= 0, batch_size and beam_size >= 1, lr > 0")
        if not 0 <= self.val_holdout < 1:
            raise ValueError(f"val_holdout must be in [0, 1), got {self.val_holdout}")

    @property
    def formats(self) -> list[str]:
        return [f for f in self.format.split("+") if f]


# Keys a resumed run may change; any other must match the run folder's saved config.
RESUMABLE = {"annotations", "images", "skip_invalid", "epochs", "patience", "device", "cache_dir", "num_workers",
             "beam_size"}


# ---- flat keys ---------------------------------------------------------------------------------
def _leaves(cls: type, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted path, type, default) of every leaf field; nested dataclasses are flattened."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += _leaves(type(default), f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", hints[f.name], default))
    return out


def _flat_name(path: str) -> str:
    """model.hidden_dim -> hidden_dim, model.reinforce.samples -> reinforce_samples."""
    return path.removeprefix("model.").replace(".", "_")


KEYS: dict[str, tuple[str, Any, Any]] = {_flat_name(p): (p, t, d) for p, t, d in _leaves(TrainConfig)}


def _base_type(kind: Any) -> type:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


def _coerce(key: str, value: Any, where: str) -> Any:
    """A YAML value checked and converted like the command line would."""
    path, kind, _ = KEYS[key]
    if value is None:
        if type(None) not in typing.get_args(kind):
            raise ValueError(f"{where}: {key} cannot be empty")
        return None
    base = _base_type(kind)
    if base is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if base is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or (base is int and not isinstance(value, int)) or \
            (base is float and not isinstance(value, (int, float))):
        raise ValueError(f"{where}: {key} must be {base.__name__}, got {value!r}")
    return base(value)


def to_flat(config: TrainConfig) -> dict[str, Any]:
    data = asdict(config)
    out = {}
    for key, (path, _, _) in KEYS.items():
        node = data
        for part in path.split("."):
            node = node[part]
        out[key] = node
    return out


def from_flat(values: dict[str, Any]) -> TrainConfig:
    nested: dict[str, Any] = {}
    for key, value in values.items():
        parts = KEYS[key][0].split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return TrainConfig(**nested)


# ---- YAML and command line ---------------------------------------------------------------------
HELP = {
    "format": "data: visual7w | easy-vqa | shapes, or several joined by '+' (easy-vqa+shapes)",
    "annotations": "Visual7W dataset_v7w_<task>.json, or a shapes dataset_shapes.json",
    "images": "images folder (Visual7W: the folder of v7w_*.jpg; shapes: the dataset root)",
    "skip_invalid": "skip malformed entries, duplicate ids and missing images (counted) instead of stopping",
    "select_metric": "validation accuracy that picks RUN/best: mc (multiple choice) or open (generated answer)",
    "limit": "train on at most this many questions (quick runs)",
    "cache_dir": "encoder feature cache (default: RUN/features); share it between runs",
    "val_holdout": "share of training images held out for validation when a source has no val split",
    "beam_size": "beam size of open-ended validation (1: greedy)",
    "visual_dim": "project the encoder grid to this many channels before attention (default: as is)",
    "task": "telling (answers are words) or pointing (answers are boxes)",
    "max_len": "longest answer in words (generation, and training truncation)",
    "max_question_len": "questions are truncated to this many words",
    "fine_tune_blocks": "top encoder blocks to train (0: frozen encoder, cached features)",
    "attention": "soft (deterministic) or hard (stochastic, REINFORCE)",
    "lr": "Adam learning rate",
    "clip_grad": "clip the gradient norm to this (0: no clipping)",
    "patience": "stop after this many epochs without a better validation score (0: never)",
    "device": "auto (cuda when available), cpu, cuda or cuda:N",
    "choices_seed": "seed of the sampled wrong answers of easy-VQA questions",
    "num_workers": "image-decoding worker processes while caching features",
}


def _choices() -> dict[str, tuple[str, ...]]:
    from captioning.cells import GATES
    from captioning.config import ATTENTION_KINDS, HARD_INFERENCE
    from captioning.encoders import list_encoders

    return {"select_metric": SELECT_METRICS, "attention": ATTENTION_KINDS, "hard_inference": HARD_INFERENCE,
            "cell": tuple(GATES), "task": TASKS, "encoder": tuple(list_encoders())}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per key; unset flags stay out of the namespace so they never override the YAML."""
    group = parser.add_argument_group("configuration (every key of a --config YAML file, with underscores)")
    choices = _choices()
    for key, (_, kind, default) in KEYS.items():
        flag = "--" + key.replace("_", "-")
        text = HELP.get(key, key.replace("_", " ")) + (f" (default: {default})" if default is not None else "")
        base = _base_type(kind)
        if base is bool:
            group.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
        else:
            group.add_argument(flag, dest=key, type=base, default=argparse.SUPPRESS, choices=choices.get(key),
                               metavar=base.__name__.upper() if key not in choices else None, help=text)


def given(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k in KEYS}


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    data = read_yaml_mapping(path)
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(k for k in data if k not in KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)} (valid: {', '.join(KEYS)})")
    return {k: _coerce(k, v, str(path)) for k, v in data.items()}


def write_run_config(run_dir: Path, config: TrainConfig) -> Path:
    import yaml

    path = Path(run_dir) / RUN_CONFIG
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# resolved training config; `vqa train --config` accepts this file\n")
        yaml.safe_dump(to_flat(config), fh, sort_keys=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def resolve_config(run_dir: Path, yaml_path: str | None, overrides: dict[str, Any], resuming: bool) -> TrainConfig:
    """Defaults < saved run config < YAML < command line; paths absolute; resume-safety checked."""
    saved_path = run_dir / RUN_CONFIG
    saved = read_yaml(saved_path) if saved_path.is_file() else {}
    values = {**to_flat(TrainConfig()), **saved}
    if yaml_path:
        values.update(read_yaml(yaml_path))
    values.update(overrides)
    for key in ("annotations", "images", "cache_dir"):
        if values[key] is not None:
            values[key] = str(Path(values[key]).expanduser().absolute())
    if resuming and saved:
        changed = [f"{k}={saved[k]!r} (now {values[k]!r})" for k in saved
                   if k not in RESUMABLE and values.get(k) != saved[k]]
        if changed:
            raise ValueError(f"{run_dir} holds a run trained with {', '.join(changed)}; rerun with the same "
                             "settings to resume, or pick a new --out")
    return from_flat(values)
