"""The training loop of `captioning train` and `vqa train`. A product supplies `Hooks`: its batches, the
loss of one batch (`step`), its validation score (`validate`) and how it writes a checkpoint (`save`);
the `Trainer` does the rest: gradient clipping, the NaN stop, resume from RUN/last, atomic RUN/last
and RUN/best, early stopping, TensorBoard, DistributedDataParallel (only rank 0 validates, logs and
writes; its score is broadcast) and `checkpoint_every`."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import checkpoint as ckpt
from ..engine.stopping import Interrupted, StopRequests
from .distributed import Dist
from .state import TrainerState, TrainingError, load_state, state_files


@dataclass
class Validation:
    """One validation pass: the score that picks RUN/best and drives early stopping, and what to log."""

    score: float
    summary: str = ""                                      # the epoch line's part: "val BLEU-4 0.2134"
    scalars: dict[str, float] = field(default_factory=dict)  # TensorBoard: {"val/bleu4": 0.2134}
    texts: dict[str, str] = field(default_factory=dict)      # TensorBoard text: {"val/sample": "a red circle"}
    history: dict[str, Any] = field(default_factory=dict)    # the epoch's history entry: {"val_bleu4": 0.2134}


@dataclass
class TrainerSettings:
    epochs: int
    patience: int = 0           # epochs without a better score before stopping (0: never)
    clip_grad: float = 0.0      # max gradient norm (0: no clipping)
    seed: int = 0
    amp: bool = False           # bf16 autocast on CUDA
    checkpoint_every: int = 0   # also save RUN/last every N steps (0: at epoch ends only)
    warmup_steps: int = 0       # learning rates ramp up linearly over the first N steps (of the whole run)
    log_every: int = 50         # TensorBoard scalars every N steps
    metric: str = "val"         # how the logs name the score: "val BLEU-4"


class Hooks:
    """What a product gives the `Trainer`. `step` returns an object with `loss` and `nll` tensors
    (a `DecoderOutput`); `save(folder, state, validation, extra_files)` writes a checkpoint folder
    (`validation` is None for a mid-epoch RUN/last)."""

    def start_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        """Per-epoch setup: learning-rate schedule, seeding."""

    def batches(self, epoch: int, done: int) -> Iterable:
        """This process's batches of `epoch`, less the first `done` (a resumed epoch)."""
        raise NotImplementedError

    def step(self, batch: Any) -> Any:
        raise NotImplementedError

    def validate(self) -> Validation:
        raise NotImplementedError

    def save(self, folder: Path, state: TrainerState, validation: Validation | None,
             extra_files: dict[str, bytes] | None) -> None:
        raise NotImplementedError


