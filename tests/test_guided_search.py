"""Constrained beam search (Anderson et al. 2017): required words are said, excluded ones never, and
without constraints it is the plain beam search."""

from __future__ import annotations

import itertools

import pytest
import torch

from captioning.search import Guidance, beam_search

from .helpers import random_features, tiny_captioner


def decode(model, feats, k, guidance=None, **kw):
    dec, v = model.decoder, model.vocab
    return beam_search(dec.step, dec.init_state(feats), dec.memory(feats), start_id=v.start_id, end_id=v.end_id,
                       pad_id=v.pad_id, max_len=12, beam_size=k, guidance=guidance, **kw)


def sequence_log_prob(model, feats, ids, finished=True):
    captions = torch.tensor([[1, *ids, 2]] if finished else [[1, *ids]])
    with torch.no_grad():
        return float(model.decoder(feats, captions).sequence_log_probs)


@pytest.mark.parametrize("k", [1, 3])
def test_no_constraints_is_plain_beam_search(vocab, k):
    model = tiny_captioner(vocab)
    feats = random_features(4, seed=3)
    with torch.no_grad():
        plain = decode(model, feats, k, num_results=3)
        empty = decode(model, feats, k, guidance=[Guidance()] * 4, num_results=3)
    assert [[h.token_ids for h in r] for r in plain] == [[h.token_ids for h in r] for r in empty]


@pytest.mark.parametrize("seed", range(3))
def test_required_words_are_said_and_excluded_never(vocab, seed):
    model = tiny_captioner(vocab, hidden_dim=40 + seed)
    with torch.no_grad():  # a random decoder rarely ends; texts cut at max_len rank after finished ones
        model.decoder.output.logits.bias[vocab.end_id] += 3.0
    feats = random_features(3, seed=seed)
    ids = vocab.index
    guidance = [Guidance((frozenset({ids["triangle"]}),), frozenset({ids["circle"]})),
                Guidance((frozenset({ids["yellow"], ids["purple"]}), frozenset({ids["square"]}))),
                None]
    with torch.no_grad():
        results = decode(model, feats, 3, guidance=guidance)
        plain = decode(model, feats[2:], 3)
    first, second, third = (r[0] for r in results)
    assert first.finished and second.finished
    assert ids["triangle"] in first.token_ids and ids["circle"] not in first.token_ids
    assert {ids["yellow"], ids["purple"]} & set(second.token_ids) and ids["square"] in second.token_ids
    assert third.token_ids == plain[0][0].token_ids  # an image without guidance decodes as before
    for h, row in ((first, 0), (second, 1)):  # the reported log-probability is the model's own
        assert h.log_prob == pytest.approx(sequence_log_prob(model, feats[row:row + 1], h.token_ids, h.finished),
                                           abs=1e-4)


def test_constrained_result_is_the_likeliest_text_that_says_the_word(vocab):
    """On a toy model whose every text is enumerable, the guided result beats every other text with the word."""
    V, START, END, WANT = 6, 1, 2, 5

    def step(tokens, state, memory):
        table = torch.tensor([[-9, -9, -0.5, -9, -1.2, -3.0]] * V)  # after any word: end, or 4, rarely 5
        table[START] = torch.tensor([-9, -9, -9, -9, -0.1, -2.5])
        table[4, 4] = -0.4
        return table[tokens].log_softmax(-1), state, torch.ones(tokens.shape[0], 1)

    state, memory = (torch.zeros(1, 1),), None
    ((best,),) = beam_search(step, state, memory, start_id=START, end_id=END, pad_id=0, max_len=4, beam_size=2,
                             guidance=[Guidance((frozenset({WANT}),))])
    assert WANT in best.token_ids and best.finished

    def score(words):
        total, prev = 0.0, START
        for w in [*words, END]:
            total += float(step(torch.tensor([prev]), state, memory)[0][0, w])
            prev = w
        return total

    texts = [t for n in range(1, 4) for t in itertools.product((4, 5), repeat=n) if WANT in t]
    assert best.log_prob == pytest.approx(max(score(t) for t in texts), abs=1e-5)


def test_guidance_validates(vocab):
    with pytest.raises(ValueError, match="at most"):
        Guidance(tuple(frozenset({i}) for i in range(4, 8)))
    with pytest.raises(ValueError, match="empty"):
        Guidance((frozenset(),))
    model = tiny_captioner(vocab)
    with pytest.raises(ValueError, match="guidance for 1 images, but 2"):
        decode(model, random_features(2), 3, guidance=[None])


@pytest.mark.parametrize("k", [1, 3])
def test_each_word_carries_its_own_log_probability(vocab, k):
    """`Hypothesis.word_log_probs` (what hedging reads) are the teacher-forced log p of each word given the
    ones before it, in guided and plain beam search and in greedy search: together with <end>'s they make
    the caption's log p."""
    from captioning.search import sequential_search

    model = tiny_captioner(vocab)
    feats = random_features(3, seed=5)
    dec, v = model.decoder, model.vocab
    with torch.no_grad():
        found = [r[0] for r in decode(model, feats, k)] + [r[0] for r in decode(
            model, feats, k, guidance=[Guidance((frozenset({v.index["circle"]}),))] * 3)]
        found += sequential_search(dec.step, dec.init_state(feats), dec.memory(feats), start_id=v.start_id,
                                   end_id=v.end_id, max_len=12)
        for i, h in enumerate(found):
            assert len(h.word_log_probs) == len(h.token_ids)
            prefixes = [sequence_log_prob(model, feats[i % 3:i % 3 + 1], h.token_ids[:n], finished=False)
                        for n in range(1, len(h.token_ids) + 1)]
            expected = [b - a for a, b in zip([0.0, *prefixes[:-1]], prefixes)]
            assert h.word_log_probs == pytest.approx(expected, abs=1e-4)
