"""The shipped models give exactly the outputs recorded in tests/data/bundled_outputs.json.

The expectations were generated from the code before the model-core redesign; a refactor that
changes any caption, token, log-probability (to 1e-4), attention map or answer score fails here.
Regenerate only on purpose: `PYTHONPATH=. python tests/test_bundled_outputs.py --write`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = Path(__file__).parent / "data" / "bundled_outputs.json"
CAPTIONERS = ("shapes-soft", "shapes-hard", "shapes-hard:argmax")  # the hard model also attending at argmax
BEAMS = (1, 3)
SCENES = ((7, 0), (7, 1), (123, 0))  # (seed, index) of captioning.data.shapes.make_scene
QUESTIONS = (  # (image, question, choices or None)
    ("a-red-triangle.png", "what color is the shape?", None),
    ("a-red-triangle.png", "what shape is this?", ["circle", "triangle", "rectangle"]),
    ("easy-vqa-style-teal-rectangle.png", "what color is the rectangle?", None),
    ("easy-vqa-style-teal-rectangle.png", "is there a circle?", ["yes", "no"]),
    ("scene:123:0", "how many shapes are there?", ["one", "two", "three"]),
    ("scene:7:1", "what color is the circle?", None),
)


def _images() -> dict[str, object]:
    from captioning.data.shapes import make_scene
    from captioning.images import open_image

    images = {p.name: open_image(p) for p in sorted((ROOT / "app" / "examples").glob("*.png"))}
    for seed, index in SCENES:
        images[f"scene:{seed}:{index}"] = make_scene(seed=seed, index=index)[0]
    return images


def _attention(att: torch.Tensor) -> dict[str, list]:
    flat = att.reshape(att.shape[0], -1).double()
    centroid = flat @ torch.arange(flat.shape[1], dtype=torch.float64)  # sum_i i alpha_i: moves with any change
    return {"sums": flat.sum(-1).tolist(), "argmax": flat.argmax(-1).tolist(), "centroid": centroid.tolist()}


def current_outputs() -> dict:
    from captioning import load_captioner
    from vqa import load_answerer

    images = _images()
    out: dict = {"captions": {}, "answers": []}
    for name in CAPTIONERS:
        model = load_captioner(name.split(":")[0])
        if name.endswith(":argmax"):  # the config's own type: a str before the redesign, an enum after
            model.config.hard_inference = type(model.config.hard_inference)("argmax")
        for key, image in images.items():
            for beam in BEAMS:
                r = model.caption([image], beam_size=beam)[0]
                out["captions"][f"{name}|{key}|beam{beam}"] = {
                    "text": r.text, "tokens": r.tokens, "log_prob": r.log_prob, **_attention(r.attention)}
    answerer = load_answerer("easy-vqa-shapes")
    for key, question, choices in QUESTIONS:
        r = answerer.answer(images[key], question, choices=choices)
        out["answers"].append({"image": key, "question": question, "choices": r.choices, "text": r.text,
                               "scores": r.scores, **_attention(r.attention)})
    return out


@pytest.fixture(scope="module")
def outputs() -> dict:
    return current_outputs()


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads(EXPECTED.read_text())


def assert_same_attention(got: dict, want: dict, where: str) -> None:
    assert got["argmax"] == want["argmax"], where
    assert got["sums"] == pytest.approx(want["sums"], abs=1e-4), where
    assert got["centroid"] == pytest.approx(want["centroid"], abs=1e-3), where


def test_bundled_captioners_caption_exactly_as_recorded(outputs, expected):
    assert outputs["captions"].keys() == expected["captions"].keys()
    for key, want in expected["captions"].items():
        got = outputs["captions"][key]
        assert got["text"] == want["text"], key
        assert got["tokens"] == want["tokens"], key
        assert got["log_prob"] == pytest.approx(want["log_prob"], abs=1e-4), key
        assert_same_attention(got, want, key)


def test_bundled_answerer_answers_exactly_as_recorded(outputs, expected):
    assert len(outputs["answers"]) == len(expected["answers"])
    for got, want in zip(outputs["answers"], expected["answers"], strict=True):
        where = f"{want['image']}: {want['question']}"
        assert got["choices"] == want["choices"], where
        assert got["text"] == want["text"], where
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-4), where
        assert_same_attention(got, want, where)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    torch.set_num_threads(1)
    EXPECTED.write_text(json.dumps(current_outputs()) + "\n")
    print(f"wrote {EXPECTED}")
