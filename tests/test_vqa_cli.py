"""`vqa train | evaluate | answer` end to end on Visual7W-format fixtures (official layout): the
per-type table, resume, pointing, the attention figure and one-line errors."""

from __future__ import annotations

import json

import pytest

from vqa.cli import main

from .test_vqa_helpers import TINY_MODEL, tiny_encoder, write_visual7w  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("tiny_encoder")


def _train(tmp_path, task: str, *extra: str) -> tuple:
    annotations, images = write_visual7w(tmp_path / "data", task)
    run = tmp_path / f"run_{task}"
    argv = ["train", "--annotations", str(annotations), "--images", str(images), "--out", str(run),
            "--task", task, *TINY_MODEL, *extra]
    return argv, run, images


def test_telling_train_evaluate_answer_resume(tmp_path, capsys):
    argv, run, images = _train(tmp_path, "telling", "--epochs", "2", "--lr", "0.03", "--patience", "0")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out
    assert {p.name for p in (run / "best").iterdir()} == {"config.json", "vocab.json", "model.safetensors"}
    assert {p.name for p in (run / "last").iterdir()} == {"config.json", "vocab.json", "model.safetensors",
                                                          "trainer.json", "trainer.safetensors"}
    assert not [p for p in run.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".bin")]  # never pickles
    assert (run / "config.yaml").is_file() and any((run / "tb").iterdir())
    trainer = json.loads((run / "last" / "trainer.json").read_text())["trainer"]
    assert trainer["epoch"] == 2

    # same command: already finished; more epochs: resumes at epoch 3
    assert main(argv) == 0
    assert "already finished" in capsys.readouterr().out
    argv[argv.index("--epochs") + 1] = "12"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "epoch 3/12" in out and "epoch 2/12" not in out
    # a model setting cannot change under a resumed run
    assert main([*argv, "--hidden-dim", "64"]) == 1
    assert "pick a new --out" in capsys.readouterr().err

    report_path = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--split", "test", "--json", str(report_path)]) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if "overall" in line)
    assert header.split() == ["what", "where", "when", "who", "why", "how", "|", "overall"]
    assert "multiple choice" in table and "open-ended" in table
    report = json.loads(report_path.read_text())
    assert report["multiple_choice"]["total"] == 3 * 6
    assert report["multiple_choice"]["overall"] >= 0.6  # learned: every answer follows the image's colour
    assert set(report["multiple_choice"]["per_type"]) == {"what", "where", "when", "who", "why", "how"}
    assert report["predictions"][0]["qa_id"] >= 1000

    figure = tmp_path / "attention.png"
    image = images / "v7w_2354786.jpg"
    assert main(["answer", str(run), str(image), "What color is the square?", "--choices", "Red.", "Green.",
                 "Blue.", "Black.", "--attention-out", str(figure)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("answer: ") and out.count("\n") >= 6 and figure.stat().st_size > 0
    assert main(["answer", str(run), str(image), "what color is it " * 10]) == 0
    assert "notice: question truncated" in capsys.readouterr().err


def test_pointing_train_and_evaluate(tmp_path, capsys):
    argv, run, images = _train(tmp_path, "pointing", "--epochs", "1")
    assert main(argv) == 0
    assert main(["evaluate", str(run), "--split", "val"]) == 0
    table = capsys.readouterr().out
    assert "which" in table and "multiple choice" in table and "open-ended" not in table
    assert main(["answer", str(run), str(images / "v7w_2354786.jpg"), "Which square is white?",
                 "--choices", "0,0,24,24", "24,0,24,24", "0,24,24,24", "24,24,24,24"]) == 0
    assert "box logit" in capsys.readouterr().out


def test_hard_attention_trains(tmp_path, capsys):
    argv, run, _ = _train(tmp_path, "telling", "--epochs", "1", "--attention", "hard", "--reinforce-samples", "2")
    assert main(argv) == 0
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["model"]["decoder"]["attention"] == "hard"


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    argv, run, images = _train(tmp_path, "telling", "--epochs", "1")
    assert main(argv) == 0
    capsys.readouterr()
    image = str(images / "v7w_2354786.jpg")
    assert main(["answer", str(run), image, " ?? "]) == 1
    assert capsys.readouterr().err == "error: the question has no words: ' ?? '\n"
    assert main(["answer", str(run), str(tmp_path / "missing.jpg"), "what?"]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["train", "--format", "visual7w", "--out", str(tmp_path / "r2"), *TINY_MODEL]) == 1
    assert "needs --annotations" in capsys.readouterr().err
    with pytest.raises(ValueError):
        main(["answer", str(run), image, "", "--debug"])


def test_divergence_names_the_step_and_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    """A non-finite loss in epoch 2 stops before the update, in one line naming RUN/last."""
    from vqa.decoder import QuestionAnsweringDecoder

    argv, run, _ = _train(tmp_path, "telling", "--epochs", "2")
    forward = QuestionAnsweringDecoder.forward

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if (run / "last").is_dir():  # epoch 1 is saved: diverge at once
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(QuestionAnsweringDecoder, "forward", poisoned)
    assert main(argv) == 1
    line = capsys.readouterr().err.rstrip("\n").split("\n")[-1].split("\r")[-1]  # after the progress bars
    assert line.startswith("error: loss became nan at step") and "(epoch 2)" in line
    assert f"the last good checkpoint is {run / 'last'}" in line
