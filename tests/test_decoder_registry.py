"""The decoder registry (issue 25): a decoder kind is one file in captioning/decoders. Show and Tell (Vinyals et
al. 2015), registered there and named nowhere else, trains through `captioning train --decoder`, saves, loads,
decodes on every search, and shows in the app."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from PIL import Image

from app import backend as be
from captioning import Captioner, Vocabulary, load_captioner
from captioning.checkpoint import CheckpointError
from captioning.cli import main as cli
from captioning.data.shapes import write_shapes_dataset
from captioning.decoders import decoder_class, list_decoders

from .helpers import CAPTIONS, padded, random_features, tiny_config

ROOT = Path(__file__).resolve().parent.parent


def _show_and_tell(vocab: Vocabulary) -> Captioner:
    torch.manual_seed(0)
    return Captioner(tiny_config(decoder="show_and_tell", dropout=0.0), vocab, pretrained_encoder=False).eval()


def test_the_registry_finds_every_kind_in_its_folder_and_names_unknown_ones():
    assert {"show_attend_tell", "show_and_tell"} <= set(list_decoders())
    with pytest.raises(ValueError, match="unknown decoder 'transformer9' \\(choose from .*show_and_tell"):
        decoder_class("transformer9")
    named = [p for folder in ("captioning", "vqa", "app") for p in (ROOT / folder).rglob("*.py")
             if "show_and_tell" in p.read_text() or "ShowAndTell" in p.read_text()]
    # its own file, and the registry's docstring pointing at it as the example: no other model file knows it
    assert {p.relative_to(ROOT).as_posix() for p in named} == {"captioning/decoders/show_and_tell.py",
                                                              "captioning/decoders/__init__.py"}
    assert "ShowAndTell" not in (ROOT / "captioning/decoders/__init__.py").read_text()


def test_show_and_tell_scores_a_caption_as_its_steps_do():
    """Teacher-forced log p of a caption equals the sum of the step-by-step log p search sees."""
    vocab = Vocabulary.build(CAPTIONS, min_freq=1)
    model = _show_and_tell(vocab)
    features = random_features(1, seed=2)
    caption = padded(vocab, [CAPTIONS[0]])
    with torch.no_grad():
        whole = model.decoder(features, caption).sequence_log_probs[0]
        state, memory, total = model.decoder.init_state(features), model.decoder.memory(features), 0.0
        for t in range(caption.shape[1] - 1):
            log_probs, state, alpha = model.decoder.step(caption[:, t], state, memory)
            total += float(log_probs[0, caption[0, t + 1]])
    assert float(whole) == pytest.approx(total, abs=1e-4)
    assert alpha.shape == (1, features.shape[1]) and torch.allclose(alpha.sum(-1), torch.ones(1))
    assert sum(p.numel() for p in model.decoder.parameters()) == model.config.decoder_parameters(len(vocab), 1280)


def test_show_and_tell_trains_saves_loads_and_decodes(tmp_path, capsys):
    annotations = write_shapes_dataset(tmp_path / "shapes", num_images=24, seed=1, image_size=64)
    assert cli(["train", "--annotations", str(annotations), "--images", str(tmp_path / "shapes"), "--out",
                str(tmp_path / "run"), "--decoder", "show_and_tell", "--epochs", "1", "--hidden-dim", "32",
                "--embed-dim", "16", "--batch-size", "8", "--num-workers", "0", "--image-size", "64",
                "--device", "cpu"]) == 0
    assert "done" in capsys.readouterr().out
    assert json.loads((tmp_path / "run/best/config.json").read_text())["model"]["decoder"]["kind"] == "show_and_tell"
    model = load_captioner(tmp_path / "run")
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    for beam_size in (1, 3):
        result = model.caption([image], beam_size=beam_size)[0]
        assert result.text and result.attention.shape[0] == len(result.tokens)
    assert model.caption([image], sample=True, seed=1)[0].text
    assert "Show and Tell" in be.describe_captioner(model)
    with pytest.raises(ValueError, match="decodes with its own step: use fast"):
        model.use_inference("plain")


def test_a_checkpoint_naming_an_unknown_decoder_is_refused_by_name(tmp_path):
    folder = _show_and_tell(Vocabulary.build(CAPTIONS, min_freq=1)).save(tmp_path / "ckpt")
    meta = json.loads((folder / "config.json").read_text())
    meta["model"]["decoder"]["kind"] = "transformer9"
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown decoder 'transformer9'"):
        load_captioner(folder)


def test_the_app_shows_a_show_and_tell_captioner(tmp_path, monkeypatch):
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    folder = _show_and_tell(Vocabulary.build(CAPTIONS, min_freq=1)).save(tmp_path / "sat")
    monkeypatch.setattr(be, "CAPTION_BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setattr(be, "VQA_BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(be.CAPTION_ENV, str(folder))
    monkeypatch.setitem(sys.modules, "vqa", types.ModuleType("vqa"))
    page = AppTest.from_file(str(Path(be.__file__).with_name("streamlit_app.py")), default_timeout=60)
    page.run()
    page.multiselect(key="examples").set_value(["a-red-triangle.png"]).run()
    assert not page.exception and not page.error
    assert any("Show and Tell" in str(c.value) for c in page.caption)
    assert page.subheader  # the caption


def test_the_answerer_builds_its_decoder_from_the_answer_registry(monkeypatch):
    """The VQA decoder is a registered kind of the "answer" task (Visual7W's LSTM-Att, the paper's decoder
    reading a question): an answerer is built from whatever kind its config names there, a caption kind is
    refused by name, and `vqa train --decoder` offers the answer kinds."""
    from captioning import decoders
    from captioning.decoders import ANSWER, register_decoder
    from vqa import Answerer, AnswererConfig
    from vqa.config import SCHEMA
    from vqa.decoder import QuestionAnsweringDecoder

    assert decoder_class("show_attend_tell", ANSWER) is QuestionAnsweringDecoder
    assert "show_and_tell" not in list_decoders(ANSWER) and "show_attend_tell" in list_decoders(ANSWER)
    with pytest.raises(ValueError, match="unknown answer decoder 'show_and_tell' \\(choose from .*show_attend_tell"):
        AnswererConfig(decoder="show_and_tell")

    monkeypatch.setitem(decoders._REGISTRY, ANSWER, dict(decoders._REGISTRY[ANSWER]))  # undone after the test

    @register_decoder("probe", task=ANSWER)
    class Probe(QuestionAnsweringDecoder):
        pass

    vocab = Vocabulary.build(["what color is it", "red", "blue"], min_freq=1)
    config = AnswererConfig(encoder="efficientnet_lite0", decoder="probe", embed_dim=8, hidden_dim=8,
                            attention_dim=8, image_size=64)
    assert config.to_dict()["decoder"]["kind"] == "probe"
    assert type(Answerer(config, vocab, pretrained_encoder=False).decoder) is Probe
    assert "probe" in SCHEMA.choices("decoder")
