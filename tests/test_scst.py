"""Self-critical sequence training: CIDEr-D against pycocoevalcap, reward and advantage signs, gradients,
and `captioning train --scst --init-from` end to end with resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from pycocoevalcap.cider.cider import Cider

from captioning import load_captioner
from captioning.cider import CiderD, cider_d
from captioning.data.records import ImageRecord
from captioning.scst import (
    DF_FILE,
    CaptionReward,
    ScstSettings,
    SelfCriticalHooks,
    advantages,
    caption_tensor,
    training_cider,
)
from captioning.search import Hypothesis
from captioning.train import main
from captioning.train_config import get_args_parser
from captioning.training import Dist, Hooks
from captioning.vocab import tokenize

from .helpers import CAPTIONS, random_features, tiny_captioner
from .test_train_run import shared_data, tiny_args

WORDS = "a the red blue green dog cat man woman runs sits on in grass water ball with two small big".split()


def random_corpus(n: int, seed: int = 0) -> tuple[dict, dict]:
    rng = random.Random(seed)
    sentence = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))  # noqa: E731
    refs = {i: [sentence() for _ in range(rng.randint(1, 5))] for i in range(n)}
    hyps = {i: sentence() if i % 4 else refs[i][0] for i in range(n)}
    hyps[1], hyps[2] = "A Dog, on the grass.", "dog"
    return refs, hyps


def coco_cider(refs: dict, hyps: dict) -> tuple[float, list[float]]:
    gts = {i: [" ".join(tokenize(r)) for r in refs[i]] for i in hyps}
    res = {i: [" ".join(tokenize(hyps[i]))] for i in hyps}
    score, scores = Cider().compute_score(gts, res)
    return float(score), [float(s) for s in scores]


def test_cider_d_agrees_with_pycocoevalcap():
    refs, hyps = random_corpus(60)
    expected, per_image = coco_cider(refs, hyps)
    score, ours = CiderD.from_references(refs.values()).corpus_score(refs, hyps)
    assert score == pytest.approx(expected, abs=1e-6)
    assert ours == pytest.approx(per_image, abs=1e-6)
    assert cider_d(refs, hyps) == pytest.approx(expected, abs=1e-6)


def test_cider_d_with_another_corpus_document_frequencies(tmp_path):
    """Scoring 10 images with the df of all 60 equals pycocoevalcap scoring all 60, on those 10."""
    refs, hyps = random_corpus(60, seed=1)
    _, per_image = coco_cider(refs, hyps)
    scorer = CiderD.from_references(refs.values())
    scorer = CiderD.load(scorer.save(tmp_path / "df.json"))  # the cached form gives the same scores
    for i in range(10):
        assert scorer.score(hyps[i], refs[i], key=i) == pytest.approx(per_image[i], abs=1e-6)
        assert scorer.score(hyps[i], refs[i], key=i) == pytest.approx(per_image[i], abs=1e-6)  # cached refs


def test_advantage_signs():
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, 2.0, 2.0])  # 2 images x 3 samples
    adv, base = advantages(rewards, torch.tensor([0.5, 1.0]), 3)
    assert adv.tolist() == [0.5, -0.5, 0.0, 1.0, 1.0, 1.0] and base.tolist() == [0.5] * 3 + [1.0] * 3
    adv, base = advantages(rewards, None, 3)  # mean of the other two samples
    assert adv.tolist() == pytest.approx([0.75, -0.75, 0.0, 0.0, 0.0, 0.0])
    better = CaptionReward(CiderD.from_references([["a red circle"], ["a blue square"]]))
    record = ImageRecord(0, Path("x.png"), "train", ["a red circle"])
    assert better(["a red circle", "a blue square"], [record, record]).tolist()[0] > 0.0
    assert better(["a red circle", "a blue square"], [record, record]).tolist()[1] == 0.0
    hyps = [Hypothesis([5, 6], 0.0, torch.zeros(2, 1), True, 0.0), Hypothesis([], 0.0, torch.zeros(0, 1), True, 0.0),
            Hypothesis([7], 0.0, torch.zeros(1, 1), False, 0.0)]  # the last cut at max_len: no <end>
    assert caption_tensor(hyps, 1, 2).tolist() == [[1, 5, 6, 2], [1, 2, 0, 0], [1, 7, 0, 0]]


class NoValidation(Hooks):
    def start_epoch(self, epoch, optimizer):
        pass


def toy_hooks(vocab, baseline: str = "mean", per_word: bool = False, attention: str = "soft"):
    torch.manual_seed(0)
    model = tiny_captioner(vocab, max_len=6, attention=attention)
    records = [ImageRecord(i, Path(f"{i}.png"), "train", ["a red circle"]) for i in range(2)]
    features = dict(enumerate(random_features(2, positions=4, dim=model.encoder.channels)))
    reward = CaptionReward(CiderD.from_references([[c] for c in CAPTIONS]))
    settings = ScstSettings(samples=8, baseline=baseline, per_word=per_word, images_per_batch=2, max_len=6)
    hooks = SelfCriticalHooks(NoValidation(), model, model.decoder, records, features, reward, settings,
                              torch.device("cpu"), Dist())
    return hooks, model, records, features


@pytest.mark.parametrize("per_word", [False, True])
def test_samples_come_from_the_updated_policy(vocab, per_word):
    """After a fused Adam step (weights updated in place, versions not bumped) the sampler must not
    decode with stale weight copies: the samples' log-probabilities as sampled and as teacher-forced agree."""
    hooks, model, records, features = toy_hooks(vocab, baseline="greedy", per_word=per_word)
    grid = torch.stack([features[r.image_id] for r in records])
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=3e-2, fused=True)
    for _ in range(3):
        out = hooks.step(records)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        sampled, _ = hooks.sample(grid)
        with torch.no_grad():
            forced = model.decoder(grid, caption_tensor(sampled, vocab.start_id, vocab.end_id)).sequence_log_probs
        assert forced.tolist() == pytest.approx([h.log_prob for h in sampled], abs=1e-3)


