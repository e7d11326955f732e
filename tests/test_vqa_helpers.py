"""Fixtures for the VQA tests: Visual7W files in the official format over tiny generated images,
and a tiny deterministic encoder so that training takes seconds on two CPU cores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from captioning import encoders
from captioning.encoders import ImageEncoder, Preprocessing

TINY = "vqa_test_tiny"
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230)}
# Every answer is a function of the image's colour, so a model that looks can get them all right.
TELLING = [  # (type, question, {colour: answer}, wrong answers)
    ("what", "What color is the square?", {"red": "Red.", "green": "Green.", "blue": "Blue."}, ["Yellow.", "Black."]),
    ("where", "Where was this taken?", {"red": "In a kitchen.", "green": "In a park.", "blue": "At sea."},
     ["On a roof."]),
    ("when", "When was this taken?", {"red": "At dinner.", "green": "In spring.", "blue": "At night."},
     ["At noon."]),
    ("who", "Who painted it?", {"red": "A chef.", "green": "A gardener.", "blue": "A sailor."}, ["A pilot."]),
    ("why", "Why is it bright?", {"red": "Because of fire.", "green": "Because of grass.",
                                  "blue": "Because of water."}, ["Because of snow."]),
    ("how", "How does it look?", {"red": "Warm.", "green": "Fresh.", "blue": "Cold."}, ["Dull."]),
]


def _tiny_encoder(*, pretrained: bool, grid_size: int | None, image_size: int | None,
                  fine_tune_blocks: int) -> ImageEncoder:
    """A 2x2 grid of 8 channels from a fixed random convolution (same weights on every build)."""
    trunk = nn.Sequential(nn.Conv2d(3, 8, 16, stride=16), nn.ReLU())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trunk.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    pre = Preprocessing(image_size or 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return ImageEncoder(TINY, trunk, 8, pre, grid_size or 2, [trunk[0]], fine_tune_blocks)


@pytest.fixture
def tiny_encoder(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(encoders._REGISTRY, TINY, _tiny_encoder)
    return TINY


TINY_MODEL = ["--encoder", TINY, "--embed-dim", "16", "--hidden-dim", "32", "--attention-dim", "16",
              "--dropout", "0", "--batch-size", "16", "--lr", "0.01", "--device", "cpu"]


def _image(folder: Path, name: str, color: str, size: int = 48) -> None:
    image = Image.new("RGB", (size, size), (128, 128, 128))
    image.paste(COLORS[color], (8, 8, 40, 40))
    image.save(folder / name)


QUARTERS = ((0, 0), (24, 0), (0, 24), (24, 24))


def _quarters(folder: Path, name: str, white: int) -> None:
    image = Image.new("RGB", (48, 48), (40, 40, 40))
    x, y = QUARTERS[white]
    image.paste((250, 250, 250), (x, y, x + 24, y + 24))
    image.save(folder / name)


def write_visual7w(root: Path, task: str = "telling", images_per_split: tuple[int, int, int] = (9, 3, 3)) -> tuple[Path, Path]:
    """`dataset_v7w_<task>.json` in the official layout plus its images; returns (annotations, images)."""
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    splits = [s for s, n in zip(("train", "val", "test"), images_per_split, strict=True) for _ in range(n)]
    images, boxes, qa_id, box_id = [], [], 1000, 500
    for i, split in enumerate(splits):
        color = list(COLORS)[i % 3]
        image_id = 2354786 + i
        filename = f"v7w_{image_id}.jpg"
        if task == "telling":
            _image(folder, filename, color)
        else:
            _quarters(folder, filename, white=i % 4)
        pairs = []
        if task == "telling":
            for kind, question, answers, extra in TELLING:
                wrong = [a for c, a in answers.items() if c != color] + extra
                pairs.append({"qa_id": qa_id, "image_id": image_id, "question": question, "answer": answers[color],
                              "multiple_choices": wrong[:3], "type": kind})
                qa_id += 1
        else:  # four boxes, the image's quarters; the answer is the white one
            ids = []
            for x, y in QUARTERS:
                boxes.append({"box_id": box_id, "image_id": image_id, "name": "square", "x": x, "y": y,
                              "width": 24, "height": 24})
                ids.append(box_id)
                box_id += 1
            answer = ids[i % 4]
            pairs.append({"qa_id": qa_id, "image_id": image_id, "question": "Which square is white?",
                          "answer": answer, "multiple_choices": [b for b in ids if b != answer], "type": "which"})
            qa_id += 1
        images.append({"image_id": image_id, "filename": filename, "split": split, "qa_pairs": pairs})
    data = {"images": images, "dataset": "v7w"}
    if task == "pointing":
        data["boxes"] = boxes
    path = root / f"dataset_v7w_{task}.json"
    path.write_text(json.dumps(data))
    return path, folder
