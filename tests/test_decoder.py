import pytest
import torch

from captioning.decoder import ShowAttendTellDecoder

from .helpers import CAPTIONS, padded, random_features, tiny_config


def make_decoder(vocab, **overrides) -> ShowAttendTellDecoder:
    torch.manual_seed(0)
    return ShowAttendTellDecoder(tiny_config(**overrides), len(vocab), 1280)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_every_cell_and_depth_runs_through_one_code_path(vocab, cell, layers):
    dec = make_decoder(vocab, cell=cell, num_layers=layers)
    out = dec(random_features(3), padded(vocab, CAPTIONS[:3]))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert out.alphas.shape[:2] == (3, max(len(vocab.encode(c)) for c in CAPTIONS[:3]) - 1)
    assert dec.rnn.hidden_proj[layers - 1].weight.grad is not None


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_padding_does_not_change_the_loss(vocab, attention):
    """Full masked batches: extra padding columns and a padded neighbour change nothing."""
    dec = make_decoder(vocab, attention=attention).eval()
    feats, caps = random_features(2), padded(vocab, CAPTIONS[:2])
    wide = torch.cat([caps, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    a, b = dec(feats, caps), dec(feats, wide)
    assert torch.allclose(a.sequence_log_probs, b.sequence_log_probs, atol=1e-5)
    alone = dec(feats[1:], caps[1:, : len(vocab.encode(CAPTIONS[1]))])
    assert torch.allclose(alone.sequence_log_probs, a.sequence_log_probs[1:], atol=1e-5)


def test_step_reproduces_teacher_forcing(vocab):
    dec = make_decoder(vocab, num_layers=2, cell="gru").eval()
    feats, caps = random_features(2), padded(vocab, CAPTIONS[:2])
    forced = dec(feats, caps).sequence_log_probs
    state, memory = dec.init_state(feats), dec.memory(feats)
    total = torch.zeros(2)
    for t in range(caps.shape[1] - 1):
        log_probs, state, alpha = dec.step(caps[:, t], state, memory)
        assert torch.allclose(alpha.sum(-1), torch.ones(2))
        target = caps[:, t + 1]
        total += torch.where(target > 0, log_probs.gather(1, target[:, None]).squeeze(1), torch.zeros(2))
    assert torch.allclose(total, forced, atol=1e-4)


def test_doubly_stochastic_penalty_matches_formula(vocab):
    dec = make_decoder(vocab, doubly_stochastic=0.7).eval()
    out = dec(random_features(2), padded(vocab, CAPTIONS[:2]))
    expected = 0.7 * ((1 - out.alphas.sum(1)) ** 2).sum(1).mean()
    assert torch.allclose(out.attention_penalty, expected)
    assert torch.allclose(out.loss, out.nll + out.attention_penalty)


def test_reinforce_updates_the_attention_parameters(vocab):
    """With only sampled locations (no soft steps, no penalty, no entropy), the attention MLP can
    only learn through the score-function term: its gradient must be non-zero, and zero without it."""
    grads = {}
    for weight in (1.0, 0.0):
        dec = make_decoder(vocab, attention="hard", doubly_stochastic=0.0,
                           reinforce=dict(samples=4, soft_probability=0.0, entropy_weight=0.0, reward_weight=weight))
        dec.train()
        torch.manual_seed(1)
        dec(random_features(3), padded(vocab, CAPTIONS[:3])).loss.backward()
        grads[weight] = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                                   for p in dec.attention.parameters()])
    assert grads[1.0].abs().sum() > 0
    assert grads[0.0].abs().sum() == 0
    assert grads[1.0].abs().sum() > 0  # and the baseline moved away from zero
    assert float(dec.reward_baseline) != 0.0


