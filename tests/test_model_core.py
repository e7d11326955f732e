"""The model core's types: typed choices that read and write the same strings as before, the
attention policies, the VQA decoder built without the parts it does not use, and a light import."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from captioning.config import AttentionMode, CellKind, HardInference, ModelConfig
from captioning.decoder import Memory
from captioning.hard_attention import Sampled, attention_policy, expectation, most_likely, reinforce_loss
from vqa.config import AnswererConfig, QATask
from vqa.decoder import QuestionAnsweringDecoder

ROOT = Path(__file__).resolve().parents[1]


def test_choices_are_enums_that_read_and_write_plain_strings():
    config = ModelConfig(attention="hard", hard_inference="argmax", cell="gru")
    assert config.attention is AttentionMode.HARD and config.hard_inference is HardInference.ARGMAX
    assert config.cell is CellKind.GRU and config.attention == "hard" and f"{config.cell}" == "gru"
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved["decoder"]["attention"] == "hard" and saved["decoder"]["cell"] == "gru"
    assert saved["decoder"]["hard_inference"] == "argmax"
    assert ModelConfig.from_dict(saved) == config
    assert yaml.safe_load(yaml.safe_dump(config.to_dict()))["decoder"]["attention"] == "hard"
    with pytest.raises(ValueError, match=r"attention must be one of \('soft', 'hard'\)"):
        ModelConfig(attention="sharp")
    with pytest.raises(ValueError, match="cell must be one of"):
        ModelConfig(cell="transformer")


def test_bundled_configs_load_as_enums():
    for name in ("shapes-soft", "shapes-hard"):
        data = json.loads((ROOT / "captioning" / "bundled" / name / "config.json").read_text())["model"]
        config = ModelConfig.from_dict(data)
        assert config.attention is AttentionMode(name.split("-")[1]) and config.to_dict() == data


def test_attention_policy_follows_the_config():
    soft, hard = ModelConfig(), ModelConfig(attention="hard", reinforce=dict(soft_probability=0.25))
    assert attention_policy(soft, sampling=True) is expectation
    assert attention_policy(hard, sampling=False) is expectation
    assert attention_policy(ModelConfig(attention="hard", hard_inference="argmax"), sampling=False) is most_likely
    assert attention_policy(hard, sampling=True) == Sampled(0.25)


def test_policies_read_the_grid():
    torch.manual_seed(0)
    grid, alpha = torch.randn(2, 5, 3), torch.softmax(torch.randn(2, 5), -1)
    soft = expectation(grid, alpha)
    assert torch.allclose(soft.context, (alpha.unsqueeze(-1) * grid).sum(1)) and soft.log_p_location is None
    top = most_likely(grid, alpha)
    assert torch.equal(top.context, grid[torch.arange(2), alpha.argmax(-1)])
    sampled = Sampled(0.0)(grid, alpha)  # never soft: every row is one grid position, with its log-probability
    assert all(any(torch.equal(sampled.context[b], grid[b, i]) for i in range(5)) for b in range(2))
    assert (sampled.log_p_location < 0).all() and torch.allclose(sampled.entropy, -(alpha * alpha.log()).sum(-1))


def test_reinforce_baseline_starts_at_the_first_reward_then_moves():
    baseline, initialised = torch.zeros(()), torch.zeros((), dtype=torch.bool)
    config = ModelConfig().reinforce
    mask = torch.ones(2, 4, dtype=torch.bool)
    args = (mask, torch.zeros(2, 4), torch.zeros(2, 4), mask.sum())
    reinforce_loss(config, torch.tensor([-4.0, -8.0]), *args, baseline, initialised)
    assert bool(initialised) and float(baseline) == pytest.approx(-1.5)  # mean per-step reward
    reinforce_loss(config, torch.tensor([-8.0, -8.0]), *args, baseline, initialised)
    assert float(baseline) == pytest.approx(0.9 * -1.5 + 0.1 * -2.0)


@pytest.mark.parametrize("task", ["telling", "pointing"])
def test_vqa_decoder_never_builds_an_initial_state_predictor(task):
    config = AnswererConfig(embed_dim=8, hidden_dim=8, attention_dim=8, task=task)
    dec = QuestionAnsweringDecoder(config, 12, 16)
    assert not any(name.startswith(("init_h", "init_c")) for name, _ in dec.named_parameters())
    assert (dec.output is None) == (task == QATask.POINTING)
    h, c = dec.init_state(torch.randn(3, 4, 16))
    assert h.shape == c.shape == (3, 1, 8) and not h.any() and not c.any()
    assert isinstance(dec.memory(torch.randn(3, 4, 16)), Memory)


def test_importing_the_packages_loads_no_torch_and_sets_nothing():
    code = ("import os, sys, captioning, vqa, captioning.engine.runtime; "
            "assert 'torch' not in sys.modules, 'torch imported'; assert 'OMP_WAIT_POLICY' not in os.environ; "
            "captioning.engine.runtime.passive_openmp(); assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE'; "
            "from captioning import Captioner; from vqa import QATask; assert 'torch' in sys.modules")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


CAPTIONING_COMMANDS = {"captioning.cli", "captioning.__main__", "captioning.train", "captioning.train_config",
                       "captioning.evaluate", "captioning.naming", "captioning.averaging",
                       "captioning.lexicon.derive_endings", "captioning.lexicon.derive_stand_ins"}


def test_vqa_and_the_app_build_on_the_library_not_on_captioning_commands():
    """vqa's modules import captioning's library (model, data, training, engine), never a module that is one
    of captioning's commands; the app imports neither."""
    import ast

    for path in sorted([*(ROOT / "vqa").rglob("*.py"), *(ROOT / "app").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert name not in CAPTIONING_COMMANDS, f"{path.relative_to(ROOT)} imports {name}"
    assert {p.stem for p in (ROOT / "captioning").glob("*.py")}.isdisjoint({"cli_base", "device", "runtime",
                                                                           "figures", "stopping"})