def test_samples_are_scored_under_the_distribution_they_were_drawn_from(vocab):
    """SCST's teacher-forced log-probabilities are those of the sampling policy: the softmax renormalised
    without <unk> (and without <end> as the first word or after "a red" or "a red and blue"), step by step as `decode` draws them; under the
    plain softmax REINFORCE would push probability towards words that are never sampled."""
    hooks, model, records, features = toy_hooks(vocab)
    with torch.no_grad():  # make the banned words likely, so that renormalising matters
        model.decoder.output.logits.bias[vocab.unk_id] += 3.0
        model.decoder.output.logits.bias[vocab.end_id] += 3.0
    grid = torch.stack([features[0]])
    decoder, rules = model.decoder.eval(), model.generation_rules
    sampled, _ = hooks.sample(grid)
    captions = caption_tensor(sampled, vocab.start_id, vocab.end_id)
    with torch.no_grad():
        scored = decoder(grid, captions, rules).sequence_log_probs
        plain = decoder(grid, captions).sequence_log_probs
        state, memory = decoder.init_state(grid), decoder.memory(grid)
        state = tuple(s.repeat_interleave(len(sampled), 0) for s in state)
        expected = torch.zeros(len(sampled))
        before = torch.full_like(captions[:, 0], vocab.start_id)  # as generation carries it ("a red and" is open)
        for t in range(captions.shape[1] - 1):
            log_probs, state, _ = decoder.step(captions[:, t], state, memory)
            policy = rules.mask_(log_probs, captions[:, t], before).log_softmax(dim=-1)
            live = captions[:, t + 1] != 0
            expected += torch.where(live, policy.gather(1, captions[:, t + 1:t + 2]).squeeze(1), 0.0)
            before = rules.next_before(before, captions[:, t])
    assert scored.tolist() == pytest.approx(expected.tolist(), abs=1e-4)
    assert bool((scored > plain + 0.1).all())  # the banned mass was not negligible here


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_better_samples_become_likelier_and_gradients_reach_the_decoder(vocab, attention):
    """For hard attention too: SCST is REINFORCE over words, attending by the test-time rule (expectation)."""
    hooks, model, records, features = toy_hooks(vocab, attention=attention)
    grid = torch.stack([features[0]])

    def log_p(h: Hypothesis) -> float:  # log p(caption | image 0) under the policy
        with torch.no_grad():
            return float(model.decoder.eval()(grid, caption_tensor([h], vocab.start_id, vocab.end_id)).sequence_log_probs)

    torch.manual_seed(1)
    sampled, _ = hooks.sample(grid)  # 8 captions of image 0, from the untrained policy
    rewards = hooks.reward([" ".join(vocab.decode(h.token_ids)) for h in sampled], [records[0]] * len(sampled))
    assert rewards.max() > rewards.min()
    better, worse = sampled[int(rewards.argmax())], sampled[int(rewards.argmin())]
    before = log_p(better), log_p(worse)
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=2e-3)
    rewards = []
    for step in range(8):
        out = hooks.step(records)
        optimizer.zero_grad()
        out.loss.backward()
        if step == 0:
            for name in ("embedding.weight", "attention.hidden_proj.weight", "output.logits.weight",
                         "init_h.weight"):
                grad = dict(model.decoder.named_parameters())[name].grad
                assert grad is not None and grad.abs().sum() > 0, name
        optimizer.step()
        rewards.append(out.reward)
    assert sum(rewards[-3:]) / 3 > 2 * rewards[0]
    # the better sample gains on the worse one (both may lose to new, still better captions)
    assert log_p(better) - log_p(worse) > before[0] - before[1] + 1.0


