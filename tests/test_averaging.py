"""`captioning average`: the mean of several checkpoints of one model, refusing different models."""

from __future__ import annotations

import pytest
import torch

from captioning import Vocabulary, load_captioner
from captioning.averaging import average_checkpoints

from .helpers import CAPTIONS, tiny_captioner


def test_average_is_the_mean_and_loads(tmp_path):
    vocab = Vocabulary.build(CAPTIONS)
    a = tiny_captioner(vocab)
    b = tiny_captioner(vocab)
    with torch.no_grad():
        for p in b.decoder.parameters():
            p.add_(1.0)
    out = average_checkpoints([a.save(tmp_path / "a"), b.save(tmp_path / "b")], tmp_path / "mean")
    mean = load_captioner(out, pretrained_encoder=False)
    for (name, pa), pb, pm in zip(a.decoder.named_parameters(), b.decoder.parameters(), mean.decoder.parameters(),
                                  strict=True):
        assert torch.allclose(pm, (pa + pb) / 2, atol=1e-6), name
    half = average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "half", half=True)
    assert load_captioner(half, pretrained_encoder=False).caption_features(torch.randn(1, 4, 1280))[0].text
    assert mean.length_penalty == 0.0
    ranked = average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "lp", length_penalty=0.6)
    assert load_captioner(ranked, pretrained_encoder=False).length_penalty == 0.6  # the model's own default
    with pytest.raises(ValueError, match="length-penalty"):
        average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "bad", length_penalty=-1)


def test_different_models_are_refused(tmp_path):
    vocab = Vocabulary.build(CAPTIONS)
    small = tiny_captioner(vocab).save(tmp_path / "small")
    wide = tiny_captioner(vocab, hidden_dim=48).save(tmp_path / "wide")
    other_words = tiny_captioner(Vocabulary.build(CAPTIONS + ["a zebra"])).save(tmp_path / "words")
    with pytest.raises(ValueError, match="another model"):
        average_checkpoints([small, wide], tmp_path / "out")
    with pytest.raises(ValueError, match="another vocabulary"):
        average_checkpoints([small, other_words], tmp_path / "out")
    with pytest.raises(ValueError, match="two checkpoints"):
        average_checkpoints([small], tmp_path / "out")


def test_a_malformed_decoding_default_is_refused(tmp_path):
    import json

    folder = tiny_captioner(Vocabulary.build(CAPTIONS)).save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["decoding"] == {"length_penalty": 0.0}
    config["decoding"] = {"length_penalty": "long"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="decoding.length_penalty"):
        load_captioner(folder, pretrained_encoder=False)
