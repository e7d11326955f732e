"""The one inference seam (issue 25): the plain path (the paper's equations on plain linear layers) decodes what
the fast path decodes, to 1e-5 in log p, for every decoder variant and for the bundled models; the int8 path
quantises every weight product of a step and stays close (stated tolerance: the fast path's caption on at least
60% of the example photos here; on Flickr8k val, docs/performance.md, 95.7% of 1,000)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captioning import Vocabulary, load_captioner
from captioning.images import open_image
from captioning.inference import Int8Linear
from vqa import load_answerer

from .helpers import CAPTIONS, random_features, tiny_captioner

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "app" / "examples").glob("*.*g"))


def _same_decoding(fast, other, features: torch.Tensor, beam_size: int = 3) -> None:
    a = fast.caption_features(features, beam_size=beam_size, num_results=2, guide=False)
    b = other.caption_features(features, beam_size=beam_size, num_results=2, guide=False)
    for x, y in zip(a, b, strict=True):
        assert x.text == y.text and [t for t, _ in x.alternatives] == [t for t, _ in y.alternatives]
        assert y.log_prob == pytest.approx(x.log_prob, abs=1e-5)
        assert [s for _, s in y.alternatives] == pytest.approx([s for _, s in x.alternatives], abs=1e-5)
        torch.testing.assert_close(y.attention, x.attention, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", [
    {}, {"cell": "gru"}, {"cell": "rnn", "num_layers": 2}, {"num_layers": 3, "gate": False},
    {"deep_output": False}, {"attention": "hard", "hard_inference": "argmax"}, {"attention": "hard"},
])
def test_plain_decodes_what_fast_decodes_for_every_decoder_variant(overrides):
    vocab = Vocabulary.build(CAPTIONS, min_freq=1)
    fast = tiny_captioner(vocab, **overrides)
    plain = tiny_captioner(vocab, **overrides).use_inference("plain")
    for features in (random_features(1, seed=3), random_features(5, seed=4)):  # with and without context terms
        _same_decoding(fast, plain, features)
        _same_decoding(fast, plain, features, beam_size=1)


@pytest.mark.parametrize("overrides, products", [({}, 5), ({"cell": "gru", "num_layers": 2, "gate": False}, 6),
                                                  ({"deep_output": False}, 4)])
def test_int8_quantises_every_weight_product_of_a_step(overrides, products):
    vocab = Vocabulary.build(CAPTIONS, min_freq=1)
    fast, model = tiny_captioner(vocab, **overrides), tiny_captioner(vocab, **overrides).use_inference("int8")
    quantised = model._step.__self__
    assert sum(isinstance(m, Int8Linear) for m in quantised.modules()) == products
    assert not any(isinstance(m, Int8Linear) for m in model.decoder.modules())  # the model's own weights untouched
    for features in (random_features(1, seed=3), random_features(5, seed=4)):
        a, b = fast.caption_features(features, guide=False), model.caption_features(features, guide=False)
        assert [x.log_prob for x in b] == pytest.approx([x.log_prob for x in a], abs=0.1)
    with pytest.raises(ValueError, match="inference must be one of fast, plain, int8"):
        model.use_inference("fp8")


@pytest.fixture(scope="module")
def example_photos():
    return [open_image(p, at_least=640) for p in EXAMPLES]


def test_the_bundled_captioner_decodes_alike_on_every_path(example_photos):
    fast, plain, int8 = (load_captioner(inference=kind) for kind in ("fast", "plain", "int8"))
    features = fast.encoder.encode_pil(example_photos)
    _same_decoding(fast, plain, features)
    agree = sum(a.text == b.text for a, b in zip(fast.caption_features(features), int8.caption_features(features),
                                                strict=True))
    assert agree >= 0.6 * len(example_photos), f"int8 gave the fast caption on {agree} of {len(example_photos)}"


def test_the_bundled_answerer_decodes_alike_on_plain(example_photos):
    fast, plain = load_answerer(), load_answerer(inference="plain")
    for photo in example_photos[:4]:
        for question in ("What is the man doing?", "Where is the dog?"):
            a, b = fast.answer(photo, question), plain.answer(photo, question)
            assert a.choices == b.choices and a.scores == pytest.approx(b.scores, abs=1e-5)
