"""Issue 27's minor cases, one line each: every one ends in a working result or one error line naming the file
or argument and the problem, never an internal exception text."""

from __future__ import annotations

import io
import json
import os
import warnings

import pytest
from PIL import Image

from bench.hostile_inputs import coco_captions, coco_results
from captioning.cli import main as captioning_cli
from captioning.data.annotations import DatasetError, read_json
from captioning.engine.device import resolve_device
from captioning.images import ImageLoadError, open_image
from captioning.metrics import score_results_file
from captioning.training import TrainingError, saved_state
from captioning.vocab import Vocabulary
from vqa import QuestionError

from .helpers import CAPTIONS, random_features, tiny_captioner
from .test_reliability_questions import IMAGE, _answerer


def test_json_nested_deeper_than_the_recursion_limit_names_the_file(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match=r"deep\.json: invalid JSON \(nested too deeply"):
        read_json(deep)
    with pytest.raises(ValueError, match=r"deep\.json: not valid JSON"):
        score_results_file(deep, coco_captions(tmp_path / "ann.json", {1: ["a dog"]}), use_java=False)


@pytest.mark.parametrize("annotations, message", [
    ([], 'expected a JSON object with an "annotations" list'),
    ({"annotations": [{"image_id": 1, "caption": 5}]}, r"annotations\[0\]: the caption must be text, got int"),
    ({"annotations": [{"image_id": 1}]}, r'annotations\[0\]: expected an object with "image_id" and "caption"'),
    ({"annotations": [{"image_id": 1, "caption": ""}, {"image_id": 1, "caption": " . "}]},
     "1 captioned images have no reference captions with words"),
])
def test_broken_coco_annotations_for_a_results_file_are_named(tmp_path, annotations, message):
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    with pytest.raises(ValueError, match=message):
        score_results_file(coco_results(tmp_path / "res.json", {1: "a dog"}), tmp_path / "ann.json", use_java=False)


def test_a_results_file_covering_few_images_says_so(tmp_path):
    annotations = coco_captions(tmp_path / "ann.json", {i: ["a dog runs", "a brown dog"] for i in range(60)})
    scores = score_results_file(coco_results(tmp_path / "res.json", {3: "a dog runs"}), annotations, use_java=False)
    assert scores.notes[0] == f"the results caption 1 of the 60 images in {annotations}; only those are scored"
    assert scores.metrics["Bleu_1"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"1 of its image ids are not in .*ann\.json \(e\.g\. 99\)"):
        score_results_file(coco_results(tmp_path / "res2.json", {99: "a cat"}), annotations, use_java=False)


@pytest.mark.parametrize("name", ["meta", "xpu"])
def test_devices_nothing_runs_on_are_refused_by_name(name):
    with pytest.raises(ValueError, match=f"--device {name}: not a device this project runs on"):
        resolve_device(name)


def test_a_fifo_a_link_to_dev_zero_or_a_directory_is_not_called_missing(tmp_path):
    fifo, link = tmp_path / "fifo.jpg", tmp_path / "zero.jpg"
    os.mkfifo(fifo)
    link.symlink_to("/dev/zero")
    for path in (fifo, link):
        with pytest.raises(ImageLoadError, match="not a regular file"):
            open_image(path)
    with pytest.raises(ImageLoadError, match="is a directory, not an image file"):
        open_image(tmp_path)
    with pytest.raises(ImageLoadError, match="no such file"):
        open_image(tmp_path / "absent.jpg")


def test_damaged_exif_is_quiet(tmp_path, capfd):
    """A JPEG whose EXIF claims more bytes than it holds: PIL warns on stderr; the image opens, silently."""
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), "red").save(buffer, "JPEG", exif=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x05"
                                                                b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06")
    (tmp_path / "exif.jpg").write_bytes(buffer.getvalue())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert open_image(tmp_path / "exif.jpg").size == (50, 40)
    assert not caught


def test_a_truncated_trainer_json_is_named(tmp_path):
    (tmp_path / "trainer.json").write_text('{"trainer": {"step": 3, "ep')
    with pytest.raises(TrainingError, match=r"trainer\.json: cannot read the training state"):
        saved_state(tmp_path)


def test_a_bad_setting_is_blamed_on_where_it_came_from(tmp_path, capsys):
    argv = ["train", "--annotations", str(tmp_path / "a.json"), "--images", str(tmp_path), "--out",
            str(tmp_path / "run")]
    assert captioning_cli([*argv, "--epochs", "0"]) == 1
    assert capsys.readouterr().err.strip().endswith("error: --epochs must be at least 1, got 0")
    (tmp_path / "e.yaml").write_text("epochs: 0\n")
    assert captioning_cli([*argv, "--config", str(tmp_path / "e.yaml")]) == 1
    assert f"error: {tmp_path / 'e.yaml'}: --epochs must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_failed_start_leaves_no_run_folder(tmp_path, capsys):
    """Bad data after the run folder's lock was taken: the folder is left as found (no lone train.lock)."""
    (tmp_path / "a.json").write_text("[]")
    assert captioning_cli(["train", "--annotations", str(tmp_path / "a.json"), "--images", str(tmp_path),
                           "--out", str(tmp_path / "run")]) == 1
    assert "neither a Karpathy split file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()
    assert captioning_cli(["train", "--annotations", str(tmp_path / "a.json"), "--images", str(tmp_path),
                           "--out", str(tmp_path / "kept")]) == 1
    assert list((tmp_path / "kept").iterdir()) == []


def test_sampling_with_a_beam_size_is_an_error_not_ignored():
    model = tiny_captioner(Vocabulary.build(CAPTIONS, min_freq=1))
    feats = random_features(1, seed=5)
    with pytest.raises(ValueError, match="sample=True draws one caption per image; beam_size is for beam search"):
        model.caption_features(feats, sample=True, beam_size=3, seed=0)
    sampled = model.caption_features(feats, sample=True, seed=0)[0].text
    assert sampled == model.caption_features(feats, sample=True, beam_size=1, seed=0)[0].text
    assert model.caption_features(feats)[0].text == model.caption_features(feats, beam_size=3)[0].text


def test_choices_that_tie_say_so_and_none_is_not_a_choice():
    answerer = _answerer("telling")
    tied = answerer.answer(IMAGE, "what color is the square", [f"zq{i} xv{i}" for i in range(1000)])
    assert tied.text == "zq0 xv0"
    assert any("1000 choices tie for the best score" in n for n in tied.notices)
    with pytest.raises(QuestionError, match=r"choices\[1\] is NoneType, not text or a number"):
        answerer.answer(IMAGE, "what color is the square", ["red", None])
    assert answerer.answer(IMAGE, "what color is the square", [2, "red"]).choices == ["2", "red"]
