"""Train a question answerer: `vqa train --format easy-vqa --out RUN` or
`vqa train --annotations dataset_v7w_telling.json --images DIR --out RUN [--task pointing]`.

Reference-script layout: `add_arguments` + `main(args)` + `train_one_epoch` + `validate`. The
frozen encoder sees every image once (feature cache); RUN/last holds the latest checkpoint and the
training state (optimizer, RNG, best score; safetensors + JSON) in one atomic folder, so rerunning
the same command resumes; RUN/best is the checkpoint with the best validation accuracy."""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from captioning import checkpoint as ckpt
from captioning.train import (
    TRAINER_JSON,
    Dist,
    TrainerState,
    TrainingError,
    epoch_batches,
    load_state,
    recover_folder,
    state_files,
)
from captioning.vocab import Vocabulary

from .config import TrainConfig, add_config_arguments, given, resolve_config, write_run_config
from .data import QA, QADataset, load_sources, vocabulary_texts
from .decoder import pack
from .evaluate import Grids, Report, cached_grids, evaluate_questions, live_grids, resolve_device
from .features import BoxFeatures, grid_cache
from .model import Answerer, read_question


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run folder: config, checkpoints (best/, last/), logs (tb/)")
    parser.add_argument("--config", help="YAML file of defaults (keys as the flags below, with underscores)")
    add_config_arguments(parser)


def _encode(model: Answerer, questions: Sequence[QA]) -> list[tuple[list[int], list[int]]]:
    """(question ids, answer ids) per question; answers of pointing questions are not words."""
    out = []
    for q in questions:
        ids = read_question(model.vocab, q.question, model.config.max_question_len)[0]
        out.append((ids, model.answer_ids(q.answer) if isinstance(q.answer, str) else []))
    return out


def train_one_epoch(model: Answerer, questions: Sequence[QA], encoded: list, batches: list[list[int]], grids: Grids,
                    boxes: BoxFeatures | None, optimizer: torch.optim.Optimizer, config: TrainConfig,
                    state: TrainerState, writer=None, last: Path | None = None) -> dict[str, float]:
    """One pass over `batches` (indices into `questions`); stops on a non-finite loss, naming `last`
    (the run's latest good checkpoint) in the error."""
    from tqdm.auto import tqdm

    model.train()
    device = model.device
    v = model.vocab
    params = [p for g in optimizer.param_groups for p in g["params"]]
    clip = config.clip_grad if config.clip_grad > 0 else float("inf")
    sums, count = {"loss": 0.0, "nll": 0.0}, 0
    bar = tqdm(batches, desc=f"epoch {state.epoch + 1}/{config.epochs}", leave=False, dynamic_ncols=True,
               mininterval=2.0, file=sys.stderr)
    for batch in bar:
        qs = [questions[i] for i in batch]
        features = grids([q.image for q in qs]).to(device)
        pointing = config.model.task == "pointing"
        seq = pack([encoded[i][0] for i in batch], None if pointing else [encoded[i][1] for i in batch],
                   start_id=v.start_id, end_id=v.end_id).to(device)
        if pointing:
            box_features = boxes.stack([q.candidates for q in qs]).to(device)
            targets = torch.tensor([q.answer_index for q in qs], device=device)
            out = model.decoder(features, seq, box_features, targets)
        else:
            out = model.decoder(features, seq)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        loss, nll = float(out.loss.detach()), float(out.nll.detach())
        if not (math.isfinite(loss) and math.isfinite(norm)):
            what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {norm}"
            where = f"the last good checkpoint is {last}" if last else "no checkpoint was written"
            raise TrainingError(f"{what} at step {state.step + 1} (epoch {state.epoch + 1}); stopped before the "
                                f"update, {where} (try a lower --lr)")
        optimizer.step()
        state.step += 1
        sums["loss"] += loss
        sums["nll"] += nll
        count += 1
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if writer is not None and state.step % 50 == 0:
            writer.add_scalar("train/loss", loss, state.step)
            writer.add_scalar("train/nll", nll, state.step)
            writer.add_scalar("train/grad_norm", norm, state.step)
    bar.close()
    return {k: v / max(count, 1) for k, v in sums.items()}


def validate(model: Answerer, dataset: QADataset, questions: Sequence[QA], grids: Grids,
             boxes: BoxFeatures | None, config: TrainConfig) -> tuple[float, Report]:
    """(score that selects the best checkpoint, full report) on the validation questions."""
    report = evaluate_questions(model, questions, grids, split="val", types=dataset.types, boxes=boxes,
                                batch_size=max(config.batch_size, 128), beam_size=config.beam_size)
    use_open = config.select_metric == "open" and report.open_ended is not None
    return (report.open_ended if use_open else report.multiple_choice).overall, report


def _summary(report: Report) -> str:
    text = f"val MC {report.multiple_choice.overall:.4f}"
    return text + (f"  open {report.open_ended.overall:.4f}" if report.open_ended else "")


