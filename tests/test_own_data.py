"""docs/own-data.md end to end: a captions table and a folder of photos -> prepare -> train -> evaluate ->
caption, with a tiny model on twelve generated photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from captioning.cli import main as cli
from captioning.data.annotations import DatasetError
from captioning.data.captions_table import assign_splits, prepare_captions

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}


def write_photos(folder: Path, per_colour: int = 4) -> Path:
    """Photos of one coloured disc on grey, and a captions table with two captions each."""
    folder.mkdir(parents=True)
    lines = ["image\tcaption"]
    for colour, rgb in COLOURS.items():
        for i in range(per_colour):
            image = Image.new("RGB", (96, 72), (128, 128, 128))
            ImageDraw.Draw(image).ellipse((10 + 5 * i, 10, 60 + 5 * i, 60), fill=rgb)
            name = f"{colour}-{i}.jpg"
            image.save(folder / name)
            lines += [f"{name}\ta {colour} ball on a grey wall", f"{name}\tthe {colour} ball"]
    (folder.parent / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_the_walk_through_runs_end_to_end(tmp_path, capsys):
    photos = write_photos(tmp_path / "my_photos")
    table, dataset = tmp_path / "captions.tsv", photos / "dataset.json"
    assert cli(["prepare", "captions", "--from", str(table), "--images", str(photos), "--out", str(dataset)]) == 0
    entries = json.loads(dataset.read_text())["images"]
    assert len(entries) == 12 and all(len(e["sentences"]) == 2 for e in entries)
    assert sorted(e["split"] for e in entries).count("train") == 10  # one val and one test photo at 10%
    run = tmp_path / "runs" / "mine"
    assert cli(["train", "--annotations", str(dataset), "--images", str(photos), "--out", str(run),
                "--image-size", "64", "--embed-dim", "16", "--hidden-dim", "32", "--attention-dim", "16",
                "--batch-size", "10", "--min-freq", "1", "--num-workers", "0", "--beam-size", "1",
                "--max-len", "8", "--epochs", "1", "--dropout", "0"]) == 0
    assert (run / "best" / "model.safetensors").is_file()
    assert cli(["evaluate", str(run), "--split", "test", "--no-java"]) == 0
    capsys.readouterr()
    assert cli(["caption", str(run), str(photos / "red-0.jpg")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(str(photos / "red-0.jpg")) and line.split("\t")[1].strip()


def test_bad_tables_are_one_line_errors(tmp_path):
    photos = write_photos(tmp_path / "p", per_colour=1)
    bad = tmp_path / "bad.tsv"
    bad.write_text("red-0.jpg\ta red ball\nblue-0.jpg\t\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2"):
        prepare_captions(bad, photos, tmp_path / "out.json")
    missing = tmp_path / "missing.tsv"
    missing.write_text("red-0.jpg\ta red ball\nnot-there.jpg\ta cat\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="not-there.jpg"):
        prepare_captions(missing, photos, tmp_path / "out.json")
    out = prepare_captions(missing, photos, tmp_path / "out.json", skip_invalid=True)  # skipped and counted
    assert [e["filename"] for e in json.loads(out.read_text())["images"]] == ["red-0.jpg"]
    elsewhere = write_photos(tmp_path / "elsewhere", per_colour=1)  # a photo outside the images folder
    outside = tmp_path / "outside.tsv"
    outside.write_text(f"../{elsewhere.name}/red-0.jpg\ta red ball\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="outside"):
        prepare_captions(outside, photos, tmp_path / "o.json")


def test_splits_are_per_photo_seeded_and_csv_works(tmp_path):
    names = [f"p{i}.jpg" for i in range(20)]
    first, again = assign_splits(names, 0.1, 0.1, seed=3), assign_splits(list(reversed(names)), 0.1, 0.1, seed=3)
    assert first == again and sorted(first.values()).count("val") == 2 and sorted(first.values()).count("test") == 2
    assert assign_splits(names, 0.1, 0.1, seed=4) != first
    with pytest.raises(ValueError):
        assign_splits(names, 0.6, 0.5, seed=0)
    photos = write_photos(tmp_path / "p", per_colour=1)
    csv_table = tmp_path / "c.csv"
    csv_table.write_text('red-0.jpg,"a red ball, round"\nblue-0.jpg,a blue ball\n', encoding="utf-8")
    out = prepare_captions(csv_table, photos, tmp_path / "c.json")
    raw = {e["filename"]: e["sentences"][0]["raw"] for e in json.loads(out.read_text())["images"]}
    assert raw == {"red-0.jpg": "a red ball, round", "blue-0.jpg": "a blue ball"}