def test_reinforce_baseline_is_a_moving_average(vocab):
    dec = make_decoder(vocab, attention="hard", reinforce=dict(samples=2, baseline_decay=0.9)).train()
    feats, caps = random_features(2), padded(vocab, CAPTIONS[:2])
    dec(feats, caps)
    first = float(dec.reward_baseline)
    assert bool(dec.baseline_initialised)
    dec(feats, caps)
    assert float(dec.reward_baseline) != first


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_tiny_model_memorises_captions(vocab, attention):
    """Overfit five captions: loss near zero and greedy decoding reproduces every one."""
    from .helpers import tiny_captioner

    model = tiny_captioner(vocab, attention=attention, hard_inference="argmax" if attention == "hard" else "expectation")
    feats, caps = random_features(len(CAPTIONS), positions=4, seed=3), padded(vocab, CAPTIONS)
    opt = torch.optim.Adam(model.decoder.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        out = model.decoder(feats, caps)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.decoder.parameters(), 5.0)
        opt.step()
    model.eval()
    assert model.decoder(feats, caps).nll < 0.05
    texts = [r.text for r in model.caption_features(feats, beam_size=1)]
    assert texts == CAPTIONS


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_captions_grouped_by_image_equal_one_grid_per_caption(vocab, attention):
    """k captions per image share one grid (projection, initial state, reads): the loss and every
    gradient equal those of k separate copies of the grid."""
    dec = make_decoder(vocab, attention=attention, dropout=0.0).double().train()
    feats, caps = random_features(2).double(), padded(vocab, CAPTIONS[:3] + CAPTIONS[2:])  # 0-2: image 0, 3-5: 1

    def loss_and_grads(features):
        dec.zero_grad()
        dec.reward_baseline.zero_()
        dec.baseline_initialised.fill_(False)
        torch.manual_seed(3)  # the same hard-attention samples in both runs
        out = dec(features, caps)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in dec.named_parameters() if p.grad is not None}

    grouped, repeated = loss_and_grads(feats), loss_and_grads(feats.repeat_interleave(3, 0))
    assert caps.shape[0] == 6
    assert torch.allclose(grouped[0], repeated[0], atol=1e-12)
    assert grouped[1].keys() == repeated[1].keys()
    for name, grad in grouped[1].items():
        assert torch.allclose(grad, repeated[1][name], atol=1e-10), name


def test_captions_must_split_evenly_over_images(vocab):
    dec = make_decoder(vocab)
    with pytest.raises(ValueError, match="5 captions do not split evenly over 2 images"):
        dec(random_features(2), padded(vocab, CAPTIONS[:5]))


@pytest.mark.parametrize("per_image", [1, 3])
def test_blocked_attention_scores_have_plain_autograd_gradients(monkeypatch, per_image):
    """`StepScores` (blocked, recomputing tanh, summing the projection's gradient over steps) against
    the same steps through plain autograd, in float64, with blocks that do not divide the batch."""
    from captioning import attention as att_module
    from captioning.ops import attention_scores

    monkeypatch.setattr(attention_scores, "BLOCK_ELEMENTS", 2 * per_image * 9 * 5)  # 2 images per block
    torch.manual_seed(0)
    att = att_module.AdditiveAttention(11, 6, 5).double()
    feats = torch.randn(5, 9, 11, dtype=torch.float64)
    hiddens = [torch.randn(5 * per_image, 6, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    targets = [torch.randn(5 * per_image, 9, dtype=torch.float64) for _ in hiddens]

    def grads(blocked: bool):
        att.zero_grad()
        for h in hiddens:
            h.grad = None
        projected = att.project(feats)
        weights = att.scorer(projected) if blocked else \
            (lambda q: attention_scores.additive_weights(projected, q, att.score.weight, att.score.bias))
        loss = sum((weights(att.hidden_proj(h)) * t).sum() for h, t in zip(hiddens, targets, strict=True))
        loss.backward()
        return [p.grad.clone() for p in att.parameters()] + [h.grad.clone() for h in hiddens]

    for a, b in zip(grads(True), grads(False), strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    with torch.no_grad():  # the no-autograd path (decoding) is blocked too
        projected, q = att.project(feats), att.hidden_proj(hiddens[0])
        plain = attention_scores.additive_weights(projected, q, att.score.weight, att.score.bias)
        assert torch.allclose(att.weights_from(projected, q), plain, atol=1e-12)


def test_attention_tanh_through_the_logistic_function_is_tanh():
    """`ops.attention_scores.tanh_by_sigmoid_` (2 sigmoid(2x) - 1, faster on some CPUs) agrees with torch.tanh,
    saturation included, and so does `tanh_`, whichever formula it picked on this machine."""
    from captioning.ops.attention_scores import sigmoid_tanh_is_faster, tanh_, tanh_by_sigmoid_

    x = torch.cat([torch.linspace(-30, 30, 10_001), torch.tensor([0.0, -0.0, 1e-8, -1e-8])])
    for form in (tanh_by_sigmoid_, tanh_):
        assert torch.allclose(form(x.clone()), torch.tanh(x), atol=3e-7, rtol=0)
        x64 = x.double()
        assert torch.allclose(form(x64.clone()), torch.tanh(x64), atol=1e-15, rtol=0)
    assert isinstance(sigmoid_tanh_is_faster(), bool) and sigmoid_tanh_is_faster.cache_info().currsize == 1
    rng = torch.get_rng_state()
    sigmoid_tanh_is_faster.__wrapped__()  # the timing itself draws nothing: a resumed run's dropout stays the same
    assert torch.equal(torch.get_rng_state(), rng)
