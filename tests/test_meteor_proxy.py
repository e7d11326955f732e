"""The METEOR-style SCST reward: its formula on hand-worked cases, and its agreement with the official
METEOR 1.5 (Java, via pycocoevalcap) sentence by sentence."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest
import torch

from captioning.cider import CiderD
from captioning.data.records import ImageRecord
from captioning.meteor_proxy import ALPHA, DELTA, GAMMA, STEM_WEIGHT, meteor_proxy, sentence_score
from captioning.metrics import java_available
from captioning.scst import CaptionReward


def test_one_chunk_is_penalised_unless_the_whole_reference_matches():
    words = "a dog runs on the grass".split()
    assert sentence_score(words, words) == 1.0
    # "a dog runs" against the whole sentence: P = 1, R = 1.75 / 3 (function words weigh 1 - delta), one chunk
    recall = (1 - DELTA + 2 * DELTA) / (3 * (1 - DELTA) + 3 * DELTA)
    fmean = recall / (ALPHA + (1 - ALPHA) * recall)
    assert sentence_score(words[:3], words) == pytest.approx(fmean * (1 - GAMMA * (1 / 3) ** 0.2))
    assert sentence_score(words[:3], words) == pytest.approx(0.3225, abs=1e-4)  # METEOR 1.5's own figure


def test_no_shared_word_scores_zero():
    assert sentence_score("a dog".split(), "the cat".split()) == 0.0
    assert meteor_proxy("", ["a dog"]) == 0.0


def test_stems_match_at_their_weight_and_function_words_weigh_less():
    # "dogs" ~ "dog" by stem (0.6), "run" = "run" exactly; "the" is unmatched, a function word
    hyp, ref = "dogs run".split(), "the dog run".split()
    precision = (STEM_WEIGHT * DELTA + DELTA) / (2 * DELTA)
    recall = (STEM_WEIGHT * DELTA + DELTA) / (2 * DELTA + (1 - DELTA))
    fmean = precision * recall / (ALPHA * precision + (1 - ALPHA) * recall)
    assert sentence_score(hyp, ref) == pytest.approx(fmean * (1 - GAMMA * (1 / 2) ** 0.2))


def test_recall_weighs_more_than_precision_and_order_matters():
    ref = "a brown dog runs through the tall grass".split()
    short, full = "a dog".split(), "a brown dog runs through grass".split()
    assert sentence_score(full, ref) > sentence_score(short, ref)
    scrambled = "grass through runs dog brown a".split()
    assert sentence_score(scrambled, ref) < sentence_score(full, ref)


def test_best_reference_wins():
    assert meteor_proxy("a dog runs", ["a cat sleeps", "a dog runs"]) == pytest.approx(
        sentence_score("a dog runs".split(), "a dog runs".split()))


def test_reward_adds_the_weighted_meteor_term():
    refs = ["a dog runs on the grass", "a brown dog running"]
    record = ImageRecord("x", Path("x.jpg"), "train", refs)
    cider = CiderD.from_references([refs])
    plain, mixed = CaptionReward(cider), CaptionReward(cider, meteor_weight=2.0)
    caption = "a dog runs"
    difference = mixed([caption], [record]) - plain([caption], [record])
    assert difference.item() == pytest.approx(2.0 * meteor_proxy(caption, refs), abs=1e-6)
    assert isinstance(difference, torch.Tensor)


@pytest.mark.skipif(not java_available(), reason="the official METEOR needs Java")
def test_agrees_with_official_meteor_sentence_by_sentence():
    from pycocoevalcap.meteor.meteor import Meteor

    rng = random.Random(0)
    nouns, verbs = ["dog", "horse", "bicycle", "woman", "car", "bird"], ["eats", "sleeps", "swims", "climbs", "waits"]
    places = ["near the tree", "in the water", "on a bench", "in the snow", "beside the house"]
    sentence = lambda: f"a {rng.choice(nouns)} {rng.choice(verbs)} {rng.choice(places)}"  # noqa: E731
    refs = {i: [sentence() for _ in range(4)] for i in range(60)}
    hyps = {i: [refs[i][0] if i % 5 == 0 else sentence()] for i in refs}
    _, official = Meteor().compute_score({i: r[1:] if i % 5 == 0 else r for i, r in refs.items()}, hyps)
    ours = [meteor_proxy(hyps[i][0], refs[i][1:] if i % 5 == 0 else refs[i]) for i in refs]
    assert statistics.correlation(official, ours) > 0.95  # 0.99 (synonyms aside, the same formula)
