"""Checkpoint folders: `config.json` + `vocab.json` + `model.safetensors`.

Nothing here unpickles: safetensors holds only tensors and JSON holds only data. A folder is
written under a temporary name and renamed into place, so a crash never leaves a half-written
checkpoint where a loader would find it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .small_files import read_small_text
from .vocab import Vocabulary

CONFIG, VOCAB, WEIGHTS = "config.json", "vocab.json", "model.safetensors"
VOCAB_FINGERPRINT = "vocabulary_sha256"  # the weights' safetensors metadata key
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, and torch's zip format


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt or does not match its config."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON next to `path` and rename over it: readers see the old or the new file, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(folder: str | Path, config: dict[str, Any], vocab_json: str,
                    tensors: dict[str, torch.Tensor], extra_files: dict[str, bytes] | None = None) -> Path:
    """Write a complete checkpoint folder atomically (temporary sibling, fsync, rename).

    `extra_files` {name: content} land in the same folder in the same rename (e.g. training state)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    extra_files = extra_files or {}
    if set(extra_files) & {WEIGHTS, VOCAB, CONFIG} or any("/" in n or n.startswith(".") for n in extra_files):
        raise ValueError(f"invalid extra checkpoint file names: {sorted(extra_files)}")
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / WEIGHTS),
                  metadata={VOCAB_FINGERPRINT: Vocabulary.from_json(vocab_json).fingerprint})
        (tmp / VOCAB).write_text(vocab_json, encoding="utf-8")
        (tmp / CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
        for name, content in extra_files.items():
            (tmp / name).write_bytes(content)
        mask = _umask()
        for name in (WEIGHTS, VOCAB, CONFIG, *extra_files):
            os.chmod(tmp / name, 0o666 & ~mask)  # readable as any file the user writes (mkdtemp and
            with open(tmp / name, "rb") as fh:   # safetensors would leave 0600: other users could not load it)
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~mask)
        _fsync_dir(tmp)
        if folder.exists():  # replace: move the old one aside first, delete it only after the swap
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        _fsync_dir(folder.parent)
    except OSError as exc:  # disk full, permissions: name the folder; the previous checkpoint is untouched
        shutil.rmtree(tmp, ignore_errors=True)
        reason = exc.strerror or str(exc)
        raise OSError(f"{folder}: could not save the checkpoint ({reason}); the previous one, if any, is kept"
                      ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def is_checkpoint(folder: str | Path) -> bool:
    folder = Path(folder)
    return all((folder / n).is_file() for n in (CONFIG, VOCAB, WEIGHTS))


def recover(folder: str | Path) -> Path:
    """`folder`, or the previous version kept aside if a crash hit between the two renames of a
    replacing save (the only moment `folder` itself is briefly absent)."""
    folder = Path(folder)
    old = folder.with_name(f".{folder.name}.old")
    if not folder.exists() and is_checkpoint(old):
        os.replace(old, folder)
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG
    try:
        data = json.loads(read_small_text(path, "checkpoint config"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: not a checkpoint (no {CONFIG})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: corrupt JSON ({str(exc)[:200]})") from None
    except ValueError as exc:  # too large, a pipe or a device
        raise CheckpointError(str(exc)) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a checkpoint (no {WEIGHTS})")
    _refuse_pickle(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({exc})") from None


def _refuse_pickle(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:1] == PICKLE_MAGIC[0] or head == PICKLE_MAGIC[1]:
        raise CheckpointError(f"{path}: this is a pickle/torch.save file; refusing to unpickle it "
                              "(checkpoints must be safetensors)")


def read_header(folder: str | Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata, tensor shapes) of a checkpoint's weights, from the safetensors header alone: no tensor is
    read, so a mismatch is found before anything large is allocated."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a checkpoint (no {WEIGHTS})")
    _refuse_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({exc})") from None


def check_vocabulary(folder: str | Path, metadata: dict[str, str], vocab: Vocabulary) -> None:
    """The weights were saved with this vocabulary, word for word (checkpoints from before the fingerprint
    carry none and pass)."""
    saved = metadata.get(VOCAB_FINGERPRINT)
    if saved is not None and saved != vocab.fingerprint:
        raise CheckpointError(f"{Path(folder) / VOCAB}: not the vocabulary these weights were trained with "
                              "(its words differ or are in another order)")


def check_shapes(folder: str | Path, found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    """The weights' tensor shapes (`found`, from `read_header`) match the model the config describes
    (`expected`, built on the meta device): a config at its bounds' maxima with a small weights file is
    refused before gigabytes are allocated for a model that could not be filled."""
    wrong = [f"{k} {found[k]} vs {expected[k]}" for k in found if k in expected and found[k] != expected[k]]
    if wrong:
        raise CheckpointError(f"{Path(folder) / WEIGHTS}: weights do not match the config: {len(wrong)} tensors of "
                              f"another shape (e.g. {wrong[0]})")


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path,
              optional_prefixes: tuple[str, ...] = ()) -> None:
    """Copy `tensors` into `module`, naming every mismatch; keys under `optional_prefixes` may be absent."""
    own = module.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    missing = sorted(k for k in set(own) - set(tensors) if not k.startswith(optional_prefixes))
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
             for k in tensors if k in own and tensors[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {wrong[0]})")
    if problems:
        raise CheckpointError(f"{source}: weights do not match the config: " + "; ".join(problems))
    check_values(tensors, own, source)
    module.load_state_dict(tensors, strict=False)


def available_memory() -> int | None:
    """Bytes the kernel says a process can still get (MemAvailable), or None where it does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def check_fits_memory(parameters: int, source: str | Path) -> None:
    """Refuse, before allocating, a model whose float32 weights (with the copy a load makes) exceed free memory."""
    needed, free = 8 * parameters, available_memory()
    if free is not None and needed > free:
        raise CheckpointError(f"{source}: the model it describes needs about {needed / 2**30:.1f} GiB for "
                              f"{parameters / 1e6:,.0f}M parameters; {free / 2**30:.1f} GiB of memory is free")


def check_values(tensors: dict[str, torch.Tensor], own: dict[str, torch.Tensor], source: str | Path) -> None:
    """Floating weights must be stored as floats (fp16/bf16/fp32/fp64) and be finite: an int64 or NaN
    tensor would load silently and caption nonsense (an empty caption, or `<pad> <pad> ...`)."""
    for name, tensor in tensors.items():
        if name not in own or not own[name].is_floating_point():
            continue
        if not tensor.is_floating_point():
            raise CheckpointError(f"{source}: weight {name} is stored as {str(tensor.dtype).removeprefix('torch.')}, "
                                  "not as floating point numbers")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: weight {name} holds NaN or infinite values")
