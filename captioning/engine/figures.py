"""Attention figures like the paper's: the image, then one panel per generated word with that word's
attention map upsampled over the image (bright where the model looked)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PANEL_INCHES = 2.2
MAX_COLUMNS = 5


def upsample(attention: torch.Tensor, width: int, height: int) -> np.ndarray:
    """(words, h, w) grid maps -> (words, height, width) smooth maps scaled to [0, 1] per word."""
    maps = F.interpolate(attention.float().unsqueeze(1), size=(height, width), mode="bicubic",
                         align_corners=False).squeeze(1).clamp_min(0)
    top = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (maps / top).numpy()


def attention_figure(image: Image.Image, words: Sequence[str], attention: torch.Tensor, path: str | Path,
                     title: str | None = None, display_size: int = 224) -> Path:
    """Save a PNG: the image and, per word, the image dimmed outside that word's attention."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rgb = image.convert("RGB")
    scale = display_size / max(rgb.size)
    rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.BICUBIC)
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    maps = upsample(attention, rgb.width, rgb.height) if len(words) else np.zeros((0, rgb.height, rgb.width))

    panels = 1 + len(words)
    cols = min(MAX_COLUMNS, panels)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(cols * PANEL_INCHES, rows * PANEL_INCHES + (0.4 if title else 0)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(pixels)
    axes[0].set_title("image", fontsize=10)
    for ax, word, weight in zip(axes[1:], words, maps, strict=False):
        # Paper style: the image shows through where attention is high, fades to black elsewhere.
        ax.imshow(pixels * (0.15 + 0.85 * weight[..., None]))
        ax.imshow(weight, cmap="gray", alpha=0.35, vmin=0, vmax=1)
        ax.set_title(word, fontsize=11)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
