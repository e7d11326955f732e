"""Random mutations of a valid checkpoint config.json and of a valid annotation file (wrong types, absurd
sizes, missing keys): the commands either work or exit non-zero with one `error:` line, quickly and
without allocating what a hostile file asks for."""

from __future__ import annotations

import copy
import json
import resource
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from captioning.cli import main as captioning_cli
from captioning.vocab import Vocabulary

from .helpers import CAPTIONS, tiny_captioner

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.just("x" * 100_000),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
LIMITS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("valid")
    checkpoint = tiny_captioner(Vocabulary.build(CAPTIONS, min_freq=1)).save(root / "ckpt")
    images = root / "images"
    images.mkdir()
    entries = []
    for i, caption in enumerate(CAPTIONS[:3]):
        Image.new("RGB", (40, 30), (40 * i, 90, 200)).save(images / f"{i}.jpg")
        entries.append({"filename": f"{i}.jpg", "imgid": i, "split": "test",
                        "sentences": [{"raw": caption, "tokens": caption.split()}]})
    (root / "dataset_mut.json").write_text(json.dumps({"images": entries}))
    return {"checkpoint": checkpoint, "images": images, "annotations": root / "dataset_mut.json", "root": root}


def run_cli(argv: list[str], capsys) -> None:
    """The command works (0) or fails (non-zero) with exactly one `error:` line; under 5 s; no big allocation."""
    before, start = peak_rss_bytes(), time.perf_counter()
    code = captioning_cli(argv)
    took = time.perf_counter() - start
    captured = capsys.readouterr()
    err = [line for line in captured.err.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert "Traceback" not in captured.err, captured.err[-2000:]
    if code != 0:
        assert len(err) == 1 and len(err[0]) < 1000, captured.err[-2000:]
    assert took < 5.0, f"{argv}: {took:.1f} s"
    assert peak_rss_bytes() - before < 2 * 2**30


@LIMITS
@given(data=st.data())
def test_mutated_config_json(valid, tmp_path_factory, capsys, data):
    folder = tmp_path_factory.mktemp("ckpt")
    for name in ("config.json", "vocab.json", "model.safetensors"):
        (folder / name).write_bytes((valid["checkpoint"] / name).read_bytes())
    meta = json.loads((folder / "config.json").read_text())
    model = meta["model"]
    places = [(section, key) for section in ("encoder", "decoder") for key in sorted(model[section])]
    places += [("reinforce", "samples"), ("meta", "format"), ("model", "decoder")]
    section, field = data.draw(st.sampled_from(places))
    action = data.draw(st.sampled_from(["delete", "replace"]))
    target = {"meta": meta, "model": model, "reinforce": model["decoder"]["reinforce"]}.get(section) or model[section]
    if action == "delete":
        target.pop(field, None)
    else:
        target[field] = data.draw(ODD_VALUES)
    (folder / "config.json").write_text(json.dumps(meta))
    run_cli(["caption", str(folder), str(valid["images"] / "0.jpg"), "--device", "cpu", "--beam-size", "2"], capsys)


def mutate_annotations(data, document: dict) -> dict:
    document = copy.deepcopy(document)
    entry = data.draw(st.sampled_from(document["images"]))
    where = data.draw(st.sampled_from(["entry", "sentence", "top"]))
    if where == "top":
        document["images"] = data.draw(ODD_VALUES) if data.draw(st.booleans()) else document["images"]
        if data.draw(st.booleans()):
            document = data.draw(ODD_VALUES)
        return document
    target = entry if where == "entry" else entry["sentences"][0]
    key = data.draw(st.sampled_from(sorted(target)))
    if data.draw(st.booleans()):
        target.pop(key)
    else:
        target[key] = data.draw(ODD_VALUES | st.sampled_from(["../../etc/passwd", "/etc/passwd", "", "val"]))
    return document


@LIMITS
@given(data=st.data())
def test_mutated_annotation_file(valid, tmp_path_factory, capsys, data):
    folder = tmp_path_factory.mktemp("ann")
    document = mutate_annotations(data, json.loads(valid["annotations"].read_text()))
    path = folder / "dataset_mut.json"
    path.write_text(json.dumps(document))
    run_cli(["evaluate", str(valid["checkpoint"]), "--annotations", str(path), "--images", str(valid["images"]),
             "--split", "test", "--no-java", "--beam-size", "1", "--max-images", "1", "--device", "cpu",
             "--json", str(folder / "m.json"), "--results-out", str(folder / "r.json")], capsys)


@LIMITS
@given(data=st.data())
def test_mutated_visual7w_file_loads_or_gives_one_line(tmp_path_factory, data):
    from captioning.data.annotations import DatasetError
    from vqa.data import load_visual7w

    from .test_vqa_helpers import write_visual7w

    folder = tmp_path_factory.mktemp("v7w")
    annotations, images = write_visual7w(folder, "telling")
    document = json.loads(annotations.read_text())
    qa = data.draw(st.sampled_from(document["images"]))["qa_pairs"][0]
    key = data.draw(st.sampled_from(sorted(qa)))
    if data.draw(st.booleans()):
        qa.pop(key)
    else:
        qa[key] = data.draw(ODD_VALUES | st.sampled_from(["", "?!", qa.get("answer"), "../../etc/passwd"]))
    annotations.write_text(json.dumps(document))
    start = time.perf_counter()
    for skip in (False, True):
        try:
            load_visual7w(annotations, images, "telling", skip_invalid=skip)
        except DatasetError as exc:
            assert not skip or "file" in str(exc), exc
            assert "\n" not in str(exc) and len(str(exc)) < 1000, str(exc)[:300]
    assert time.perf_counter() - start < 5.0
