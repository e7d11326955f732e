import pytest
import torch

from captioning.search import beam_search, sequential_search

from .helpers import random_features, tiny_captioner


def decode_args(model, feats):
    dec, v = model.decoder, model.vocab
    return dict(step=dec.step, state=dec.init_state(feats), memory=dec.memory(feats),
                start_id=v.start_id, end_id=v.end_id, max_len=12)


def greedy(model, feats):
    return sequential_search(**decode_args(model, feats))


def beam(model, feats, k, **kw):
    return beam_search(**decode_args(model, feats), pad_id=model.vocab.pad_id, beam_size=k, **kw)


@pytest.mark.parametrize("seed", range(4))
def test_beam_size_one_equals_greedy(vocab, seed):
    model = tiny_captioner(vocab, cell=["lstm", "gru", "rnn", "lstm"][seed], num_layers=1 + seed % 2)
    feats = random_features(5, seed=seed)
    with torch.no_grad():
        g, b = greedy(model, feats), beam(model, feats, 1)
    for gh, (bh,) in zip(g, b):
        assert gh.token_ids == bh.token_ids
        assert gh.log_prob == pytest.approx(bh.log_prob, abs=1e-4)
        assert torch.allclose(gh.attention, bh.attention, atol=1e-5)


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_batched_beam_equals_one_image_at_a_time(vocab, attention):
    model = tiny_captioner(vocab, attention=attention, hard_inference="argmax")
    feats = random_features(6, seed=7)
    with torch.no_grad():
        together = beam(model, feats, 3, num_results=3)
        alone = [beam(model, feats[i:i + 1], 3, num_results=3)[0] for i in range(6)]
    for t, a in zip(together, alone):
        assert [h.token_ids for h in t] == [h.token_ids for h in a]
        assert [h.log_prob for h in t] == pytest.approx([h.log_prob for h in a], abs=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_beam_never_scores_below_greedy(vocab, seed):
    model = tiny_captioner(vocab, hidden_dim=48 + seed)
    feats = random_features(8, seed=seed)
    with torch.no_grad():
        g = greedy(model, feats)
        for k in (2, 3, 5):
            for gh, (bh,) in zip(g, beam(model, feats, k)):
                assert bh.log_prob >= gh.log_prob - 1e-4


def test_beam_results_are_sorted_and_consistent(vocab):
    model = tiny_captioner(vocab)
    feats = random_features(2, seed=1)
    with torch.no_grad():
        results = beam(model, feats, 4, num_results=4)
        forced = model.decoder
    for hyps in results:
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        for h in hyps:
            assert h.attention.shape == (len(h.token_ids), 4)
    # The reported log-probability is the model's own probability of that caption (with <end>).
    h = results[0][0]
    ids = torch.tensor([[1, *h.token_ids, 2]]) if h.finished else torch.tensor([[1, *h.token_ids]])
    with torch.no_grad():
        assert float(forced(feats[:1], ids).sequence_log_probs) == pytest.approx(h.log_prob, abs=1e-4)


def test_length_penalty_reranks_by_normalised_score(vocab):
    model = tiny_captioner(vocab)
    feats = random_features(3, seed=2)
    with torch.no_grad():
        for hyps in beam(model, feats, 4, num_results=4, length_penalty=1.0):
            for h in hyps:
                n = len(h.token_ids) + int(h.finished)
                assert h.score == pytest.approx(h.log_prob / n, abs=1e-5)
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_sampling_is_seeded_and_low_temperature_is_greedy(vocab):
    model = tiny_captioner(vocab)
    feats = random_features(4, seed=5)
    a = model.caption_features(feats, sample=True, temperature=1.0, seed=3)
    b = model.caption_features(feats, sample=True, temperature=1.0, seed=3)
    assert [r.text for r in a] == [r.text for r in b]
    cold = model.caption_features(feats, sample=True, temperature=1e-4, seed=0)
    assert [r.text for r in cold] == [r.text for r in model.caption_features(feats, beam_size=1)]
    with pytest.raises(ValueError, match="temperature"):
        model.caption_features(feats, sample=True, temperature=0)


def test_high_temperature_gives_diverse_samples(vocab):
    model = tiny_captioner(vocab)
    feats = random_features(1, seed=5).expand(12, -1, -1)
    texts = {r.text for r in model.caption_features(feats, sample=True, temperature=2.0, seed=1)}
    assert len(texts) > 1
