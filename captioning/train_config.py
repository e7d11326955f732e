"""Training options. One argument parser defines every key: its command-line flag (`--hidden-dim`),
its YAML key (`hidden_dim`) and its type; the built-in defaults live in `TRAIN_DEFAULTS` and in
`ModelConfig`. Precedence: built-in defaults < the run folder's saved config (when resuming) <
`--config` YAML < command line. The resolved config is saved flat as RUN/config.yaml, which is itself
a valid `--config`."""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from .config import ATTENTION_KINDS, HARD_INFERENCE, ModelConfig, ReinforceConfig
from .encoders import list_encoders

RUN_CONFIG = "config.yaml"

TRAIN_DEFAULTS: dict[str, Any] = {
    # data
    "annotations": None, "images": None, "format": "auto", "skip_invalid": False, "cache_dir": None,
    "min_freq": 5, "val_holdout": 0.05,
    # optimisation and validation
    "epochs": 20, "batch_size": 64, "captions_per_image": 5, "lr": 4e-4, "encoder_lr": 1e-4, "lr_decay": 1.0,
    "weight_decay": 0.0, "clip_grad": 5.0,
    "patience": 5, "seed": 0, "beam_size": 3, "val_max_images": 0,
    # machinery
    "device": None, "amp": True, "num_workers": 2, "cache_batch_size": 64, "checkpoint_every": 0, "log_every": 50,
}

# Keys a resumed run may change; any other key must match the run folder's saved config.
RESUMABLE = {"annotations", "images", "skip_invalid", "cache_dir", "epochs", "patience", "beam_size",
             "val_max_images", "device", "amp", "num_workers", "cache_batch_size", "checkpoint_every", "log_every"}
PATH_KEYS = ("annotations", "images", "cache_dir")


def model_defaults() -> dict[str, Any]:
    model = ModelConfig().to_dict()
    reinforce = model.pop("reinforce")
    return {**model, **{f"reinforce_{k}": v for k, v in reinforce.items()}}


def default_config() -> dict[str, Any]:
    return {**TRAIN_DEFAULTS, **model_defaults()}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a Show, Attend and Tell captioner.", add_help=add_help,
                                     argument_default=argparse.SUPPRESS)
    defaults = default_config()
    flag = argparse.BooleanOptionalAction

    def add(group: argparse._ArgumentGroup, name: str, help: str, **kw: Any) -> None:
        default = defaults[name.replace("-", "_")]
        group.add_argument(f"--{name}", help=f"{help} (default: {default})", **kw)

    run = parser.add_argument_group("run")
    run.add_argument("--out", required=True, help="run folder: config, vocabulary, checkpoints, logs")
    run.add_argument("--config", help="YAML file of option defaults (keys as below, with underscores)")

    g = parser.add_argument_group("data")
    add(g, "annotations", "Karpathy split file (dataset_coco.json) or COCO captions_*.json")
    add(g, "images", "image root folder")
    add(g, "format", "annotation format (auto: from the file name, else its keys)", choices=("karpathy", "coco", "auto"))
    add(g, "skip-invalid", "skip malformed entries and missing images instead of stopping", action=flag)
    add(g, "cache-dir", "encoder feature cache folder (default: RUN/features)")
    add(g, "min-freq", "keep words seen at least this often in the training captions", type=int)
    add(g, "val-holdout", "share of training images held out when the annotations have no val split",
        type=float)

    g = parser.add_argument_group("model")
    add(g, "encoder", "image encoder", choices=list_encoders())
    add(g, "image-size", "encoder input size in pixels (default: the encoder's own)", type=int)
    add(g, "grid-size", "attention grid side (default: the encoder's natural conv grid)", type=int)
    add(g, "fine-tune-blocks", "top encoder blocks to train (0: frozen encoder, cached features)", type=int)
    add(g, "attention", "soft (deterministic) or hard (stochastic, REINFORCE)", choices=ATTENTION_KINDS)
    add(g, "hard-inference", "how hard attention attends at test time", choices=HARD_INFERENCE)
    add(g, "cell", "recurrent cell", choices=("lstm", "gru", "rnn"))
    add(g, "num-layers", "recurrent layers", type=int)
    add(g, "embed-dim", "word embedding size", type=int)
    add(g, "hidden-dim", "recurrent state size", type=int)
    add(g, "attention-dim", "attention MLP size", type=int)
    add(g, "dropout", "dropout before the output layer", type=float)
    add(g, "deep-output", "deep output layer (paper eq. 7)", action=flag)
    add(g, "gate", "gating scalar beta on the context", action=flag)
    add(g, "max-len", "longest caption in words (training truncation and decoding)", type=int)
    add(g, "doubly-stochastic", "lambda of the doubly stochastic attention penalty", type=float)
    for f in fields(ReinforceConfig):
        add(g, f"reinforce-{f.name.replace('_', '-')}", f"hard attention REINFORCE: {f.name.replace('_', ' ')}",
            type=int if f.type in ("int", int) else float)

    g = parser.add_argument_group("optimisation")
    add(g, "epochs", "training epochs", type=int)
    add(g, "batch-size", "captions per batch (per process under torchrun)", type=int)
    add(g, "captions-per-image", "captions of one image per batch, sharing its grid's attention projection and "
        "reads: batch-size // this images per batch (1: independent (image, caption) pairs)", type=int)
    add(g, "lr", "Adam learning rate of the decoder", type=float)
    add(g, "encoder-lr", "Adam learning rate of fine-tuned encoder blocks", type=float)
    add(g, "lr-decay", "multiply the learning rates by this after every epoch (1: constant)", type=float)
    add(g, "weight-decay", "Adam weight decay", type=float)
    add(g, "clip-grad", "clip the gradient norm to this (0: no clipping)", type=float)
    add(g, "patience", "stop after this many epochs without a better val BLEU-4 (0: never)", type=int)
    add(g, "seed", "random seed", type=int)
    add(g, "beam-size", "beam size of validation decoding (1: greedy)", type=int)
    add(g, "val-max-images", "validate on at most this many val images (0: all)", type=int)

    g = parser.add_argument_group("machinery")
    add(g, "device", "cpu or cuda (default: cuda when available)")
    add(g, "amp", "bf16 autocast on CUDA (never on CPU)", action=flag)
    add(g, "num-workers", "data loader worker processes", type=int)
    add(g, "cache-batch-size", "images per batch when building the feature cache", type=int)
    add(g, "checkpoint-every", "also save RUN/last every N steps (0: at epoch ends only)", type=int)
    add(g, "log-every", "TensorBoard scalars every N steps", type=int)
    return parser


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest in default_config()}


