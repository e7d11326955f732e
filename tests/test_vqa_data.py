"""VQA data: the official Visual7W layout (telling and pointing), easy-VQA multiple choice,
questions as the model reads them, and flat YAML/command-line configuration."""

from __future__ import annotations

import argparse
import json

import pytest

from captioning.data.records import DatasetError
from captioning.vocab import Vocabulary
from vqa.config import TrainConfig, add_config_arguments, given, read_yaml, resolve_config
from vqa.data import EASY_VQA_GROUPS, load_easy_vqa, load_visual7w, normalize
from vqa.model import QuestionError, parse_box, read_question

from .test_vqa_helpers import write_visual7w


def test_visual7w_telling_official_layout(tmp_path):
    annotations, images = write_visual7w(tmp_path, "telling")
    data = load_visual7w(annotations, images, "telling")
    assert data.types == ["what", "where", "when", "who", "why", "how"]
    assert {q.split for q in data.questions} == {"train", "val", "test"}
    assert len(data.split("train")) == 9 * 6
    for q in data.questions:
        assert len(q.candidates) == 4 and q.candidates[q.answer_index] == q.answer
        assert data.images[q.image].is_file()
    # the answer's position among the candidates is shuffled, and the same on every load
    assert len({q.answer_index for q in data.questions}) > 1
    again = load_visual7w(annotations, images, "telling")
    assert [q.candidates for q in again.questions] == [q.candidates for q in data.questions]


def test_visual7w_pointing_boxes(tmp_path):
    annotations, images = write_visual7w(tmp_path, "pointing")
    data = load_visual7w(annotations, images, "pointing")
    assert data.types == ["which"]
    q = data.questions[0]
    assert all(isinstance(b, int) and b in data.boxes for b in q.candidates)
    assert data.boxes[q.answer].corners(48, 48) in {(0, 0, 24, 24), (24, 0, 48, 24), (0, 24, 24, 48), (24, 24, 48, 48)}


def test_visual7w_errors_name_the_problem(tmp_path):
    annotations, images = write_visual7w(tmp_path, "telling")
    with pytest.raises(DatasetError, match="use --task telling"):
        load_visual7w(annotations, images, "pointing")
    pointing, _ = write_visual7w(tmp_path / "p", "pointing")
    with pytest.raises(DatasetError, match="pointing file; use --task pointing"):
        load_visual7w(pointing, images, "telling")
    data = json.loads(annotations.read_text())
    data["images"][0]["qa_pairs"][0].pop("answer")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r'images\[0\]\.qa_pairs\[0\]: missing "answer"'):
        load_visual7w(broken, images, "telling")
    (images / "v7w_2354786.jpg").unlink()
    with pytest.raises(DatasetError, match=r"images\[0\]: image file not found: .*v7w_2354786.jpg \(1 of 15 images missing"):
        load_visual7w(annotations, images, "telling")
    broken.write_text("{not json")
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_visual7w(broken, images, "telling")


@pytest.mark.parametrize("change, says", [
    (lambda qa: qa["multiple_choices"].pop(), "\"multiple_choices\" holds 2 wrong answers, not 3"),
    (lambda qa: qa["multiple_choices"].__setitem__(0, qa["answer"].upper() + "!"), "a wrong choice equals the answer"),
    (lambda qa: qa.__setitem__("answer", "  ?! "), "the answer has no words"),
    (lambda qa: qa.__setitem__("question", "?" * 100_000), "the question has no words: '\\?+\\.\\.\\.")])
def test_visual7w_choices_that_make_accuracy_meaningless_are_refused(tmp_path, change, says):
    """Fewer than 3 wrong choices, or one equal to the answer, made multiple-choice accuracy read 1.000."""
    annotations, images = write_visual7w(tmp_path, "telling")
    data = json.loads(annotations.read_text())
    change(data["images"][0]["qa_pairs"][0])
    annotations.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"images\[0\]\.qa_pairs\[0\]: {says}") as caught:
        load_visual7w(annotations, images, "telling")
    assert len(str(caught.value)) < 300
    kept = load_visual7w(annotations, images, "telling", skip_invalid=True)
    assert len(kept.questions) == len(load_visual7w(*write_visual7w(tmp_path / "ok", "telling"), "telling").questions) - 1


