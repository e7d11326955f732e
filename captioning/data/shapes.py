"""A synthetic captioning set that trains in minutes on a CPU: 1-3 coloured shapes per scene, five
systematic reference captions each, written in the Karpathy split format (plus an "objects" list).

Scenes are generated independently from (seed, index), so a larger set starts with the same images."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..vocab import tokenize

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 235), "yellow": (240, 220, 40),
          "purple": (150, 60, 200), "orange": (250, 140, 20), "white": (240, 240, 240)}
SHAPES = ("circle", "square", "triangle")
NUMBERS = ("zero", "one", "two", "three", "four")
FILENAME = "dataset_shapes.json"


def phrase(obj: dict) -> str:
    article = "an" if obj["color"][0] in "aeiou" else "a"
    return f"{article} {obj['color']} {obj['shape']}"


def _listing(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def center(obj: dict) -> tuple[float, float]:
    x0, y0, x1, y1 = obj["box"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def relation(a: dict, b: dict) -> str:
    """Where `a` is relative to `b`: "to the left of", "to the right of", "above" or "below"."""
    (ax, ay), (bx, by) = center(a), center(b)
    if abs(ax - bx) >= abs(ay - by):
        return "to the left of" if ax < bx else "to the right of"
    return "above" if ay < by else "below"


def _region(obj: dict, size: int) -> str:
    cx, cy = center(obj)
    col, row = min(int(3 * cx / size), 2), min(int(3 * cy / size), 2)
    return [["in the top left", "at the top", "in the top right"],
            ["on the left", "in the center", "on the right"],
            ["in the bottom left", "at the bottom", "in the bottom right"]][row][col]


def captions_for(objects: list[dict], image_size: int) -> list[str]:
    """Five references: listing, "there is", count, relation (or position) and reversed relation.

    Objects are named left to right, so one attentive scan of the image produces every template."""
    objects = sorted(objects, key=lambda o: center(o)[0])
    phrases = [phrase(o) for o in objects]
    listing = _listing(phrases)
    n = len(objects)
    count = "a single " + phrases[0].split(" ", 1)[1] if n == 1 else f"{NUMBERS[n]} shapes, {listing}"
    if n == 1:
        spatial = [f"{phrases[0]} {_region(objects[0], image_size)}", f"a picture of {phrases[0]}"]
    elif n == 2:
        spatial = [f"{phrases[0]} {relation(objects[0], objects[1])} {phrases[1]}",
                   f"{phrases[1]} {relation(objects[1], objects[0])} {phrases[0]}"]
    else:
        spatial = [f"{listing} from left to right", f"{_listing(phrases[::-1])} from right to left"]
    return [listing, f"there is {listing}", count, *spatial]


def _place(rng: random.Random, n: int, size: int) -> list[list[int]]:
    """Boxes of `n` non-overlapping shapes whose left-to-right order and relations are unambiguous."""
    while True:
        boxes: list[list[int]] = []
        for _ in range(200):
            side = rng.randint(int(0.18 * size), int(0.34 * size))
            x0, y0 = rng.randint(1, size - side - 1), rng.randint(1, size - side - 1)
            box = [x0, y0, x0 + side, y0 + side]
            if all(_clear(box, other, size) for other in boxes) and (n > 1 or _clear_region(box, size)):
                boxes.append(box)
                if len(boxes) == n:
                    return boxes
        # Very rarely the first shapes leave no room: start the scene again.


def _clear(a: list[int], b: list[int], size: int) -> bool:
    gap = max(2, size // 32)
    apart = a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
    (ax, ay), (bx, by) = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    dx, dy = abs(ax - bx), abs(ay - by)
    distinct_order = dx >= 0.1 * size
    clear_relation = max(dx, dy) >= 1.5 * min(dx, dy)
    return apart and distinct_order and clear_relation


def _clear_region(box: list[int], size: int) -> bool:
    """A lone shape's centre keeps away from the thirds' borders, so its position word is clear."""
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    return all(abs(c - size * k / 3) >= 0.04 * size for c in centre for k in (1, 2))


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: list[int], fill: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box[0], box[1], box[2] - 1, box[3] - 1  # PIL bounds are inclusive
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)


def make_scene(seed: int, index: int, image_size: int = 128) -> tuple[Image.Image, list[dict]]:
    """One scene: the image and its objects [{"color", "shape", "box": [x0, y0, x1, y1]}] (x1, y1 exclusive)."""
    rng = random.Random(f"shapes-{seed}-{index}")
    n = rng.randint(1, 3)
    colors = rng.sample(list(COLORS), n)  # distinct colours: "the red shape" is always one object
    objects = [{"color": c, "shape": rng.choice(SHAPES), "box": box}
               for c, box in zip(colors, _place(rng, n, image_size), strict=True)]
    level = rng.randint(15, 75)
    background = np.full((image_size, image_size, 3), level, dtype=np.int16)
    background += np.array([rng.randint(-8, 8) for _ in range(3)], dtype=np.int16)
    if rng.random() < 0.5:  # lightly textured
        noise = np.random.default_rng([seed, index]).integers(-10, 11, size=(image_size, image_size, 1))
        background += noise.astype(np.int16)
    image = Image.fromarray(background.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for obj in objects:
        fill = tuple(int(np.clip(v + rng.randint(-20, 20), 0, 255)) for v in COLORS[obj["color"]])
        _draw(draw, obj["shape"], obj["box"], fill)
    return image, objects


def write_shapes_dataset(out_dir: str | os.PathLike, *, num_images: int | None = None, seed: int = 0,
                         image_size: int = 128, splits: tuple[int, int, int] | None = None) -> Path:
    """Write `images/NNNNN.png` and `dataset_shapes.json` under `out_dir`; returns the JSON's path.

    `splits` are (train, val, test) counts; by default 80/10/10 of `num_images` (1000)."""
    if splits is None:
        total = 1000 if num_images is None else num_images
        val = test = max(1, total // 10) if total >= 3 else 0  # tiny sets still get a val and a test image
        splits = (total - val - test, val, test)
    elif num_images is not None and sum(splits) != num_images:
        raise ValueError(f"splits {splits} add up to {sum(splits)}, not num_images={num_images}")
    if min(splits) < 0 or sum(splits) < 1:
        raise ValueError(f"splits must be non-negative counts with at least one image, got {splits}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = [name for name, count in zip(("train", "val", "test"), splits, strict=True) for _ in range(count)]
    entries = []
    for i, split in enumerate(names):
        image, objects = make_scene(seed, i, image_size)
        filename = f"{i:05d}.png"
        image.save(out / "images" / filename)
        sentences = [{"tokens": tokenize(raw), "raw": raw, "imgid": i, "sentid": 5 * i + k}
                     for k, raw in enumerate(captions_for(objects, image_size))]
        entries.append({"filepath": "images", "filename": filename, "imgid": i, "split": split,
                        "sentids": [s["sentid"] for s in sentences], "sentences": sentences, "objects": objects})
    path = out / FILENAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"images": entries, "dataset": "shapes",
                               "generator": {"seed": seed, "image_size": image_size, "splits": list(splits)}}))
    os.replace(tmp, path)
    return path


def prepare_shapes(out_dir: str | os.PathLike, num_images: int = 1000, seed: int = 0) -> Path:
    """`captioning prepare shapes --out DIR`: write the set and say where it is."""
    path = write_shapes_dataset(out_dir, num_images=num_images, seed=seed)
    print(f"wrote {num_images} shapes scenes to {Path(out_dir)}; annotations: {path}")
    return path