def _coerce(action: argparse.Action, value: Any, where: str) -> Any:
    """A YAML value checked and converted like the command line would."""
    if value is None:
        return None
    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {action.dest} must be true or false, got {value!r}")
        return value
    kind = action.type or str
    try:
        value = kind(value) if not (kind is int and isinstance(value, float) and not value.is_integer()) else None
    except (TypeError, ValueError):
        value = None
    if value is None:
        raise ValueError(f"{where}: {action.dest} must be {getattr(kind, '__name__', kind)}")
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{where}: invalid {action.dest} {value!r} (choose from {', '.join(map(str, action.choices))})")
    return value


def read_yaml_mapping(path: str | os.PathLike) -> dict[Any, Any]:
    """A config file's top-level mapping (empty file: {}); a missing file or bad YAML is one ValueError line."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file is a mapping of option: value")
    return data


def read_yaml(path: str | os.PathLike, parser: argparse.ArgumentParser | None = None) -> dict[str, Any]:
    data = read_yaml_mapping(path)
    actions = _actions(parser or get_args_parser())
    unknown = sorted(k for k in data if str(k).replace("-", "_") not in actions)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {', '.join(map(str, unknown))} "
                         f"(valid: {', '.join(sorted(actions))})")
    return {k.replace("-", "_"): _coerce(actions[k.replace("-", "_")], v, str(path)) for k, v in data.items()}


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / RUN_CONFIG
    return read_yaml(path) if path.is_file() else {}


def write_run_config(run_dir: Path, args: argparse.Namespace) -> Path:
    import yaml

    values = {k: v for k, v in vars(args).items() if k in default_config()}
    path = Path(run_dir) / RUN_CONFIG
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# resolved training config; `captioning train --config` accepts this file\n")
        yaml.safe_dump(values, fh, sort_keys=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)  # mkstemp makes it private
    os.replace(tmp, path)
    return path


def resolve_config(args: argparse.Namespace) -> argparse.Namespace:
    """Defaults < saved run config < --config YAML < command line; paths made absolute."""
    given = {k: v for k, v in vars(args).items() if k in default_config()}
    run_dir = Path(args.out).absolute()
    saved = read_run_config(run_dir)
    values = {**default_config(), **saved}
    if getattr(args, "config", None):
        values.update(read_yaml(args.config))
    values.update(given)
    for key in PATH_KEYS:
        if values[key] is not None:
            values[key] = str(Path(values[key]).expanduser().absolute())
    if (run_dir / "last").is_dir() and saved:
        changed = [f"{k}={saved[k]!r} (now {values[k]!r})" for k in saved
                   if k not in RESUMABLE and k in values and values[k] != saved[k]]
        if changed:
            raise ValueError(f"{run_dir} holds a run trained with {', '.join(changed)}; rerun with the same "
                             "settings to resume, or pick a new --out")
    for key in ("annotations", "images"):
        if values[key] is None:
            raise ValueError(f"--{key} is required (on the command line or in --config)")
    for key in ("epochs", "batch_size", "captions_per_image", "beam_size", "max_len", "num_layers", "embed_dim",
                "hidden_dim", "attention_dim", "min_freq", "cache_batch_size", "log_every"):
        if values[key] is not None and values[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1, got {values[key]}")
    if not 0 <= values["dropout"] < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {values['dropout']}")
    return argparse.Namespace(**values, out=str(run_dir))
