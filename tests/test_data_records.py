"""Annotation loaders on tiny files in the exact Karpathy and official COCO formats."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from captioning.data import (
    DatasetError,
    load_coco,
    load_dataset,
    load_karpathy,
    sniff_format,
    split_records,
)


def _jpeg(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), color).save(path, "JPEG")


def _karpathy_entry(i: int, split: str, folder: str = "val2014") -> dict:
    name = f"COCO_{folder}_{i:012d}.jpg"
    sentences = [{"tokens": ["a", "cat", str(k)], "raw": f"A cat {k}.", "imgid": i, "sentid": 5 * i + k}
                 for k in range(5)]
    return {"filepath": folder, "sentids": [s["sentid"] for s in sentences], "filename": name, "imgid": i,
            "split": split, "sentences": sentences, "cocoid": 1000 + i}


@pytest.fixture()
def karpathy(tmp_path: Path) -> tuple[Path, Path]:
    splits = ["train", "restval", "val", "test", "train"]
    entries = [_karpathy_entry(i, s, "train2014" if s == "train" else "val2014") for i, s in enumerate(splits)]
    for e in entries:
        _jpeg(tmp_path / "coco" / e["filepath"] / e["filename"])
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return path, tmp_path / "coco"


def _rewrite(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_karpathy_records(karpathy):
    path, images = karpathy
    records = load_karpathy(path, images)
    assert [r.image_id for r in records] == [1000, 1001, 1002, 1003, 1004]
    assert [r.split for r in records] == ["train", "train", "val", "test", "train"]
    first = records[0]
    assert first.path == (images / "train2014" / "COCO_train2014_000000000000.jpg").absolute()
    assert first.captions == [f"A cat {k}." for k in range(5)]
    assert first.objects is None
    assert [r.image_id for r in split_records(records, "train")] == [1000, 1001, 1004]


def test_restval_kept_apart(karpathy):
    records = load_karpathy(*karpathy, merge_restval=False)
    assert [r.split for r in records][:2] == ["train", "restval"]
    assert len(split_records(records, ["train", "restval"])) == 3
    with pytest.raises(ValueError, match="unknown split"):
        split_records(records, "dev")


def test_flickr_without_cocoid_or_filepath(tmp_path):
    entry = _karpathy_entry(0, "test")
    del entry["cocoid"], entry["filepath"]
    entry["filename"] = "1000268201_693b08cb0e.jpg"
    _jpeg(tmp_path / "Flicker8k_Dataset" / entry["filename"])
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps({"images": [entry], "dataset": "flickr8k"}))
    [record] = load_karpathy(tmp_path / "dataset_flickr8k.json", tmp_path / "Flicker8k_Dataset")
    assert record.image_id == "1000268201_693b08cb0e"
    assert record.path.parent == (tmp_path / "Flicker8k_Dataset").absolute()


def test_malformed_entry_named(karpathy):
    path, images = karpathy
    _rewrite(path, lambda d: d["images"][3].pop("sentences"))
    with pytest.raises(DatasetError, match=r'dataset_coco\.json: images\[3\]: missing "sentences"'):
        load_karpathy(path, images)
    assert len(load_karpathy(path, images, skip_invalid=True)) == 4


def test_invalid_json_named(tmp_path):
    path = tmp_path / "dataset_coco.json"
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"dataset_coco\.json: invalid JSON"):
        load_karpathy(path, tmp_path)
    path.write_text('["not", "an", "object"]')
    with pytest.raises(DatasetError, match=r'dataset_coco\.json: expected a JSON object with an "images" list'):
        load_karpathy(path, tmp_path)
    with pytest.raises(DatasetError, match="no such annotation file"):
        load_karpathy(tmp_path / "nope.json", tmp_path)


def test_missing_image_error_or_skip(karpathy, caplog):
    path, images = karpathy
    missing = images / "val2014" / "COCO_val2014_000000000002.jpg"
    missing.unlink()
    with pytest.raises(DatasetError, match=r"images\[2\]: image file not found: .*COCO_val2014_000000000002\.jpg"):
        load_karpathy(path, images)
    with caplog.at_level(logging.WARNING):
        records = load_karpathy(path, images, skip_invalid=True)
    assert [r.image_id for r in records] == [1000, 1001, 1003, 1004]
    [message] = [r.getMessage() for r in caplog.records]
    assert "skipped 1 entries: 1 missing image files" in message and "\n" not in message
    assert len(load_karpathy(path, images, check_files=False)) == 5


def test_duplicate_ids(karpathy):
    path, images = karpathy
    _rewrite(path, lambda d: d["images"][4].update(cocoid=1000))
    with pytest.raises(DatasetError, match=r"images\[4\]: duplicate image id 1000 \(also images\[0\]\)"):
        load_karpathy(path, images)
    assert [r.image_id for r in load_karpathy(path, images, skip_invalid=True)] == [1000, 1001, 1002, 1003]


# ---- official COCO captions -------------------------------------------------------------------
def _coco_file(tmp_path: Path, name: str = "captions_val2014.json", nested: bool = True) -> Path:
    images = [{"license": 3, "file_name": f"COCO_val2014_{i:012d}.jpg", "coco_url": "", "height": 12, "width": 16,
               "date_captured": "2013-11-14 16:28:13", "flickr_url": "", "id": i} for i in (42, 7)]
    annotations = [{"image_id": 42, "id": 3, "caption": "A dog runs. "}, {"image_id": 7, "id": 1, "caption": "A bird."},
                   {"image_id": 42, "id": 2, "caption": "A brown dog."}]
    for im in images:
        _jpeg(tmp_path / "coco" / ("val2014" if nested else "") / im["file_name"])
    path = tmp_path / "annotations" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"info": {"year": 2014}, "licenses": [], "images": images,
                                "annotations": annotations}))
    return path


def test_coco_loader(tmp_path, capsys):
    path = _coco_file(tmp_path)
    records = load_coco(path, tmp_path / "coco")  # images found under coco/val2014/
    assert capsys.readouterr().out == ""  # pycocotools' progress prints are swallowed
    by_id = {r.image_id: r for r in records}
    assert set(by_id) == {42, 7}
    assert by_id[42].captions == ["A brown dog.", "A dog runs."]  # annotation-id order, stripped
    assert by_id[42].split == "val"
    assert by_id[42].path == (tmp_path / "coco" / "val2014" / "COCO_val2014_000000000042.jpg").absolute()
    assert {r.split for r in load_coco(path, tmp_path / "coco", split="test")} == {"test"}


def test_coco_split_from_name_and_flat_folder(tmp_path):
    path = _coco_file(tmp_path, "captions_train2014.json", nested=False)
    assert {r.split for r in load_coco(path, tmp_path / "coco")} == {"train"}
    odd = path.rename(path.with_name("my_captions.json"))
    with pytest.raises(DatasetError, match="pass split="):
        load_coco(odd, tmp_path / "coco")


def test_coco_malformed_and_unknown_image(tmp_path):
    path = _coco_file(tmp_path)
    _rewrite(path, lambda d: d["annotations"][1].pop("caption"))
    with pytest.raises(DatasetError, match=r'captions_val2014\.json: annotations\[1\]: missing "caption"'):
        load_coco(path, tmp_path / "coco")
    _rewrite(path, lambda d: d["annotations"][1].update(caption="x", image_id=99))
    with pytest.raises(DatasetError, match=r"annotations\[1\]: image_id 99 is not in images"):
        load_coco(path, tmp_path / "coco")
    records = load_coco(path, tmp_path / "coco", skip_invalid=True)  # image 7 loses its only caption too
    assert [r.image_id for r in records] == [42]


def test_coco_duplicate_image(tmp_path):
    path = _coco_file(tmp_path)
    _rewrite(path, lambda d: d["images"].append(dict(d["images"][0])))
    with pytest.raises(DatasetError, match=r"images\[2\]: duplicate image id 42"):
        load_coco(path, tmp_path / "coco")


def test_load_dataset_dispatch(karpathy, tmp_path):
    coco = _coco_file(tmp_path)
    assert sniff_format(coco) == "coco" and sniff_format(karpathy[0]) == "karpathy"
    assert len(load_dataset(coco, tmp_path / "coco", format="coco")) == 2
    assert len(load_dataset(*karpathy, format="auto")) == 5
    renamed = coco.rename(coco.with_name("val2014_caps.json"))
    assert sniff_format(renamed) == "coco"
    with pytest.raises(ValueError, match="choose one of: karpathy, coco, flickr8k, auto"):
        load_dataset(*karpathy, format="flickr")


@pytest.mark.parametrize("filename", ["../../etc/passwd", "/etc/passwd", "sub/../../outside.jpg"])
def test_image_paths_must_stay_under_the_image_folder(tmp_path, filename):
    """An annotation file cannot make the loader open files outside --images: one line names the entry."""
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "outside.jpg").write_bytes(b"x")
    data = {"images": [{"filename": filename, "split": "train", "sentences": [{"raw": "a cat"}]}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"images\[0\]: image path .* leaves the image folder"):
        load_karpathy(tmp_path / "ann.json", images)
    assert load_karpathy(tmp_path / "ann.json", images, skip_invalid=True) == []


def test_missing_images_are_counted_not_just_the_first(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    data = {"images": [{"filename": f"{i}.jpg", "split": "train", "sentences": [{"raw": "a cat"}]} for i in range(3)]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"images\[0\]: image file not found: .*0\.jpg \(3 of 3 image files missing: "
                                           r"is --images the right folder\?\)"):
        load_karpathy(tmp_path / "ann.json", images)


@pytest.mark.parametrize("fmt", ["auto", "karpathy", "coco", "flickr8k"])
def test_a_directory_or_a_fifo_is_named_as_such_not_read(tmp_path, fmt):
    """A FIFO given as annotations would block a read forever; a directory is not 'no such file'."""
    import os

    from captioning.data import load_dataset

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match="fifo.json: not a regular file"):
        load_dataset(fifo, tmp_path, format=fmt)
    with pytest.raises(DatasetError, match="is a directory"):
        load_dataset(tmp_path, tmp_path, format=fmt)
