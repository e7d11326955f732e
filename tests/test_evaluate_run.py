"""`captioning evaluate RUN` finds its data from the run folder alone; COCO-format runs hold out a val split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from captioning.cli import main as cli
from captioning.data import load_karpathy

from .test_train_run import shared_data, shared_run, tiny_args, train


@pytest.fixture
def run(tmp_path_factory) -> Path:
    return shared_run(tmp_path_factory)[0]


def test_evaluate_run_alone(run, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert cli(["evaluate", str(run), "--no-java", "--beam-size", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr", "nltk_BLEU_4", "attention grounding"):
        assert name in printed
    report = json.loads(out.read_text())
    assert report["split"] == "test" and report["images"] == 2 and report["beam_size"] == 2
    assert set(report["grounding"]) >= {"score", "grounded", "words"}
    results = json.loads(Path(report["results"]).read_text())
    assert Path(report["results"]).parent == run / "eval"
    assert len(results) == 2 and set(results[0]) == {"image_id", "caption"}


def test_evaluate_reports_caption_length_and_words_and_takes_a_length_penalty(run, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert cli(["evaluate", str(run), "--no-java", "--beam-size", "3", "--length-penalty", "1.0",
                "--json", str(out)]) == 0
    assert "words on average" in capsys.readouterr().out
    report = json.loads(out.read_text())
    captions = [r["caption"].split() for r in json.loads(Path(report["results"]).read_text())]
    assert report["length_penalty"] == 1.0 and Path(report["results"]).name == "results_test_beam3_lp1.json"
    assert report["mean_length"] == pytest.approx(sum(map(len, captions)) / len(captions))
    assert report["words_used"] == len({w for c in captions for w in c})


def test_evaluate_errors_are_one_line(run, capsys):
    assert cli(["evaluate", str(run.parent / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert cli(["evaluate"]) == 1
    assert "give a run folder" in capsys.readouterr().err


def test_coco_format_run_holds_out_val_and_scores_results(tmp_path_factory, tmp_path, capsys):
    data = shared_data(tmp_path_factory)
    records = load_karpathy(data / "dataset_shapes.json", data)
    images = [{"id": i, "file_name": r.path.name} for i, r in enumerate(records)]
    anns = [{"id": 10 * i + k, "image_id": i, "caption": c} for i, r in enumerate(records)
            for k, c in enumerate(r.captions)]
    coco = tmp_path / "tiny_coco.json"  # the format is sniffed; the name says no split: all are training images
    coco.write_text(json.dumps({"images": images, "annotations": anns}))
    args = tiny_args(data, tmp_path / "run", "--epochs", "1", "--val-holdout", "0.2")
    args[args.index("--images") + 1] = str(data / "images")
    args[args.index("--annotations") + 1] = str(coco)
    train(*args)
    held = json.loads((tmp_path / "run" / "splits.json").read_text())["val"]
    assert len(held) == 2  # 20% of 12 images

    assert cli(["evaluate", str(tmp_path / "run"), "--no-java"]) == 0  # no test split: the held-out val
    report = json.loads((tmp_path / "run" / "eval" / "metrics_val_beam1.json").read_text())
    assert report["split"] == "val" and report["images"] == 2 and report["grounding"] is None
    capsys.readouterr()
    results = Path(report["results"])
    assert cli(["evaluate", "--results", str(results), "--annotations", str(coco), "--no-java"]) == 0
    assert f"Bleu_4       {report['metrics']['Bleu_4']:.4f}" in capsys.readouterr().out

    other = tmp_path / "other.json"  # another COCO file: all of its images are evaluated
    other.write_text(json.dumps({"images": images[:3], "annotations": [a for a in anns if a["image_id"] < 3]}))
    assert cli(["evaluate", str(tmp_path / "run"), "--annotations", str(other), "--no-java"]) == 0
    report = json.loads((tmp_path / "run" / "eval" / "metrics_test_beam1.json").read_text())
    assert report["images"] == 3