def train(*argv: str):
    return main(get_args_parser().parse_args(list(argv)))


@pytest.fixture(scope="module")
def ce_run(tmp_path_factory) -> tuple[Path, Path]:
    data = shared_data(tmp_path_factory)
    run = tmp_path_factory.mktemp("ce") / "run"
    train(*tiny_args(data, run, "--epochs", "1"))
    return run, data


def scst_args(data: Path, ce: Path, out: Path, *extra: str) -> list[str]:
    return [*tiny_args(data, out), "--scst", "--init-from", str(ce), "--scst-samples", "2", "--lr", "1e-3",
            "--val-metric", "cider", *extra]


def test_scst_run_resumes_like_one_run(ce_run, tmp_path):
    ce, data = ce_run
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    state = train(*scst_args(data, ce, whole))
    assert state.epoch == 2 and "val_cider" in state.history[-1] and "train_reward" in state.history[-1]
    assert json.loads((whole / DF_FILE).read_text())["num_documents"] == 8
    assert load_captioner(whole).vocab.words == load_captioner(ce).vocab.words
    train(*scst_args(data, ce, halves, "--epochs", "1"))
    (halves / DF_FILE).unlink()  # a lost df cache is rebuilt
    train(*scst_args(data, ce, halves))
    assert (halves / DF_FILE).is_file()
    a, b = load_captioner(whole / "last"), load_captioner(halves / "last")
    for (name, x), y in zip(a.decoder.state_dict().items(), b.decoder.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    c = load_captioner(ce)
    assert not torch.equal(a.decoder.output.logits.weight, c.decoder.output.logits.weight)


def test_training_cider_reloads_its_cache(tmp_path):
    records = [ImageRecord(i, Path(f"{i}.png"), "train", [c]) for i, c in enumerate(CAPTIONS)]
    first = training_cider(tmp_path, records, Dist())
    again = training_cider(tmp_path, records, Dist())
    assert again.document_frequency == first.document_frequency and again.num_documents == len(CAPTIONS)