class Trainer:
    def __init__(self, hooks: Hooks, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 settings: TrainerSettings, run_dir: Path, *, device: torch.device, d: Dist | None = None):
        self.hooks, self.model, self.optimizer, self.settings = hooks, model, optimizer, settings
        self.run_dir, self.last, self.best = run_dir, run_dir / "last", run_dir / "best"
        self.device, self.d = device, d or Dist()
        self.state = TrainerState()
        self.resumed = False
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.writer = None
        self.stops = StopRequests()
        self.epoch_lrs = [group["lr"] for group in optimizer.param_groups]  # the schedule's, before any warm-up

    def resume(self, restore_rng: bool = True) -> TrainerState:
        """Continue from RUN/last: optimizer, counters and (with `restore_rng`) the random generators."""
        self.state = load_state(self.last, self.optimizer, restore_rng)
        self.resumed = True
        return self.state

    def log(self, message: str) -> None:
        if self.d.main:
            print(message, flush=True)

    # ---- the loop -----------------------------------------------------------------------------------
    def fit(self) -> TrainerState:
        if self.d.main:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.state.step if self.resumed else None)
        start = time.time()
        try:
            with self.stops.installed():
                while self.state.epoch < self.settings.epochs:
                    self.run_epoch()
                    if self.stops.signal_name:  # arrived during validation: RUN/last was just saved at the epoch's end
                        self.stop_on_signal(save=False)
                    if self.state.stopped_early:
                        self.log(f"early stopping: no better {self.settings.metric} for {self.settings.patience} epochs")
                        break
        finally:
            if self.writer is not None:
                self.writer.close()
        self.log(f"done in {time.time() - start:.0f}s: best {self.settings.metric} {self.state.best_score:.4f} at "
                 f"epoch {self.state.best_epoch}; checkpoint {self.best}")
        return self.state

    def run_epoch(self) -> None:
        """Train one epoch, validate, book the score, write RUN/best (when better) and RUN/last."""
        state, t0 = self.state, time.time()
        self.hooks.start_epoch(state.epoch, self.optimizer)
        self.epoch_lrs = [group["lr"] for group in self.optimizer.param_groups]
        stats = self.train_one_epoch(self.hooks.batches(state.epoch, state.step_in_epoch))
        validation = self.hooks.validate() if self.d.main else Validation(-1.0)
        (validation.score,) = self.d.broadcast([validation.score], self.device)
        state.epoch += 1
        state.step_in_epoch = 0
        improved = state.record_validation(validation.score, self.settings.patience)
        state.history.append({"epoch": state.epoch, "step": state.step, **validation.history,
                              "seconds": round(time.time() - t0, 1),
                              **{k: None if math.isnan(v) else v for k, v in stats.items()}})
        if self.d.main:
            self._log_validation(validation, stats)
            if improved:
                self.hooks.save(self.best, state, validation, None)
            self.hooks.save(self.last, state, validation, state_files(self.optimizer, state))
            self.writer.flush()
        self.log(f"epoch {state.epoch}/{self.settings.epochs}  loss {_shown(stats['loss'])}  nll {_shown(stats['nll'])}  "
                 f"{validation.summary}{' *' if improved else ''}  (best {state.best_score:.4f} at epoch "
                 f"{state.best_epoch})  {time.time() - t0:.0f}s")

    def train_one_epoch(self, batches: Iterable) -> dict[str, float]:
        """One pass over `batches`; stops (TrainingError) on a non-finite loss or gradient, before the update."""
        state, settings = self.state, self.settings
        self.model.train()
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if settings.amp and self.device.type == "cuda" \
            else contextlib.nullcontext()
        clip = settings.clip_grad if settings.clip_grad > 0 else float("inf")
        sums, count = {"loss": 0.0, "nll": 0.0}, 0
        total = len(batches) if hasattr(batches, "__len__") else None
        bar = tqdm(batches, total=total, desc=f"epoch {state.epoch + 1}/{settings.epochs}", disable=not self.d.main,
                   dynamic_ncols=True, mininterval=1.0, leave=False, file=sys.stderr)
        for batch in bar:
            with amp:
                out = self.hooks.step(batch)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
            check = torch.stack([out.loss.detach().float(), out.nll.detach().float(), grad_norm.float()])
            loss, nll, norm = self.d.mean(check).tolist()
            self._stop_if_diverged(loss, norm)
            self._warm_up()
            self.optimizer.step()
            state.step += 1
            state.step_in_epoch += 1
            sums["loss"] += loss
            sums["nll"] += nll
            count += 1
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            if self.writer is not None and (state.step % settings.log_every == 0 or count == 1):
                for name, value in (("loss", loss), ("nll", nll), ("grad_norm", norm)):
                    self.writer.add_scalar(f"train/{name}", value, state.step)
            if settings.checkpoint_every > 0 and state.step % settings.checkpoint_every == 0 and self.d.main:
                self.hooks.save(self.last, state, None, state_files(self.optimizer, state))
            if self.stops.signal_name:
                bar.close()
                self.stop_on_signal(save=True)
        bar.close()
        # an epoch resumed after its last step has no loss of its own: nan, shown as "-", never 0.0000
        return {k: v / count if count else math.nan for k, v in sums.items()}

    def _warm_up(self) -> None:
        """lr x (step + 1) / warmup_steps for the first warmup_steps steps: a function of the step alone,
        so a resumed run continues the same ramp."""
        warmup, step = self.settings.warmup_steps, self.state.step
        if warmup <= 0 or step > warmup:
            return
        scale = min(1.0, (step + 1) / warmup)
        for group, lr in zip(self.optimizer.param_groups, self.epoch_lrs, strict=True):
            group["lr"] = lr * scale

    def stop_on_signal(self, save: bool) -> None:
        """Save RUN/last at this step (unless just saved) and stop: a rerun of the same command resumes here."""
        state = self.state
        if save and self.d.main:
            self.hooks.save(self.last, state, None, state_files(self.optimizer, state))
        raise Interrupted(f"stopped by {self.stops.signal_name} at step {state.step} (epoch {state.epoch + 1}); "
                          f"saved {self.last}: rerun the same command to resume")

    def _stop_if_diverged(self, loss: float, norm: float) -> None:
        if math.isfinite(loss) and math.isfinite(norm):
            return
        what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {norm}"
        where = f"the last good checkpoint is {self.last}" if ckpt.is_checkpoint(self.last) \
            else "no checkpoint was written"
        raise TrainingError(f"{what} at step {self.state.step + 1} (epoch {self.state.epoch + 1}); stopped before "
                            f"the update, {where} (try a lower --lr)")

    def _log_validation(self, validation: Validation, stats: dict[str, float]) -> None:
        step, writer = self.state.step, self.writer
        for name, value in validation.scalars.items():
            writer.add_scalar(name, value, step)
        if not math.isnan(stats["loss"]):
            writer.add_scalar("train/epoch_loss", stats["loss"], step)
        writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], step)
        for name, text in validation.texts.items():
            writer.add_text(name, text, step)


def _shown(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"
