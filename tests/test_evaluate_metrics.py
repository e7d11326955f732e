"""Metrics, the results-file scorer and the attention-grounding score."""

from __future__ import annotations

import json

import pytest
import torch

from captioning.grounding import grounding_score, peak_point
from captioning.metrics import bleu4, java_available, ptb_tokenized, score_captions, score_results_file

REFS = {1: ["a red circle above a blue square", "there is a red circle and a blue square"],
        2: ["a green triangle on the left", "a single green triangle"],
        3: ["two yellow squares next to each other", "there are two yellow squares"]}


def test_perfect_captions_score_one_and_wrong_ones_less():
    perfect = score_captions(REFS, {i: r[0] for i, r in REFS.items()}, use_java=False)
    assert perfect.metrics["Bleu_4"] == pytest.approx(1.0)
    assert perfect.metrics["nltk_BLEU_4"] == pytest.approx(1.0)  # (nltk counts a 3-word caption as a missed 4-gram)
    assert perfect.metrics["ROUGE_L"] == pytest.approx(1.0)
    assert perfect.tokenizer == "regex" and "METEOR" not in perfect.metrics
    assert any("regex tokenizer" in n for n in perfect.notes)
    wrong = score_captions(REFS, {1: "a blue circle", 2: "a red square", 3: "one green circle"}, use_java=False)
    assert wrong.metrics["Bleu_4"] < 0.1 and wrong.metrics["CIDEr"] < perfect.metrics["CIDEr"]
    assert bleu4(REFS, {i: r[0].upper() + "." for i, r in REFS.items()}) == pytest.approx(1.0)


def test_missing_references_are_named():
    with pytest.raises(ValueError, match="no reference captions"):
        score_captions(REFS, {7: "a cat"}, use_java=False)


@pytest.mark.skipif(not java_available(), reason="needs Java")
def test_ptb_tokenizer_matches_coco_caption():
    gts, res = ptb_tokenized({1: ["A man's dog, running."]}, {1: "Two dogs!"}, [1])
    assert gts == {1: ["a man 's dog running"]} and res == {1: ["two dogs"]}


def test_results_file_scored_like_coco_caption(tmp_path):
    annotations = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in REFS],
                   "annotations": [{"id": 10 * i + k, "image_id": i, "caption": c}
                                   for i, caps in REFS.items() for k, c in enumerate(caps)]}
    (tmp_path / "captions_val2014.json").write_text(json.dumps(annotations))
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": i, "caption": r[0]} for i, r in REFS.items()]))
    scores = score_results_file(tmp_path / "res.json", tmp_path / "captions_val2014.json", use_java=False)
    assert scores.metrics["Bleu_4"] == pytest.approx(1.0)
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 99, "caption": "a cat"}]))
    with pytest.raises(ValueError, match="image ids are not in"):
        score_results_file(tmp_path / "bad.json", tmp_path / "captions_val2014.json", use_java=False)
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ValueError, match="empty"):
        score_results_file(tmp_path / "empty.json", tmp_path / "captions_val2014.json", use_java=False)


@pytest.mark.parametrize("entries, says", [
    ([{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}], "entry 1: image_id 1 already has a caption"),
    ([{"image_id": 1, "caption": 7}], "entry 0 \\(image_id 1\\): the caption must be text, got int"),
    ([{"image_id": 1, "caption": None}], "must be text, got NoneType"),
    ([{"image_id": 1, "caption": ["a", "cat"]}], "must be text, got list"),
    ([{"image_id": [1], "caption": "a cat"}], "image_id must be a number or a string")])
def test_bad_results_entries_are_named(tmp_path, entries, says):
    (tmp_path / "res.json").write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=f"res.json: .*{says}"):
        score_results_file(tmp_path / "res.json", tmp_path / "captions_val2014.json", use_java=False)


def one_hot_map(row: int, col: int, grid: int = 4) -> torch.Tensor:
    m = torch.full((grid, grid), 0.01)
    m[row, col] = 1.0
    return m


def test_peak_point_is_the_cell_centre_in_pixels():
    assert peak_point(one_hot_map(0, 0), 128, 64) == (16.0, 8.0)
    assert peak_point(one_hot_map(3, 1), 128, 128) == (48.0, 112.0)


def test_grounding_score_counts_colour_and_shape_words():
    objects = [{"color": "red", "shape": "circle", "box": [0, 0, 40, 40]},
               {"color": "blue", "shape": "square", "box": [70, 70, 128, 128]}]
    words = ["a", "red", "circle", "and", "a", "blue", "squares"]
    attention = torch.stack([one_hot_map(0, 0)] * 3 + [one_hot_map(0, 0)] * 2   # red, circle: on the circle
                            + [one_hot_map(0, 0), one_hot_map(3, 3)])           # blue: wrong; squares: right
    score = grounding_score([(words, attention, objects, (128, 128))], ["red", "blue"], ["circle", "square"])
    assert (score.grounded, score.words) == (3, 4) and score.score == pytest.approx(0.75)
    assert score.colour == (1, 2) and score.shape == (2, 2)
    empty = grounding_score([(["a", "cat"], torch.rand(2, 4, 4), objects, (128, 128))], ["red"], ["circle"])
    assert (empty.words, empty.score) == (0, 0.0)


def test_objects_in_another_schema_skip_grounding_with_a_note(tmp_path, capsys):
    from pathlib import Path

    from captioning.data import ImageRecord
    from captioning.evaluate import attention_grounding

    record = ImageRecord("x", Path(tmp_path / "x.jpg"), "test", ["a cat"], objects=[{"name": "cat", "bbox": [1, 2]}])
    assert attention_grounding([record], [None], [record]) is None
    assert "grounding score skipped" in capsys.readouterr().out


@pytest.mark.skipif(not java_available(), reason="the PTB tokenizer needs Java")
def test_line_breaks_inside_captions_cannot_shift_the_scoring():
    """A carriage return or U+2028 inside one caption must not move later captions onto other images'
    references."""
    refs = {1: ["a dog runs on the grass", "a brown dog\rruns"], 2: ["a cat sleeps on a bed", "a grey cat"],
            3: ["two men ride bikes", "two cyclists on a road"]}
    hyps = {1: "a dog\u2028runs on the grass", 2: "a cat sleeps\ron a bed", 3: "two men ride\x85bikes"}
    broken = score_captions(refs, hyps, spice=False).metrics
    clean = score_captions(refs, {i: " ".join(h.split()) for i, h in hyps.items()}, spice=False).metrics
    assert broken == pytest.approx(clean)
    itself = score_captions(refs, {i: r[0] for i, r in refs.items()}, spice=False).metrics
    assert itself["Bleu_1"] == pytest.approx(1.0)
