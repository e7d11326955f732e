"""`captioning naming`: how often captions name the labelled animal, counted right."""

from __future__ import annotations

import json
import types

import pytest
from PIL import Image

from captioning.data.annotations import DatasetError
from captioning.naming import format_table, naming_table, read_labels


class ScriptedCaptioner:
    """Says what it is told per photo colour: red photos are captioned `red`, the others `other`."""

    def __init__(self, red: str, other: str):
        self.texts = {True: red, False: other}
        self.encoder = types.SimpleNamespace(preprocess=types.SimpleNamespace(decode_at_least=64))
        self.guides = []

    def caption(self, images, *, beam_size, guide):
        self.guides.append(guide)
        out = []
        for image in images:
            text = self.texts[image.convert("RGB").getpixel((0, 0))[0] > 200]
            out.append(types.SimpleNamespace(text=text, tokens=text.split()))
        return out


@pytest.fixture
def photos(tmp_path):
    labels = {}
    for i, (colour, label) in enumerate([((250, 0, 0), "cat"), ((250, 0, 0), "cat"), ((0, 0, 250), "cat"),
                                         ((0, 0, 250), "dog"), ((250, 0, 0), "dog")]):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"p{i}.png")
        labels[f"p{i}.png"] = label
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    return tmp_path


def test_counts_right_wrong_and_neither(photos):
    model = ScriptedCaptioner(red="a kitten sleeps on a bed", other="a dog runs")
    rows = {r.label: r for r in naming_table(model, read_labels(photos / "labels.json"), photos, guide=None)}
    assert (rows["cat"].photos, rows["cat"].right, rows["cat"].wrong, rows["cat"].neither) == (3, 2, 1, 0)
    assert (rows["dog"].photos, rows["dog"].right, rows["dog"].wrong, rows["dog"].neither) == (2, 1, 1, 0)
    table = format_table({"guided": list(rows.values())})
    assert "| guided | cat | 3 | 66.7% | 33.3% | 0.0% |" in table
    assert "| guided | (all) | 5 | 60.0% | 40.0% | 0.0% |" in table


def test_labels_are_checked(tmp_path):
    bad = tmp_path / "labels.json"
    for content, message in (("[]", "JSON object"), ('{"a.jpg": "unicorn"}', "not caption words"), ("{", "cannot read")):
        bad.write_text(content)
        with pytest.raises(DatasetError, match=message):
            read_labels(bad)
