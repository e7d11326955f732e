"""Typed configuration: the model (`AnswererConfig`, saved in every checkpoint) and a training run
(`TrainConfig`, saved flat as RUN/config.yaml, itself a valid `--config`).

Keys are flat, as in `captioning train`: `hidden_dim`, `reinforce_samples`, `batch_size`; each is
also a command-line flag (`--hidden-dim`). Precedence: built-in defaults < the run folder's saved
config (when resuming) < `--config` YAML < command line. The mechanism is captioning's
(`captioning.training.options.ConfigSchema`); this module only declares the keys."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from captioning.cells import GATES
from captioning.config import ATTENTION_KINDS, HARD_INFERENCE, MODEL_HELP, Choice, ModelConfig
from captioning.decoders import ANSWER, decoder_modules, list_decoders
from captioning.encoders import list_encoders
from captioning.limits import MAX_BEAM_SIZE
from captioning.training.options import ConfigSchema

TASKS = ("telling", "pointing")


class QATask(Choice):
    """What a QA model answers with: words (telling) or one of four boxes (pointing)."""

    TELLING = "telling"
    POINTING = "pointing"


decoder_modules(ANSWER, "vqa.decoder")  # where the answerer's decoder kinds register themselves


def answer_decoders() -> list[str]:
    """The decoder kinds an answerer can be built with (`--decoder` of `vqa train`)."""
    return list_decoders(ANSWER)


FORMATS = ("visual7w", "easy-vqa", "shapes", "vqa")
SPLITS = ("train", "val", "test")
SELECT_METRICS = ("mc", "open")


@dataclass
class AnswererConfig(ModelConfig):
    """The captioning decoder's hyperparameters plus what question answering adds; `decoder` names a kind
    registered for the "answer" task (`vqa.decoder`)."""

    decoder_task: ClassVar[str] = ANSWER

    max_len: int = 8                    # longest answer generated (open-ended), and kept in training
    doubly_stochastic: float = 0.0      # Visual7W uses no attention regulariser
    visual_dim: int | None = None       # project the encoder grid to this many channels first (None: as is)
    task: QATask = QATask.TELLING       # telling: answers are words | pointing: answers are boxes
    max_question_len: int = 24          # longer questions are truncated (with a notice)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        self.task = QATask(self.task)
        for name in ("max_question_len", "max_len", "embed_dim", "hidden_dim", "attention_dim", "visual_dim"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class TrainConfig:
    format: str = "visual7w"            # visual7w | easy-vqa | shapes | vqa, or several joined by "+"
    annotations: str | None = None      # annotation JSON (visual7w, shapes; vqa: the answers)
    images: str | None = None           # images folder (visual7w, shapes, vqa)
    questions: str | None = None        # VQA v2 questions JSON (vqa)
    image_pattern: str | None = None    # VQA v2 image file names (default COCO_{data_subtype}_{image_id:012d}.jpg)
    questions_split: str | None = None  # split of every VQA v2 question (default: the file's data_subtype)
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
    zero_image: bool = False            # ablation: every image grid is zeros (a question-only model)
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
        for name, low in (("epochs", 0), ("batch_size", 1), ("beam_size", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(self, name)}")
        if self.beam_size > MAX_BEAM_SIZE:
            raise ValueError(f"--beam-size must be at most {MAX_BEAM_SIZE}, got {self.beam_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if self.questions_split is not None and self.questions_split not in SPLITS:
            raise ValueError(f"questions_split must be one of {', '.join(SPLITS)}, got {self.questions_split!r}")
        if not 0 <= self.val_holdout < 1:
            raise ValueError(f"val_holdout must be in [0, 1), got {self.val_holdout}")

    @property
    def formats(self) -> list[str]:
        return [f for f in self.format.split("+") if f]


# Keys a resumed run may change; any other must match the run folder's saved config.
RESUMABLE = {"annotations", "images", "questions", "image_pattern", "skip_invalid", "epochs", "patience", "device",
             "cache_dir", "num_workers", "beam_size"}

SCHEMA: ConfigSchema[TrainConfig] = ConfigSchema(
    TrainConfig, resumable=RESUMABLE, path_keys=("annotations", "images", "questions", "cache_dir"),
    command="vqa train",
    choices={"select_metric": SELECT_METRICS, "questions_split": SPLITS, "attention": ATTENTION_KINDS,
             "hard_inference": HARD_INFERENCE, "cell": tuple(GATES), "task": TASKS, "encoder": list_encoders,
             "decoder": answer_decoders})
KEYS = SCHEMA.keys

HELP = {
    **MODEL_HELP,
    "format": "data: visual7w | easy-vqa | shapes | vqa (VQA v2), or several joined by '+' (easy-vqa+shapes)",
    "annotations": "Visual7W dataset_v7w_<task>.json, a shapes dataset_shapes.json, or VQA v2 "
                   "v2_mscoco_<subtype>_annotations.json",
    "images": "images folder (Visual7W: the folder of v7w_*.jpg; shapes: the dataset root; VQA v2: e.g. train2014/)",
    "questions": "VQA v2 questions file (v2_OpenEnded_mscoco_<subtype>_questions.json), with --format vqa",
    "image_pattern": "VQA v2 image file name from {image_id} and {data_subtype} "
                     "(default COCO_{data_subtype}_{image_id:012d}.jpg; e.g. '{image_id}.jpg')",
    "questions_split": "split of every VQA v2 question (default: the file's data_subtype: train2014 -> train, "
                       "with a val_holdout share of its images as val; val2014 -> val; test2015 -> test)",
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
    "lr": "Adam learning rate",
    "clip_grad": "clip the gradient norm to this (0: no clipping)",
    "patience": "stop after this many epochs without a better validation score (0: never)",
    "device": "auto (cuda when available), cpu, cuda or cuda:N",
    "choices_seed": "seed of the sampled wrong answers of easy-VQA questions",
    "num_workers": "image-decoding worker processes while caching features",
    "zero_image": "ablation: feed zeros instead of the image (a question-only baseline of the same model)",
}


def to_flat(config: TrainConfig) -> dict[str, Any]:
    return SCHEMA.to_flat(config)


def from_flat(values: dict[str, Any]) -> TrainConfig:
    return SCHEMA.from_flat(values)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per key; unset flags stay out of the namespace so they never override the YAML."""
    SCHEMA.add_arguments(parser, HELP, {"configuration (every key of a --config YAML file, with underscores)":
                                        list(KEYS)})


def given(args: argparse.Namespace) -> dict[str, Any]:
    return SCHEMA.given(args)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    return SCHEMA.read_yaml(path)


def write_run_config(run_dir: Path, config: TrainConfig) -> Path:
    return SCHEMA.write(run_dir, config)


def resolve_config(run_dir: Path, yaml_path: str | None, overrides: dict[str, Any], resuming: bool) -> TrainConfig:
    """Defaults < saved run config < YAML < command line; paths absolute; resume-safety checked."""
    return SCHEMA.resolve(run_dir, yaml_path, overrides, resuming)
