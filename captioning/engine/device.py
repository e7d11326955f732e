"""The one device resolver of every command (`--device`) and the app."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """`None` or "auto": cuda when available, else cpu; "cpu", "cuda", "cuda:N" as given. Asking for
    CUDA on a machine without it is one ValueError line naming the fix."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "mps" and torch.backends.mps.is_available():  # Apple GPUs, when asked for by name
        return device
    if device.type not in ("cpu", "cuda"):  # meta, xpu, an absent mps, ...
        raise ValueError(f"--device {name}: not a device this project runs on here (use auto, cpu, cuda or "
                         "cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return device
