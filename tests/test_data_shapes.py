"""The synthetic shapes set: deterministic, Karpathy-format, boxes inside the image, systematic captions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from captioning.data import (
    load_karpathy,
    prepare_shapes,
    split_records,
    write_shapes_dataset,
)
from captioning.data.shapes import COLORS, SHAPES, captions_for, relation
from captioning.vocab import tokenize
from vqa.shapes_questions import shapes_questions


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    return write_shapes_dataset(out, seed=3, image_size=64, splits=(16, 4, 4)), out


def test_karpathy_format_and_splits(shapes):
    path, out = shapes
    data = json.loads(path.read_text())
    assert path.name == "dataset_shapes.json" and data["dataset"] == "shapes"
    entry = data["images"][0]
    assert {"filepath", "filename", "imgid", "split", "sentids", "sentences", "objects"} <= set(entry)
    assert all(s["tokens"] == tokenize(s["raw"]) for s in entry["sentences"])
    records = load_karpathy(path, out)
    assert [len(split_records(records, s)) for s in ("train", "val", "test")] == [16, 4, 4]
    assert all(len(r.captions) == 5 for r in records)


def test_deterministic(shapes, tmp_path):
    path, out = shapes
    again = write_shapes_dataset(tmp_path, seed=3, image_size=64, splits=(16, 4, 4))
    assert again.read_text() == path.read_text()
    for name in ("00000.png", "00023.png"):
        assert np.array_equal(np.asarray(Image.open(out / "images" / name)),
                              np.asarray(Image.open(tmp_path / "images" / name)))
    other = write_shapes_dataset(tmp_path / "other", seed=4, image_size=64, splits=(16, 4, 4))
    assert other.read_text() != path.read_text()


def test_objects_inside_image_and_apart(shapes):
    path, out = shapes
    for record in load_karpathy(path, out):
        image = Image.open(record.path)
        assert image.size == (64, 64) and image.mode == "RGB"
        assert 1 <= len(record.objects) <= 3
        assert len({o["color"] for o in record.objects}) == len(record.objects)
        for obj in record.objects:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            assert obj["color"] in COLORS and obj["shape"] in SHAPES
            # the shape is drawn where its box says: the box centre has the object's colour
            centre = np.asarray(image)[(y0 + y1) // 2 + 1, (x0 + x1) // 2].astype(int)
            assert np.abs(centre - COLORS[obj["color"]]).max() <= 25
        for a in record.objects:
            for b in record.objects:
                if a is not b:
                    apart = a["box"][2] <= b["box"][0] or b["box"][2] <= a["box"][0] or \
                        a["box"][3] <= b["box"][1] or b["box"][3] <= a["box"][1]
                    assert apart


def test_captions_mention_every_object(shapes):
    path, out = shapes
    for record in load_karpathy(path, out):
        assert len(set(record.captions)) == 5
        for caption in record.captions:
            for obj in record.objects:
                assert f"{obj['color']} {obj['shape']}" in caption


def test_caption_templates():
    red = {"color": "red", "shape": "circle", "box": [0, 40, 20, 60]}
    blue = {"color": "blue", "shape": "square", "box": [60, 42, 80, 62]}
    orange = {"color": "orange", "shape": "triangle", "box": [100, 0, 120, 20]}
    assert captions_for([blue, red], 128) == [
        "a red circle and a blue square", "there is a red circle and a blue square",
        "two shapes, a red circle and a blue square", "a red circle to the left of a blue square",
        "a blue square to the right of a red circle"]
    assert captions_for([orange], 128)[:4] == ["an orange triangle", "there is an orange triangle",
                                               "a single orange triangle", "an orange triangle in the top right"]
    assert captions_for([orange, red, blue], 128)[4] == \
        "an orange triangle, a blue square and a red circle from right to left"
    below = {"color": "green", "shape": "circle", "box": [5, 100, 25, 120]}
    assert relation(red, below) == "above" and relation(below, red) == "below"


def test_questions(shapes):
    path, out = shapes
    records = load_karpathy(path, out)
    for record in records:
        questions = shapes_questions(record)
        assert questions == shapes_questions(record)  # deterministic
        kinds = {q["type"] for q in questions}
        assert {"count", "shape", "exists"} <= kinds
        for q in questions:
            assert q["answer"] in q["choices"] and len(set(q["choices"])) == len(q["choices"])
            assert " " not in q["answer"] and q["question"].endswith("?")
        count = next(q for q in questions if q["question"] == "how many shapes are there?")
        assert count["answer"] == ["one", "two", "three"][len(record.objects) - 1]
        for q in questions:
            if q["type"] == "shape":
                color = q["question"].split()[-1].rstrip("?")
                assert q["answer"] == next(o["shape"] for o in record.objects if o["color"] == color)
    record = records[0]
    record.objects = None
    with pytest.raises(ValueError, match="not a shapes scene"):
        shapes_questions(record)


def test_prepare_shapes(tmp_path, capsys):
    path = prepare_shapes(tmp_path, num_images=10, seed=1)
    assert "wrote 10 shapes scenes" in capsys.readouterr().out
    assert [len(split_records(load_karpathy(path, tmp_path), s)) for s in ("train", "val", "test")] == [8, 1, 1]
    tiny = write_shapes_dataset(tmp_path / "tiny", num_images=3)
    assert [len(split_records(load_karpathy(tiny, tmp_path / "tiny"), s)) for s in ("train", "val", "test")] == [1, 1, 1]
    with pytest.raises(ValueError, match="add up to"):
        write_shapes_dataset(tmp_path, num_images=5, splits=(1, 1, 1))
