"""Flickr8k's official text release: Flickr8k.token.txt with the split lists beside it; `prepare`,
`download` (offline) and `evaluate` on it. The fixture is a few lines written here."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from captioning.cli import main as cli
from captioning.data import load_dataset, load_flickr8k, load_karpathy, sniff_format
from captioning.vocab import tokenize

TOKENS = """\
1000_aaa.jpg#1\tA dog runs on the grass .
1000_aaa.jpg#0\tA brown dog running .
1000_aaa.jpg#2\tThe dog is outside .
2000_bbb.jpg#0\tTwo children play in the water .
2000_bbb.jpg#1\tKids splash at the beach .
2258277193_586949ec62.jpg.1#0\tA quirk line .
2258277193_586949ec62.jpg.1#1\tAnother quirk line .
3000_ccc.jpg#0\tA man rides a red bike .
4000_ddd.jpg#0\tAn image in no split list .
"""


def write_flickr8k(folder: Path, test_list: bool = False) -> Path:
    """Token file, train and dev lists (no test list unless asked), and tiny photos."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Flickr8k.token.txt").write_text(TOKENS, encoding="utf-8")
    (folder / "Flickr_8k.trainImages.txt").write_text("1000_aaa.jpg\n2000_bbb.jpg\n", encoding="utf-8")
    (folder / "Flickr_8k.devImages.txt").write_text("3000_ccc.jpg\n", encoding="utf-8")
    if test_list:
        (folder / "Flickr_8k.testImages.txt").write_text("4000_ddd.jpg\n", encoding="utf-8")
    images = folder / "images"
    images.mkdir(exist_ok=True)
    for i, name in enumerate(["1000_aaa.jpg", "2000_bbb.jpg", "3000_ccc.jpg", "4000_ddd.jpg"]):
        Image.new("RGB", (32, 32), (60 * i, 100, 200 - 40 * i)).save(images / name)
    return folder / "Flickr8k.token.txt"


def test_load_flickr8k_splits_ids_and_the_quirk(tmp_path, caplog):
    tokens = write_flickr8k(tmp_path / "f8k")
    with caplog.at_level(logging.WARNING):
        records = load_flickr8k(tokens, tmp_path / "f8k" / "images")
    by_id = {r.image_id: r for r in records}
    assert set(by_id) == {"1000_aaa", "2000_bbb", "3000_ccc"}  # 4000_ddd is in no list: ignored
    assert by_id["1000_aaa"].split == "train" and by_id["3000_ccc"].split == "val"  # dev -> val
    assert by_id["1000_aaa"].captions == ["A brown dog running .", "A dog runs on the grass .", "The dog is outside ."]
    assert by_id["2000_bbb"].path == (tmp_path / "f8k" / "images" / "2000_bbb.jpg").absolute()
    assert not [r for r in records if r.split == "test"]  # the missing test list: an empty split
    quirk = [m for m in caplog.messages if "quirk" in m]
    assert len(quirk) == 1 and "2 caption line(s)" in quirk[0]


def test_sniff_and_load_dataset(tmp_path):
    tokens = write_flickr8k(tmp_path / "f8k")
    assert sniff_format(tokens) == "flickr8k"
    renamed = tmp_path / "f8k" / "captions.txt"  # recognised from its content too
    renamed.write_text(tokens.read_text(encoding="utf-8"), encoding="utf-8")
    assert sniff_format(renamed) == "flickr8k"
    assert len(load_dataset(tokens, tmp_path / "f8k" / "images", format="auto")) == 3


def test_missing_image_and_no_lists_are_one_line(tmp_path):
    tokens = write_flickr8k(tmp_path / "f8k")
    (tmp_path / "f8k" / "images" / "2000_bbb.jpg").unlink()
    with pytest.raises(ValueError, match="2000_bbb.jpg: image file not found"):
        load_flickr8k(tokens, tmp_path / "f8k" / "images")
    assert len(load_flickr8k(tokens, tmp_path / "f8k" / "images", skip_invalid=True)) == 2
    lonely = tmp_path / "lonely" / "Flickr8k.token.txt"
    lonely.parent.mkdir()
    lonely.write_text(TOKENS, encoding="utf-8")
    with pytest.raises(ValueError, match="no split lists"):
        load_flickr8k(lonely, tmp_path)


def test_prepare_writes_karpathy_json(tmp_path, capsys):
    write_flickr8k(tmp_path / "f8k")
    out = tmp_path / "dataset_flickr8k.json"
    assert cli(["prepare", "flickr8k", "--from", str(tmp_path / "f8k"), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    first = data["images"][0]
    assert first["filename"] == "1000_aaa.jpg" and first["imgid"] == 0 and first["split"] == "train"
    assert first["sentids"] == [0, 1, 2] and first["sentences"][0]["tokens"] == tokenize("A brown dog running .")
    assert data["images"][1]["sentids"] == [3, 4]
    assert {s["imgid"] for s in data["images"][2]["sentences"]} == {2}
    karpathy = load_karpathy(out, tmp_path / "f8k" / "images")
    text = load_flickr8k(tmp_path / "f8k" / "Flickr8k.token.txt", tmp_path / "f8k" / "images")
    assert [(r.image_id, r.split, r.captions) for r in karpathy] == [(r.image_id, r.split, r.captions) for r in text]
    assert cli(["prepare", "flickr8k", "--out", str(out)]) == 1
    assert "needs --from" in capsys.readouterr().err


def test_download_offline_is_one_line(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert cli(["download", "flickr8k", "--root", str(tmp_path / "f8k")]) == 1
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert "Flickr8k_Dataset.zip" in err and "Flickr8k_text.zip" in err and str(tmp_path / "f8k") in err


def test_evaluate_bundled_model_on_flickr8k_text(tmp_path, capsys, monkeypatch):
    tokens = write_flickr8k(tmp_path / "f8k", test_list=True)
    monkeypatch.chdir(tmp_path)
    assert cli(["evaluate", "shapes-soft", "--annotations", str(tokens), "--images", str(tmp_path / "f8k" / "images"),
                "--split", "test", "--no-java", "--beam-size", "1", "--num-workers", "0"]) == 0
    report = json.loads((tmp_path / "eval" / "metrics_test_beam1.json").read_text())
    assert report["images"] == 1 and report["split"] == "test" and "Bleu_4" in json.dumps(report)


def test_train_on_flickr8k_text(tmp_path, capsys):
    tokens = write_flickr8k(tmp_path / "f8k")
    run = tmp_path / "run"
    assert cli(["train", "--annotations", str(tokens), "--images", str(tmp_path / "f8k" / "images"), "--out", str(run),
                "--image-size", "64", "--embed-dim", "8", "--hidden-dim", "16", "--attention-dim", "8",
                "--batch-size", "4", "--min-freq", "1", "--num-workers", "0", "--beam-size", "1", "--epochs", "1",
                "--dropout", "0", "--device", "cpu"]) == 0
    assert "training on 2 images" in capsys.readouterr().out
    assert "format: auto" in (run / "config.yaml").read_text() and (run / "best" / "model.safetensors").is_file()
