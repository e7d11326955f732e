"""A run's training state and its checkpoint folders. RUN/last holds the latest checkpoint plus the
training state (optimizer, RNG, counters, best score) as safetensors + JSON, never pickle, swapped in
atomically, so rerunning the same command resumes, also after a kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .. import checkpoint as ckpt

try:
    import fcntl
except ImportError:  # not on POSIX: no lock
    fcntl = None

TRAINER_JSON, TRAINER_TENSORS = "trainer.json", "trainer.safetensors"


LOCK_FILE = "train.lock"  # who trains in this folder now (pid, start time)


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, bad data, incompatible run folder); the message says why."""


@dataclass
class TrainerState:
    epoch: int = 0              # completed epochs
    step: int = 0               # optimizer steps so far
    step_in_epoch: int = 0      # steps done in the unfinished epoch (periodic checkpoints)
    best_score: float = -1.0    # best validation score (BLEU-4, accuracy)
    best_epoch: int = 0
    bad_epochs: int = 0         # epochs since the best one (early stopping)
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)

    def record_validation(self, score: float, patience: int) -> bool:
        """Book a finished epoch's validation score (call after counting the epoch); True if it is the best."""
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped_early = patience > 0 and self.bad_epochs >= patience
        return improved


def state_files(optimizer: torch.optim.Optimizer, state: TrainerState) -> dict[str, bytes]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    scalars: dict[str, dict] = {}
    for index, values in sd["state"].items():
        scalars[str(index)] = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[str(index)][key] = value
    py = random.getstate()
    npy = np.random.get_state()
    meta = {"trainer": asdict(state),
            "optimizer": {"param_groups": sd["param_groups"], "scalars": scalars},
            "rng": {"python": [py[0], list(py[1]), py[2]],
                    "numpy": [npy[0], npy[1].tolist(), int(npy[2]), int(npy[3]), float(npy[4])]}}
    return {TRAINER_TENSORS: save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}),
            TRAINER_JSON: json.dumps(meta).encode()}


def load_state(folder: Path, optimizer: torch.optim.Optimizer, restore_rng: bool) -> TrainerState:
    path = folder / TRAINER_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        path = folder / TRAINER_TENSORS
        tensors = load_tensors(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise TrainingError(f"{path}: cannot read the training state ({str(exc)[:200]}); "
                            "delete the folder to restart") from None
    opt = meta["optimizer"]
    state: dict[int, dict] = {int(i): dict(v) for i, v in opt["scalars"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    current = optimizer.state_dict()["param_groups"]
    if len(current) != len(opt["param_groups"]):
        raise TrainingError(f"{folder}: the saved optimizer has {len(opt['param_groups'])} parameter groups, "
                            f"this run {len(current)}")
    # Hyper-parameters come from the checkpoint; implementation switches (fused, foreach) from this run.
    impl = ("fused", "foreach", "capturable", "differentiable")
    groups = [{**saved, **{k: now[k] for k in impl if k in now}} for saved, now in zip(opt["param_groups"], current,
                                                                                        strict=True)]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if restore_rng:
        py = meta["rng"]["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        npy = meta["rng"]["numpy"]
        np.random.set_state((npy[0], np.array(npy[1], dtype=np.uint32), *npy[2:]))
        torch.set_rng_state(tensors["rng.torch"])
        cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
    return TrainerState(**meta["trainer"])


def recover_folder(folder: Path) -> None:
    """A kill between the two renames of an atomic checkpoint swap leaves only `.name.old`: put it back.
    Leftovers of killed saves (a half-written `.name.*.tmp`, a half-deleted `.name.old`) are deleted."""
    old = folder.with_name(f".{folder.name}.old")
    if not ckpt.is_checkpoint(folder) and ckpt.is_checkpoint(old):
        os.replace(old, folder)
    stale = list(folder.parent.glob(f".{folder.name}.*.tmp")) + ([old] if ckpt.is_checkpoint(folder) else [])
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


def prepare_run_folder(run_dir: Path, main: bool = True) -> None:
    """Create RUN and repair RUN/last and RUN/best after a kill (rank 0 only)."""
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        recover_folder(run_dir / "last")
        recover_folder(run_dir / "best")


@contextlib.contextmanager
def run_folder_lock(run_dir: Path, main: bool = True) -> Iterator[None]:
    """One training run per run folder: a second `train --out SAME` while the first runs would interleave
    their checkpoints. An exclusive lock on RUN/train.lock (released when the run ends, however it ends: the
    system drops it with the process); the second says who holds it. The lock file goes when the run ends, and
    a run folder made for a run that wrote nothing into it (bad data, a bad setting) goes with it."""
    if not main or fcntl is None:
        yield
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = _take_lock(run_dir / LOCK_FILE, run_dir)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):  # unlinked while still held: a waiting opener sees the swap and retries
            (run_dir / LOCK_FILE).unlink()
            if created and not any(run_dir.iterdir()):  # a run that wrote nothing leaves no folder behind
                run_dir.rmdir()
        os.close(fd)


def _take_lock(path: Path, run_dir: Path) -> int:
    """An exclusive flock on `path`, on the file the path names once locked (a holder unlinks it when done)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise TrainingError(f"{run_dir}: in use by another training run ({holder}); wait for it to end "
                                "or choose another --out") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a file its holder had just unlinked: take the new one


def can_resume(last: Path) -> bool:
    """RUN/last is a checkpoint with a training state."""
    return ckpt.is_checkpoint(last) and (last / TRAINER_JSON).is_file()


def saved_state(last: Path) -> TrainerState:
    """The counters of RUN/last (without touching an optimizer)."""
    path = last / TRAINER_JSON
    try:
        return TrainerState(**json.loads(path.read_text(encoding="utf-8"))["trainer"])
    except (OSError, ValueError, RecursionError, KeyError, TypeError) as exc:
        raise TrainingError(f"{path}: cannot read the training state ({type(exc).__name__}: {str(exc)[:200]}); "
                            "delete the folder to restart") from None


def finished_message(run_dir: Path, epochs: int, patience: int, metric: str) -> str | None:
    """Why rerunning a finished run does nothing (None: it can go on, or there is nothing to resume)."""
    last = run_dir / "last"
    if not can_resume(last):
        return None
    done = saved_state(last)
    patience_spent = patience > 0 and done.bad_epochs >= patience
    if done.epoch < epochs and not patience_spent:
        return None
    return (f"{run_dir}: already finished ({done.epoch} epochs, best {metric} {done.best_score:.4f} at epoch "
            f"{done.best_epoch}); raise --epochs" + (" and --patience" if patience_spent else "") + " to train longer")
