"""The `captioning` command line: one-line errors, caption + attention figures, prepare, download."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from captioning.cli import main as cli

from .test_train_run import shared_run


@pytest.fixture
def trained(tmp_path_factory) -> tuple[Path, Path]:
    return shared_run(tmp_path_factory)


def test_caption_prints_path_tab_caption_and_draws_attention(trained, tmp_path, capsys):
    run, data = trained
    images = sorted((data / "images").glob("*.png"))[:2]
    figures = tmp_path / "att"
    assert cli(["caption", str(run), *map(str, images), "--beam-size", "2", "--attention-out", str(figures)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == list(map(str, images))
    assert all(len(line.split("\t")) == 2 for line in lines)
    for image in images:
        with Image.open(figures / f"{image.stem}.png") as figure:
            assert figure.format == "PNG" and figure.width > 200


def test_caption_bad_image_is_reported_and_others_still_captioned(trained, tmp_path, capsys):
    run, data = trained
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    good = sorted((data / "images").glob("*.png"))[0]
    assert cli(["caption", str(run), str(bad), str(good), "--beam-size", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{good}\t")
    assert captured.err.startswith("error: ") and str(bad) in captured.err and "Traceback" not in captured.err


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["train", "--out", str(tmp_path / "r"), "--attention", "medium"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "'soft', 'hard'" in err
    assert cli(["train", "--out", str(tmp_path / "r"), "--annotations", str(tmp_path / "none.json"),
                "--images", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "none.json" in err and err.count("\n") == 1
    with pytest.raises(Exception, match="none.json"):  # --debug: the real exception, traceback and all
        cli(["train", "--out", str(tmp_path / "r"), "--annotations", str(tmp_path / "none.json"),
             "--images", str(tmp_path), "--debug"])


def test_prepare_shapes_and_download_plan(tmp_path, capsys):
    assert cli(["prepare", "shapes", "--out", str(tmp_path / "s"), "--num-images", "10"]) == 0
    assert (tmp_path / "s" / "dataset_shapes.json").is_file()
    root = tmp_path / "coco"
    for folder in ("train2014", "val2014", "annotations"):
        (root / folder).mkdir(parents=True)
    (root / "annotations" / "captions_train2014.json").write_text("{}")
    (root / "dataset_coco.json").write_text("{}")
    capsys.readouterr()
    assert cli(["download", "coco", "--root", str(root)]) == 0  # nothing left to fetch: no network needed
    assert "already there" in capsys.readouterr().out


@pytest.mark.parametrize("package", ["captioning", "vqa"])
def test_help_is_quick_and_python_dash_m_works(package):
    """`captioning --help` and `vqa --help` list the commands without importing torch (a cold torch import
    takes seconds), and `python -m captioning` / `python -m vqa` are the commands."""
    import subprocess
    import sys

    probe = (f"import sys\nfrom {package}.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "assert 'torch' not in sys.modules, 'torch imported for --help'\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and "evaluate" in done.stdout
    module = subprocess.run([sys.executable, "-m", package, "--help"], capture_output=True, text=True, timeout=120)
    assert module.returncode == 0 and f"usage: {package}" in module.stdout


@pytest.mark.parametrize("flag, value, message", [("--lr", "-1", "--lr must be a positive number"),
                                                   ("--lr-decay", "0", "--lr-decay must be a positive number"),
                                                   ("--beam-size", "10000", "--beam-size must be at most 64")])
def test_training_refuses_settings_that_cannot_train(tmp_path, capsys, flag, value, message):
    assert cli(["train", "--annotations", str(tmp_path / "a.json"), "--images", str(tmp_path),
                "--out", str(tmp_path / "run"), flag, value]) == 1
    assert message in capsys.readouterr().err


def test_a_data_loader_workers_error_is_its_own_message():
    """torch re-raises a worker's exception with "Caught ... in DataLoader worker process 0. Original
    Traceback ..." around it: the command prints only the file and the problem."""
    from captioning.engine.cli_base import one_line_error
    from captioning.images import ImageLoadError

    wrapped = ImageLoadError("Caught ImageLoadError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                             "call last):\n  File \"/x/worker.py\", line 349, in _worker_loop\n    data = fetcher.fetch"
                             "(index)\ncaptioning.images.ImageLoadError: /data/photo.jpg: not an image file\n")
    assert one_line_error(wrapped) == "/data/photo.jpg: not an image file"
    assert one_line_error(ValueError("plain message")) == "plain message"


def test_a_run_folder_in_use_is_refused_by_a_second_training(tmp_path, capsys):
    """Two `train --out SAME` at once would interleave their checkpoints: the second says who holds it."""
    from captioning.training import run_folder_lock

    run = tmp_path / "run"
    with run_folder_lock(run):
        assert cli(["train", "--annotations", str(tmp_path / "a.json"), "--images", str(tmp_path),
                    "--out", str(run)]) == 1
        err = capsys.readouterr().err
        assert "in use by another training run (pid" in err and err.count("\n") == 1
    with run_folder_lock(run):  # released when the first holder is done
        pass
