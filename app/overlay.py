"""Drawing attention over images: one heat-map overlay per word, or the paper's strip of tiles
with the word under each. Pure PIL/numpy/matplotlib; takes maps as tensors or arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

CMAP = "inferno"
ALPHA = 0.55        # how much heat-map covers the image where attention is highest
LABEL_HEIGHT = 30   # pixels under each strip tile for its word
GAP = 6


def as_maps(attention) -> np.ndarray:
    """(words, h, w) maps from a torch tensor or array; a single (h, w) map becomes one word."""
    maps = attention.detach().float().cpu().numpy() if hasattr(attention, "detach") else np.asarray(attention)
    maps = maps.astype(np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"attention must be (words, h, w) or (h, w), got shape {maps.shape}")
    return maps


def most_focused(attention) -> int:
    """Index of the map that peaks highest above its own mean: the word shown first."""
    maps = as_maps(attention)
    if len(maps) == 0:
        return 0
    flat = maps.reshape(len(maps), -1)
    return int(np.argmax(flat.max(axis=1) / np.maximum(flat.mean(axis=1), 1e-12)))


def first_shown(words: Sequence[str], attention) -> int:
    """The word whose map the page shows first: the first content word ("girl" in "a little girl in a pink
    dress"), skipping articles, prepositions, conjunctions, determiners and the words that need another after
    them ("little", "is"; `captioning.lexicon.endings`); the most focused map when every word is such a word."""
    from captioning.lexicon.endings import no_end_words

    function_words = no_end_words()
    return next((i for i, w in enumerate(words) if w not in function_words), most_focused(attention))


def upsample(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) grid map -> (height, width) smooth weights in [0, 1], 1 where attention peaks.

    A map that is nowhere above twice its mean (attention spread evenly) tops out at 0.5: flat
    attention is drawn flat and dim, not as if the model looked hard at everything."""
    grid = np.clip(np.ascontiguousarray(grid, dtype=np.float32), 0, None)
    smooth = np.clip(np.asarray(Image.fromarray(grid).resize(size, Image.BICUBIC)), 0, None)
    top = max(float(smooth.max()), 2 * float(grid.mean()))
    return smooth / top if top > 0 else smooth


def heatmap(image: Image.Image, grid, alpha: float = ALPHA, cmap: str = CMAP) -> Image.Image:
    """The image with one attention map (h, w) drawn over it as a colour heat-map."""
    rgb = image.convert("RGB")
    weight = upsample(as_maps(grid)[0], rgb.size)                     # (H, W) in [0, 1]
    colour = colormaps[cmap](weight)[..., :3]                          # (H, W, 3)
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    # Paper style: the image fades to dark where the model did not look; a colour tint marks the peaks.
    tint = alpha * weight[..., None] ** 2
    out = pixels * (0.2 + 0.8 * weight[..., None]) * (1 - tint) + colour * tint
    return Image.fromarray(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8))


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        from matplotlib import font_manager
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (OSError, ValueError):
        return ImageFont.load_default()


def _fit(image: Image.Image, tile: int) -> Image.Image:
    scale = tile / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)


def strip(image: Image.Image, words: Sequence[str], attention, tile: int | None = None, columns: int | None = None,
          with_image: bool = True, width: int = 960) -> Image.Image:
    """Tiles as in the paper's figures: (optionally) the image, then per word its heat-map, word below.

    By default up to 10 tiles a row, sized so a row is about `width` pixels (80 to 150 per tile)."""
    count = len(words) + with_image
    columns = columns or max(1, min(count, 10))
    tile = tile or int(np.clip(width // columns - GAP, 80, 150))
    small = _fit(image.convert("RGB"), tile)
    maps = as_maps(attention) if len(words) else np.zeros((0, 1, 1), np.float32)
    tiles = ([(small, "(image)")] if with_image else []) + [(heatmap(small, m), w) for w, m in zip(words, maps)]
    cols = max(1, min(columns, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / cols))
    cell_w, cell_h = small.width + GAP, small.height + LABEL_HEIGHT
    canvas = Image.new("RGB", (cols * cell_w - GAP, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(int(np.clip(tile // 7, 12, 17)))
    for k, (picture, label) in enumerate(tiles):
        x, y = (k % cols) * cell_w, (k // cols) * cell_h
        canvas.paste(picture, (x, y))
        colour = (120, 120, 120) if label == "(image)" else (20, 20, 20)
        draw.text((x + small.width / 2, y + small.height + LABEL_HEIGHT / 2), label, fill=colour, font=font,
                  anchor="mm")
    return canvas


def display_copy(image: Image.Image, longest: int = 448) -> Image.Image:
    """An RGB copy small enough to draw quickly (never enlarged); transparency shown as white."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    else:
        rgb = image.convert("RGB")
    if max(rgb.size) > longest:
        rgb = _fit(rgb, longest)
    return rgb