def test_easy_vqa_splits_and_multiple_choice():
    data = load_easy_vqa(val_holdout=0.1, seed=0, choices_seed=0)
    train, val, test = data.split("train"), data.split("val"), data.split("test")
    assert len(train) + len(val) == 38575 and len(test) == 9673
    assert len({q.image for q in val}) == 400 and not {q.image for q in val} & {q.image for q in train}
    group_of = {a: g for g, names in EASY_VQA_GROUPS.items() for a in names}
    for q in test[:500]:
        assert len(set(q.candidates)) == 4 and q.answer in q.candidates
        if q.type == "color":  # wrong answers come from the answer's own group first
            assert all(group_of[c] == "color" for c in q.candidates)
        assert q.type == group_of[q.answer]
    again = load_easy_vqa(val_holdout=0.1, seed=0, choices_seed=0)
    assert [q.candidates for q in again.split("test")[:200]] == [q.candidates for q in test[:200]]


def test_questions_as_the_model_reads_them():
    vocab = Vocabulary.build(["what color is the circle"])
    ids, words, truncated = read_question(vocab, "What COLOR is the hexagon?", 24)
    assert words == ["what", "color", "is", "the", "<unk>"] and not truncated
    assert ids[-1] == vocab.unk_id
    ids, words, truncated = read_question(vocab, "what " * 40, 24)
    assert truncated and len(ids) == 24
    _, words, _ = read_question(vocab, "Qué color tiene el círculo?", 24)
    assert words[0] == "<unk>" and len(words) == 5
    for empty in ("", "   ", "?!...", "¿?"):
        with pytest.raises(QuestionError, match="no words"):
            read_question(vocab, empty, 24)
    assert normalize("On a bench.") == "on a bench"
    assert parse_box("10,20,30,40").width == 30
    with pytest.raises(QuestionError):
        parse_box("10,20")


def test_boxes_given_in_the_files_pixels_follow_a_reduced_scale_decode():
    import io

    from PIL import Image

    from captioning.images import open_image
    from vqa.model import in_decoded_pixels

    buffer = io.BytesIO()
    Image.new("RGB", (2000, 1400), "gray").save(buffer, "JPEG")
    full, half = open_image(buffer.getvalue()), open_image(buffer.getvalue(), at_least=640)
    assert half.size == (1000, 700)
    box = parse_box("400,200,800,600")
    assert in_decoded_pixels([box], full) == [box]
    (scaled,) = in_decoded_pixels([box], half)
    assert (scaled.x, scaled.y, scaled.width, scaled.height) == (200, 100, 400, 300)
    assert scaled.corners(*half.size) == tuple(c // 2 for c in box.corners(*full.size))


def test_flat_yaml_and_command_line(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("format: easy-vqa\nhidden_dim: 64\nreinforce_samples: 3\nepochs: 2\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--hidden-dim", "32", "--no-gate", "--attention", "hard"])
    config = resolve_config(tmp_path / "run", str(yaml_file), given(args), resuming=False)
    assert isinstance(config, TrainConfig)
    assert config.format == "easy-vqa" and config.epochs == 2
    assert config.model.hidden_dim == 32 and config.model.gate is False and config.model.attention == "hard"
    assert config.model.reinforce.samples == 3
    yaml_file.write_text("hiden_dim: 64\n")
    with pytest.raises(ValueError, match="unknown key"):
        read_yaml(yaml_file)
    yaml_file.write_text("epochs: ten\n")
    with pytest.raises(ValueError, match="epochs must be int"):
        read_yaml(yaml_file)
    with pytest.raises(ValueError, match="unknown format"):
        TrainConfig(format="coco")
    with pytest.raises(ValueError, match="task must be one of"):
        resolve_config(tmp_path / "run", None, {"task": "counting"}, resuming=False)


def test_shapes_questions(tmp_path):
    from captioning.data.shapes import write_shapes_dataset
    from vqa.data import load_shapes

    annotations = write_shapes_dataset(tmp_path, num_images=10, seed=0)
    data = load_shapes(annotations, tmp_path)
    assert {"count", "color", "shape", "exists"} <= set(data.types)
    assert {q.split for q in data.questions} == {"train", "val", "test"}
    for q in data.questions:
        assert q.answer in q.candidates and 2 <= len(q.candidates) <= 4
        assert data.images[q.image].is_file()


def test_one_box_id_answer_in_a_telling_file_is_a_bad_entry_not_a_pointing_file(tmp_path):
    annotations, images = write_visual7w(tmp_path, "telling")
    data = json.loads(annotations.read_text())
    data["images"][0]["qa_pairs"][0]["answer"] = 7
    annotations.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r'images\[0\]\.qa_pairs\[0\]: "answer" has the wrong type \(int\)') as caught:
        load_visual7w(annotations, images, "telling")
    assert "pointing file" not in str(caught.value)
    full = len(load_visual7w(*write_visual7w(tmp_path / "ok", "telling"), "telling").questions)
    assert len(load_visual7w(annotations, images, "telling", skip_invalid=True).questions) == full - 1
