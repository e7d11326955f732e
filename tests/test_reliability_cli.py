"""Bad input through the command lines: broken annotation files for `captioning train` and `vqa train`
(one line naming file and entry, or skipped and counted with --skip-invalid), and everyday mistakes
(missing run folder, bad image, pickled checkpoint, unknown encoder, bad --device): always a one-line
`error: ...`, a non-zero status and no traceback; `--debug` gives the real exception instead."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

from captioning import Vocabulary
from captioning.cli import main as captioning_cli
from captioning.data import write_shapes_dataset
from captioning.encoders import list_encoders
from vqa.cli import main as vqa_cli

from .helpers import CAPTIONS, tiny_captioner
from .test_vqa_helpers import TINY_MODEL, tiny_encoder, write_visual7w  # noqa: F401  (the fixture)

TINY_TRAIN = ["--image-size", "64", "--embed-dim", "16", "--hidden-dim", "32", "--attention-dim", "16",
              "--batch-size", "8", "--min-freq", "1", "--num-workers", "0", "--beam-size", "1", "--max-len", "8",
              "--epochs", "1", "--dropout", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(root, splits=(8, 2, 2), image_size=64, seed=3)
    return root, json.loads((root / "dataset_shapes.json").read_text())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_captioner(Vocabulary.build(CAPTIONS)).save(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "fine.png"
    Image.new("RGB", (96, 72), (20, 90, 200)).save(path)  # big enough for no "too small" notice
    return path


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# ---- annotation files ------------------------------------------------------------------------------
def _karpathy_variants(data: dict) -> dict[str, tuple[object, str]]:
    """name -> (file content, what the error must name besides the file)."""
    out: dict[str, tuple[object, str]] = {"truncated": (json.dumps(data)[:700], "invalid JSON"),
                                          "not json": (b"\xff\xfe\x00binary", "cannot read"),
                                          "wrong shape": ("[1, 2, 3]", "\"images\" list")}
    x = copy.deepcopy(data)
    del x["images"][3]["sentences"]
    out["missing field"] = (x, 'images[3]: missing "sentences"')
    x = copy.deepcopy(data)
    x["images"][5] = copy.deepcopy(x["images"][1])
    out["duplicate id"] = (x, "images[5]: duplicate image id")
    x = copy.deepcopy(data)
    x["images"][6]["filename"] = "gone.png"
    out["missing image"] = (x, "images[6]: image file not found")
    x = copy.deepcopy(data)
    x["images"][2] = "a string"
    out["not an object"] = (x, "images[2]: expected an object")
    x = copy.deepcopy(data)
    x["images"][4]["sentences"] = [{"nothing": 1}]
    out["bad sentence"] = (x, "images[4].sentences[0]")
    return out


def _write(path: Path, content: object) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_captioning_train_names_file_and_entry_of_each_bad_annotation(shapes, tmp_path, capsys):
    root, data = shapes
    for name, (content, needle) in _karpathy_variants(data).items():
        path = _write(tmp_path / f"dataset_{name.replace(' ', '_')}.json", content)
        code = captioning_cli(["train", "--annotations", str(path), "--images", str(root),
                               "--out", str(tmp_path / "run"), *TINY_TRAIN])
        assert code == 1, name
        one_line_error(capsys, path.name, needle)
    assert not (tmp_path / "run" / "last").exists()


def test_captioning_train_skip_invalid_skips_and_counts(shapes, tmp_path, capsys, caplog):
    root, data = shapes
    x = copy.deepcopy(data)
    del x["images"][3]["sentences"]                   # malformed
    x["images"][5] = copy.deepcopy(x["images"][1])    # duplicate id
    x["images"][6]["filename"] = "gone.png"           # missing image
    x["images"][2] = "a string"                       # not an object
    path = _write(tmp_path / "dataset_messy.json", x)
    argv = ["train", "--annotations", str(path), "--images", str(root), "--out", str(tmp_path / "run"),
            "--cache-dir", str(root / "cache"), *TINY_TRAIN]
    assert captioning_cli(argv) == 1
    one_line_error(capsys, path.name, "images[2]")
    assert captioning_cli([*argv, "--skip-invalid"]) == 0
    assert "training on 4 images" in capsys.readouterr().out   # 8 train images, 4 bad
    summary = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 4 entries" in summary and "2 malformed entries" in summary
    assert "1 duplicate image ids" in summary and "1 missing image files" in summary


def _visual7w_variants(data: dict) -> dict[str, tuple[object, str]]:
    out: dict[str, tuple[object, str]] = {"truncated": (json.dumps(data)[:300], "invalid JSON"),
                                          "wrong shape": ('{"questions": []}', 'an "images" list')}
    x = copy.deepcopy(data)
    del x["images"][2]["qa_pairs"][1]["question"]
    out["missing field"] = (x, 'images[2].qa_pairs[1]: missing "question"')
    x = copy.deepcopy(data)
    x["images"][3]["qa_pairs"][0]["qa_id"] = x["images"][1]["qa_pairs"][2]["qa_id"]
    out["duplicate qa id"] = (x, "images[3].qa_pairs[0]: duplicate qa_id")
    x = copy.deepcopy(data)
    x["images"][4]["image_id"] = x["images"][0]["image_id"]
    out["duplicate image id"] = (x, "images[4]: duplicate image_id")
    x = copy.deepcopy(data)
    x["images"][5]["filename"] = "gone.jpg"
    out["missing image"] = (x, "images[5]: ")
    x = copy.deepcopy(data)
    x["images"][6]["qa_pairs"][0]["question"] = "?!?"
    out["question without words"] = (x, "images[6].qa_pairs[0]: the question has no words")
    x = copy.deepcopy(data)
    x["images"][7]["qa_pairs"][3] = 7
    out["not an object"] = (x, "images[7].qa_pairs[3]: expected an object")
    return out


@pytest.mark.usefixtures("tiny_encoder")
def test_vqa_train_names_file_and_entry_and_skips_with_the_flag(tmp_path, capsys, caplog):
    annotations, images = write_visual7w(tmp_path / "v7w", "telling")
    data = json.loads(annotations.read_text())
    for name, (content, needle) in _visual7w_variants(data).items():
        path = _write(tmp_path / f"v7w_{name.replace(' ', '_')}.json", content)
        code = vqa_cli(["train", "--annotations", str(path), "--images", str(images), "--out",
                        str(tmp_path / "run"), *TINY_MODEL, "--epochs", "1"])
        assert code == 1, name
        one_line_error(capsys, path.name, needle)
    assert "image file not found" in _missing_image_message(tmp_path, images, data, capsys)

    x = copy.deepcopy(data)
    del x["images"][2]["qa_pairs"][1]["question"]                              # 1 malformed question
    x["images"][3]["qa_pairs"][0]["qa_id"] = x["images"][1]["qa_pairs"][2]["qa_id"]  # 1 duplicate question
    x["images"][4]["image_id"] = x["images"][0]["image_id"]                    # 1 duplicate image (6 questions)
    x["images"][5]["filename"] = "gone.jpg"                                    # 1 missing image (6 questions)
    path = _write(tmp_path / "v7w_messy.json", x)
    assert vqa_cli(["train", "--annotations", str(path), "--images", str(images), "--out", str(tmp_path / "ok"),
                    *TINY_MODEL, "--epochs", "1", "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert f"training on {9 * 6 - 2 - 12} questions (13 images)" in out
    summary = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 4 entries" in summary and "2 duplicate ids" in summary
    assert "1 malformed entries" in summary and "1 missing image files" in summary


@pytest.mark.usefixtures("tiny_encoder")
def test_vqa_pointing_file_with_duplicate_box_ids(tmp_path, capsys):
    annotations, images = write_visual7w(tmp_path / "v7w", "pointing")
    data = json.loads(annotations.read_text())
    data["boxes"][5]["box_id"] = data["boxes"][2]["box_id"]
    path = _write(tmp_path / "v7w_boxes.json", data)
    assert vqa_cli(["train", "--annotations", str(path), "--images", str(images), "--task", "pointing",
                    "--out", str(tmp_path / "run"), *TINY_MODEL]) == 1
    one_line_error(capsys, path.name, "boxes[5]: duplicate box_id")


def _missing_image_message(tmp_path, images, data, capsys) -> str:
    x = copy.deepcopy(data)
    x["images"][5]["filename"] = "gone.jpg"
    x["images"][6]["filename"] = "gone_too.jpg"
    path = _write(tmp_path / "v7w_two_missing.json", x)
    assert vqa_cli(["train", "--annotations", str(path), "--images", str(images), "--out", str(tmp_path / "run"),
                    *TINY_MODEL]) == 1
    return one_line_error(capsys, path.name, "images[5]", "gone.jpg", "2 of 15 images missing")


# ---- everyday mistakes ---------------------------------------------------------------------------------
class Boobytrap:
    """Unpickling this creates `marker`: proof that a loader executed pickle code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _pickled_checkpoint(source: Path, folder: Path, marker: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("config.json", "vocab.json"):
        (folder / name).write_text((source / name).read_text())
    (folder / "model.safetensors").write_bytes(pickle.dumps({"weights": Boobytrap(marker)}, protocol=4))
    return folder


def test_captioning_everyday_mistakes_are_one_line(checkpoint, picture, tmp_path, capsys):
    missing = str(tmp_path / "no_such_run")
    assert captioning_cli(["evaluate", missing]) == 1
    one_line_error(capsys, "no_such_run", "no such checkpoint folder")
    assert captioning_cli(["caption", missing, str(picture)]) == 1
    one_line_error(capsys, "no_such_run")

    garbage = tmp_path / "photo.jpg"
    garbage.write_bytes(b"<html>not a photo</html>")
    assert captioning_cli(["caption", str(checkpoint), str(tmp_path / "nope.png")]) == 1
    one_line_error(capsys, "nope.png", "no such file")
    assert captioning_cli(["caption", str(checkpoint), str(garbage), str(picture)]) == 1  # others still captioned
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{picture}\t") and captured.err.count("\n") == 1 and "photo.jpg" in captured.err

    marker = tmp_path / "pwned"
    pickled = _pickled_checkpoint(checkpoint, tmp_path / "pickled", marker)
    assert captioning_cli(["caption", str(pickled), str(picture)]) == 1
    one_line_error(capsys, "model.safetensors", "refusing to unpickle")
    torch.save({"state_dict": {}}, tmp_path / "model.pt")
    assert captioning_cli(["caption", str(tmp_path / "model.pt"), str(picture)]) == 1
    one_line_error(capsys, "model.pt", "not a single file")
    assert not marker.exists()

    with pytest.raises(SystemExit) as exit_info:
        captioning_cli(["train", "--out", str(tmp_path / "r"), "--encoder", "resnet9000"])
    assert exit_info.value.code == 2
    one_line_error(capsys, "resnet9000", *list_encoders())
    (tmp_path / "bad.yaml").write_text("encoder: resnet9000\n")
    assert captioning_cli(["train", "--out", str(tmp_path / "r"), "--config", str(tmp_path / "bad.yaml")]) == 1
    one_line_error(capsys, "bad.yaml", "resnet9000", *list_encoders())

    broken = tmp_path / "other_encoder"
    broken.mkdir()
    for name in ("vocab.json", "model.safetensors"):
        (broken / name).write_bytes((checkpoint / name).read_bytes())
    config = json.loads((checkpoint / "config.json").read_text())
    config["model"]["encoder"]["name"] = "resnet9000"
    (broken / "config.json").write_text(json.dumps(config))
    assert captioning_cli(["caption", str(broken), str(picture)]) == 1
    one_line_error(capsys, "resnet9000", *list_encoders())

    for device in ("tpu", "cuda:99", "banana"):
        if device.startswith("cuda") and torch.cuda.is_available():
            continue
        assert captioning_cli(["caption", str(checkpoint), str(picture), "--device", device]) == 1
        one_line_error(capsys, device)
    for flag, value in (("--beam-size", "0"), ("--max-len", "-3"), ("--max-len", "0")):
        assert captioning_cli(["caption", str(checkpoint), str(picture), flag, value]) == 1
        one_line_error(capsys, flag)
    with pytest.raises(SystemExit):
        captioning_cli(["caption", str(checkpoint), str(picture), "--beam-size", "three"])
    one_line_error(capsys, "--beam-size", "three")


def test_debug_shows_the_real_exception(checkpoint, picture, tmp_path):
    from captioning import CheckpointError

    with pytest.raises(CheckpointError, match="no_such_run"):
        captioning_cli(["caption", str(tmp_path / "no_such_run"), str(picture), "--debug"])
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        captioning_cli(["caption", str(_pickled_checkpoint(checkpoint, tmp_path / "p", tmp_path / "m")),
                        str(picture), "--debug"])
    with pytest.raises(ValueError, match="--max-len"):
        captioning_cli(["caption", str(checkpoint), str(picture), "--max-len", "0", "--debug"])


@pytest.mark.usefixtures("tiny_encoder")
def test_vqa_everyday_mistakes_are_one_line(checkpoint, picture, tmp_path, capsys):
    from vqa import AnswererConfig
    from vqa.model import Answerer

    from .test_vqa_helpers import TINY

    assert vqa_cli(["answer", str(tmp_path / "no_such_run"), str(picture), "what?"]) == 1
    one_line_error(capsys, "no_such_run")
    assert vqa_cli(["evaluate", str(tmp_path / "no_such_run")]) == 1
    one_line_error(capsys, "no_such_run")
    assert vqa_cli(["answer", str(checkpoint), str(picture), "what?"]) == 1   # a captioner is not an answerer
    one_line_error(capsys, "not a question-answering checkpoint")

    config = AnswererConfig(encoder=TINY, embed_dim=16, hidden_dim=32, attention_dim=16, dropout=0.0)
    answerer = Answerer(config, Vocabulary.build(["what", "color", "red"])).save(tmp_path / "answerer")
    assert vqa_cli(["answer", str(answerer), str(tmp_path / "nope.png"), "what?"]) == 1
    one_line_error(capsys, "nope.png", "no such file")
    assert vqa_cli(["answer", str(answerer), str(picture), "\x00\x1b?! \u200b"]) == 1
    one_line_error(capsys, "no words")
    assert vqa_cli(["answer", str(answerer), str(picture), "what color?", "--device", "tpu"]) == 1
    one_line_error(capsys, "tpu")
    marker = tmp_path / "pwned"
    pickled = _pickled_checkpoint(answerer, tmp_path / "pickled", marker)
    assert vqa_cli(["answer", str(pickled), str(picture), "what?"]) == 1
    one_line_error(capsys, "refusing to unpickle")
    assert not marker.exists()
    with pytest.raises(SystemExit) as exit_info:
        vqa_cli(["train", "--out", str(tmp_path / "r"), "--encoder", "resnet9000"])
    assert exit_info.value.code == 2
    one_line_error(capsys, "resnet9000", *list_encoders())
    with pytest.raises(SystemExit):
        vqa_cli(["bogus"])
    one_line_error(capsys, "bogus", "train", "answer")
    with pytest.raises(ValueError, match="no words"):
        vqa_cli(["answer", str(answerer), str(picture), "?!", "--debug"])
