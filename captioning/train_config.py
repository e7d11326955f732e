"""Training options of `captioning train`: the typed `CaptionTrainConfig` (a `ModelConfig` inside) is
the schema of every flag (`--hidden-dim`) and YAML key (`hidden_dim`). Precedence: built-in defaults <
the run folder's saved config (when resuming) < `--config` YAML < command line. The resolved config is
saved flat as RUN/config.yaml, which is itself a valid `--config` (`captioning.training.options`)."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cells import GATES
from .config import ATTENTION_KINDS, HARD_INFERENCE, MODEL_HELP, ModelConfig
from .data.formats import FORMATS
from .decoders import list_decoders
from .encoders import list_encoders
from .limits import DEFAULT_BEAM_SIZE, MAX_BEAM_SIZE
from .training.options import RUN_CONFIG, ConfigSchema


@dataclass
class CaptionTrainConfig:
    # data
    annotations: str | None = None      # Karpathy split file, COCO captions_*.json or Flickr8k.token.txt
    images: str | None = None           # image root folder
    format: str = "auto"                # karpathy | coco | flickr8k | auto (from the file name, else its content)
    skip_invalid: bool = False          # skip malformed entries and missing images instead of stopping
    cache_dir: str | None = None        # encoder feature cache (None: RUN/features)
    min_freq: int = 5                   # words seen fewer times in the training captions become <unk>
    val_holdout: float = 0.05           # share of training images held out when there is no val split
    # optimisation and validation
    epochs: int = 20
    batch_size: int = 64                # captions per batch (per process under torchrun)
    captions_per_image: int = 5         # captions of one image per batch, sharing its grid's projection
    lr: float = 4e-4                    # Adam, decoder
    encoder_lr: float = 1e-4            # Adam, fine-tuned encoder blocks
    lr_decay: float = 1.0               # multiply the learning rates by this after every epoch
    weight_decay: float = 0.0
    adam_eps: float = 1e-8              # Adam's epsilon; larger damps parameters whose gradients are tiny (SCST)
    warmup_steps: int = 0               # ramp the learning rates up linearly over the first N steps
    clip_grad: float = 5.0              # max gradient norm (0: no clipping)
    patience: int = 5                   # epochs without a better val BLEU-4 before stopping (0: never)
    seed: int = 0
    beam_size: int = DEFAULT_BEAM_SIZE  # validation decoding
    val_max_images: int = 0             # validate on at most this many images (0: all)
    train_max_images: int = 0           # train on the first this many training images (0: all)
    val_metric: str = "bleu4"           # what picks RUN/best and drives early stopping: bleu4 | cider (CIDEr-D)
    # self-critical sequence training (Rennie et al. 2017; captioning.scst)
    init_from: str | None = None        # start from this checkpoint or bundled model (weights and vocabulary)
    scst: bool = False                  # REINFORCE on CIDEr-D instead of cross-entropy
    scst_samples: int = 5               # K sampled captions per image (batch_size // K images per batch)
    scst_baseline: str = "greedy"       # greedy: the greedy caption's reward; mean: the other K-1 samples' mean
    scst_bleu_weight: float = 0.0       # reward = CIDEr-D + this * BLEU-4 (sentence level)
    scst_meteor_weight: float = 0.0     # ... + this * a METEOR-style score (captioning.meteor_proxy)
    scst_temperature: float = 1.0       # sample from softmax(logits / T); the loss scores under the same policy
    scst_per_word: bool = False         # weigh each sample's mean word log-prob, not the sum (length-neutral)
    # machinery
    device: str | None = None           # None: cuda when available
    amp: bool = True                    # bf16 autocast on CUDA (never on CPU)
    num_workers: int = 2
    cache_batch_size: int = 64
    checkpoint_every: int = 0           # also save RUN/last every N steps (0: at epoch ends only)
    log_every: int = 50                 # TensorBoard scalars every N steps
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        at_least_one = {"epochs": self.epochs, "batch_size": self.batch_size,
                        "captions_per_image": self.captions_per_image, "beam_size": self.beam_size,
                        "max_len": self.model.max_len, "num_layers": self.model.num_layers,
                        "embed_dim": self.model.embed_dim, "hidden_dim": self.model.hidden_dim,
                        "attention_dim": self.model.attention_dim, "min_freq": self.min_freq,
                        "cache_batch_size": self.cache_batch_size, "log_every": self.log_every}
        for key, value in at_least_one.items():
            if value is not None and value < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
        if self.scst and self.scst_samples < (2 if self.scst_baseline == "mean" else 1):
            raise ValueError(f"--scst-samples must be at least {2 if self.scst_baseline == 'mean' else 1} "
                             f"with --scst-baseline {self.scst_baseline}, got {self.scst_samples}")
        if not self.scst_temperature > 0:
            raise ValueError(f"--scst-temperature must be positive, got {self.scst_temperature}")
        if not 0 <= self.model.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.model.dropout}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not (isinstance(self.lr_decay, (int, float)) and math.isfinite(self.lr_decay) and self.lr_decay > 0):
            raise ValueError(f"--lr-decay must be a positive number, got {self.lr_decay}")
        if self.beam_size > MAX_BEAM_SIZE:
            raise ValueError(f"--beam-size must be at most {MAX_BEAM_SIZE}, got {self.beam_size}")


VAL_METRICS = ("bleu4", "cider")
SCST_BASELINES = ("greedy", "mean")

# Keys a resumed run may change; any other key must match the run folder's saved config.
RESUMABLE = {"annotations", "images", "skip_invalid", "cache_dir", "epochs", "patience", "beam_size",
             "val_max_images", "device", "amp", "num_workers", "cache_batch_size", "checkpoint_every", "log_every"}

SCHEMA: ConfigSchema[CaptionTrainConfig] = ConfigSchema(
    CaptionTrainConfig, resumable=RESUMABLE, path_keys=("annotations", "images", "cache_dir"),
    command="captioning train",
    choices={"format": FORMATS, "encoder": list_encoders, "decoder": list_decoders, "attention": ATTENTION_KINDS,
             "hard_inference": HARD_INFERENCE, "cell": tuple(GATES), "val_metric": VAL_METRICS,
             "scst_baseline": SCST_BASELINES})


HELP = {
    **MODEL_HELP,
    "annotations": "Karpathy split file (dataset_coco.json), COCO captions_*.json or Flickr8k.token.txt",
    "images": "image root folder",
    "format": "annotation format (auto: from the file name, else its content)",
    "skip_invalid": "skip malformed entries and missing images instead of stopping",
    "cache_dir": "encoder feature cache folder (default: RUN/features)",
    "min_freq": "keep words seen at least this often in the training captions",
    "val_holdout": "share of training images held out when the annotations have no val split",
    "epochs": "training epochs",
    "batch_size": "captions per batch (per process under torchrun)",
    "captions_per_image": "captions of one image per batch, sharing its grid's attention projection and reads: "
                          "batch-size // this images per batch (1: independent (image, caption) pairs)",
    "lr": "Adam learning rate of the decoder",
    "encoder_lr": "Adam learning rate of fine-tuned encoder blocks",
    "lr_decay": "multiply the learning rates by this after every epoch (1: constant)",
    "weight_decay": "Adam weight decay",
    "warmup_steps": "ramp the learning rates linearly from 0 over the first N steps (a fresh Adam's first steps "
                    "move every parameter by about lr, however noisy its gradient: SCST from a checkpoint)",
    "adam_eps": "Adam epsilon (larger: parameters with tiny, noisy gradients, e.g. REINFORCE's, barely move)",
    "clip_grad": "clip the gradient norm to this (0: no clipping)",
    "patience": "stop after this many epochs without a better val BLEU-4 (0: never)",
    "seed": "random seed",
    "beam_size": "beam size of validation decoding (1: greedy)",
    "val_max_images": "validate on at most this many val images (0: all)",
    "train_max_images": "train on the first this many training images (0: all; e.g. only those already cached)",
    "val_metric": "validation score that picks RUN/best and drives early stopping (cider: CIDEr-D)",
    "init_from": "start from this checkpoint, run folder or bundled model: its weights, vocabulary and model "
                 "config (model keys given here are ignored)",
    "scst": "self-critical sequence training: REINFORCE on the sampled captions' CIDEr-D (use with --init-from)",
    "scst_samples": "captions sampled per image (batch-size // this images per batch)",
    "scst_baseline": "reward baseline: the greedy caption's (greedy) or the other samples' mean (mean)",
    "scst_bleu_weight": "add this times the sentence BLEU-4 to the CIDEr-D reward",
    "scst_meteor_weight": "add this times a METEOR-style sentence score (exact and stem matches, "
                          "captioning.meteor_proxy) to the reward",
    "scst_temperature": "sampling temperature T of the policy (log-probabilities scored under softmax(logits / T); "
                        "below 1 the samples stay nearer the greedy caption)",
    "scst_per_word": "advantage times each sample's mean word log-probability instead of the sum (long samples "
                     "then weigh no more than short ones)",
    "device": "cpu or cuda (default: cuda when available)",
    "amp": "bf16 autocast on CUDA (never on CPU)",
    "num_workers": "data loader worker processes",
    "cache_batch_size": "images per batch when building the feature cache",
    "checkpoint_every": "also save RUN/last every N steps (0: at epoch ends only)",
    "log_every": "TensorBoard scalars every N steps",
}

GROUPS = {
    "data": ["annotations", "images", "format", "skip_invalid", "cache_dir", "min_freq", "val_holdout"],
    "model": [k for k, key in SCHEMA.keys.items() if key.path.startswith("model.")],
    "optimisation": ["epochs", "batch_size", "captions_per_image", "lr", "encoder_lr", "lr_decay", "weight_decay", "adam_eps",
                     "warmup_steps",
                     "clip_grad", "patience", "seed", "beam_size", "val_max_images", "train_max_images", "val_metric"],
    "self-critical": ["init_from", "scst", "scst_samples", "scst_baseline", "scst_bleu_weight", "scst_meteor_weight",
                      "scst_per_word",
                      "scst_temperature"],
    "machinery": ["device", "amp", "num_workers", "cache_batch_size", "checkpoint_every", "log_every"],
}


def default_config() -> dict[str, Any]:
    """Every key's built-in default, flat."""
    return SCHEMA.defaults()


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a Show, Attend and Tell captioner.", add_help=add_help,
                                     argument_default=argparse.SUPPRESS)
    run = parser.add_argument_group("run")
    run.add_argument("--out", required=True, help="run folder: config, vocabulary, checkpoints, logs")
    run.add_argument("--config", help="YAML file of option defaults (keys as below, with underscores)")
    SCHEMA.add_arguments(parser, HELP, GROUPS)
    return parser


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A `--config` file as checked flat values."""
    return SCHEMA.read_yaml(path)


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / RUN_CONFIG
    return read_yaml(path) if path.is_file() else {}


def write_run_config(run_dir: Path, config: CaptionTrainConfig) -> Path:
    return SCHEMA.write(run_dir, config)


def resolve_config(args: argparse.Namespace) -> CaptionTrainConfig:
    """Defaults < saved run config < --config YAML < command line; paths made absolute; a resumed run
    (RUN/last exists) may change only the RESUMABLE keys."""
    run_dir = Path(args.out).absolute()
    return SCHEMA.resolve(run_dir, getattr(args, "config", None), SCHEMA.given(args),
                          resuming=(run_dir / "last").is_dir(), required=("annotations", "images"))
