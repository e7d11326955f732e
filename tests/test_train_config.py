"""Training options: defaults < run config < YAML < command line, checked like the command line."""

from dataclasses import fields

import pytest

from captioning.config import ModelConfig, ReinforceConfig
from captioning.train_config import (
    default_config,
    get_args_parser,
    read_yaml,
    resolve_config,
    write_run_config,
)


def parse(*argv: str):
    return get_args_parser().parse_args(["--out", "RUN", *argv])


def test_every_model_option_is_a_flag():
    dests = {a.dest for a in get_args_parser()._actions}
    for f in fields(ModelConfig):
        if f.name != "reinforce":
            assert f.name in dests
    for f in fields(ReinforceConfig):
        assert f"reinforce_{f.name}" in dests


def test_precedence_defaults_yaml_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("hidden_dim: 128\nlr: 4e-3\ncell: gru\nannotations: a.json\nimages: imgs\n")
    args = resolve_config(get_args_parser().parse_args(
        ["--out", str(tmp_path / "run"), "--config", str(config), "--lr", "1e-3", "--num-layers", "2"]))
    assert args.model.hidden_dim == 128      # YAML over default
    assert args.lr == pytest.approx(1e-3)    # command line over YAML ("4e-3" is a YAML string: coerced)
    assert args.model.cell == "gru" and args.model.num_layers == 2
    assert args.model.embed_dim == default_config()["embed_dim"]
    assert args.annotations == str(tmp_path / "a.json")  # relative paths: from the working directory


def test_saved_run_config_is_a_valid_config_and_a_resume_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = resolve_config(parse("--annotations", "a.json", "--images", "imgs", "--hidden-dim", "96",
                                "--no-deep-output"))
    run = tmp_path / "RUN"
    run.mkdir()
    write_run_config(run, args)
    assert read_yaml(run / "config.yaml")["hidden_dim"] == 96
    again = resolve_config(parse())  # rerun with only --out: the saved config fills in
    assert again.model.hidden_dim == 96 and again.model.deep_output is False and again.annotations.endswith("a.json")
    (run / "last").mkdir()
    with pytest.raises(ValueError, match="hidden_dim=96"):
        resolve_config(parse("--hidden-dim", "64"))
    assert resolve_config(parse("--epochs", "50")).epochs == 50  # allowed to change on resume


@pytest.mark.parametrize("text, message", [
    ("hiden_dim: 3\n", "unknown key"),
    ("cell: transformer\n", "choose from lstm, gru, rnn"),
    ("epochs: many\n", "epochs must be int"),
    ("amp: 3\n", "true or false"),
    ("- a\n- b\n", "mapping"),
])
def test_bad_yaml(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_yaml(path)


def test_required_and_ranges(tmp_path):
    with pytest.raises(ValueError, match="--annotations is required"):
        resolve_config(get_args_parser().parse_args(["--out", str(tmp_path / "r")]))
    with pytest.raises(ValueError, match="--batch-size must be at least 1"):
        resolve_config(get_args_parser().parse_args(["--out", str(tmp_path / "r"), "--annotations", "a",
                                                     "--images", "i", "--batch-size", "0"]))


@pytest.mark.parametrize("name", ["coco_soft", "coco_hard", "shapes_soft", "shapes_hard"])
def test_committed_configs_are_valid(name):
    from pathlib import Path

    config = read_yaml(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert config["attention"] == name.split("_")[1]
    ModelConfig.from_dict({k: v for k, v in config.items() if k in {f.name for f in fields(ModelConfig)}})