def _portable(path: str | None) -> str | None:
    """What the checkpoint records as its data: relative to the working directory when inside it, so a
    checkpoint copied elsewhere (a bundled model) finds its data from the repository root."""
    if path is None:
        return None
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def main(args: argparse.Namespace) -> TrainerState:
    run_dir = Path(args.out).absolute()
    last, best = run_dir / "last", run_dir / "best"
    run_dir.mkdir(parents=True, exist_ok=True)
    recover_folder(last)
    recover_folder(best)
    resuming = ckpt.is_checkpoint(last) and (last / TRAINER_JSON).is_file()
    config = resolve_config(run_dir, args.config, given(args), resuming)
    if resuming:
        meta = json.loads((last / TRAINER_JSON).read_text())["trainer"]
        if meta["stopped_early"] or meta["epoch"] >= config.epochs:
            print(f"{run_dir}: already finished ({meta['epoch']} epochs, best val {meta['best_score']:.4f} at "
                  f"epoch {meta['best_epoch']}); raise --epochs to train longer")
            return TrainerState(**meta)
    device = resolve_device(config.device)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)

    dataset = load_sources(config)
    train, val = dataset.split("train"), dataset.split("val")
    if not val:
        raise TrainingError("no validation questions (split 'val'); they pick the best checkpoint")
    if config.model.task == "pointing" and config.model.fine_tune_blocks:
        raise TrainingError("pointing trains on cached box-crop features: use a frozen encoder (fine_tune_blocks 0)")
    write_run_config(run_dir, config)
    vocab = Vocabulary.load(last / ckpt.VOCAB) if resuming else \
        Vocabulary.build(vocabulary_texts(train, config.model.task), min_freq=config.min_freq)
    model = Answerer(config.model, vocab).to(device)
    if resuming:
        ckpt.load_into(model, ckpt.read_weights(last), last,
                       optional_prefixes=("encoder.",) if model.encoder.frozen else ())

    boxes = None
    cache_dir = Path(config.cache_dir) if config.cache_dir else run_dir / "features"
    if model.encoder.frozen:  # one encoder pass per image, reused by every epoch, rerun and `vqa evaluate`
        grids = cached_grids(grid_cache(model.encoder, dataset, cache_dir, device=device,
                                        num_workers=config.num_workers))
        if config.model.task == "pointing":
            boxes = BoxFeatures.build(model.encoder, dataset, cache_dir, device=device)
    else:
        grids = live_grids(model, dataset.images)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    state = load_state(last, optimizer, restore_rng=True) if resuming else TrainerState()
    if resuming:
        print(f"resuming {run_dir} at epoch {state.epoch + 1} (best val {state.best_score:.4f})")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"), purge_step=state.step if resuming else None)
    data = {"format": config.format, "annotations": _portable(config.annotations), "images": _portable(config.images),
            "skip_invalid": config.skip_invalid, "val_holdout": config.val_holdout, "seed": config.seed,
            "choices_seed": config.choices_seed}
    encoded = _encode(model, train)
    print(f"training on {len(train):,} questions ({len(dataset.images):,} images), validating on {len(val):,}; "
          f"vocabulary {len(vocab)} words; {sum(p.numel() for p in params):,} trainable parameters; device {device}")
    start = time.time()
    while state.epoch < config.epochs:
        t0 = time.time()
        torch.manual_seed(config.seed + state.epoch)  # dropout and hard-attention samples: same on a rerun
        batches = epoch_batches(len(train), config.batch_size, state.epoch, config.seed, Dist())
        stats = train_one_epoch(model, train, encoded, batches, grids, boxes, optimizer, config, state, writer, last)
        score, report = validate(model, dataset, val, grids, boxes, config)
        state.epoch += 1
        improved = state.record_validation(score, config.patience)
        state.history.append({"epoch": state.epoch, "step": state.step, "val": score,
                              "val_mc": report.multiple_choice.overall,
                              "val_open": report.open_ended.overall if report.open_ended else None,
                              "seconds": round(time.time() - t0, 1), **stats})
        writer.add_scalar("val/mc_accuracy", report.multiple_choice.overall, state.step)
        if report.open_ended:
            writer.add_scalar("val/open_accuracy", report.open_ended.overall, state.step)
        writer.add_scalar("train/epoch_loss", stats["loss"], state.step)
        training = {"epoch": state.epoch, "step": state.step, "val_score": score}
        if improved:
            model.save(best, extra={"training": training, "data": data})
        model.save(last, extra={"training": training, "data": data}, extra_files=state_files(optimizer, state))
        writer.flush()
        print(f"epoch {state.epoch}/{config.epochs}  loss {stats['loss']:.4f}  {_summary(report)}"
              f"{' *' if improved else ''}  (best {state.best_score:.4f} at epoch {state.best_epoch})  "
              f"{time.time() - t0:.0f}s", flush=True)
        if state.stopped_early:
            print(f"early stopping: no better validation score for {config.patience} epochs")
            break
    writer.close()
    print(f"done in {time.time() - start:.0f}s: best val {state.best_score:.4f} at epoch {state.best_epoch}; "
          f"checkpoint {best}")
    return state
