"""bench/ at toy sizes: every measurement runs, the baseline computes our model's function, and the
fast training path (fused products of h, StepWeights) gives plain autograd's gradients. Not timed."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from bench import bench
from bench.baseline import from_showtell, tutorial_beam_search, tutorial_loss
from captioning.config import ModelConfig
from captioning.decoder import ShowAttendTellDecoder
from captioning.ops import Linear, StepWeights
from captioning.ops.attention_scores import sigmoid_tanh_is_faster
from captioning.search import beam_search

CPU = torch.device("cpu")


def toy_decoder(**overrides) -> ShowAttendTellDecoder:
    return bench.our_decoder(bench.TOY, CPU, **{"dropout": 0.0, **overrides})


def test_baseline_computes_our_model():
    """Same weights, same function: the tutorial-style loop is a fair reference, not a different model."""
    ours = toy_decoder(deep_output=False).eval()
    base = from_showtell(ours).eval()
    features, captions, lengths = bench.synthetic_batch(bench.TOY, 6, CPU)
    with torch.no_grad():
        _, nll = tutorial_loss(base, features, captions, lengths)
        assert float(nll) == pytest.approx(float(ours(features, captions).nll), abs=1e-5)
        for i in range(3):
            one = features[i:i + 1]
            words, log_prob = tutorial_beam_search(base, one, start_id=bench.START, end_id=bench.END, beam_size=1,
                                                   max_len=6)
            (hyp,) = beam_search(ours.step, ours.init_state(one), ours.memory(one), start_id=bench.START,
                                 end_id=bench.END, pad_id=bench.PAD, max_len=6, beam_size=1)[0]
            assert words == hyp.token_ids
            assert log_prob == pytest.approx(hyp.log_prob, abs=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_step_weights_give_plain_autograd_gradients(bias):
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 7, bias=bias)
    xs = [torch.randn(3, 5, requires_grad=True) for _ in range(4)]

    def loss(apply):
        h = torch.zeros(3, 7)
        for x in xs:
            h = torch.tanh(apply(x) + h)
        return h.square().sum()

    loss(layer).backward()
    expected = [p.grad.clone() for p in layer.parameters()] + [x.grad.clone() for x in xs]
    layer.zero_grad()
    for x in xs:
        x.grad = None
    loss(StepWeights(layer.weight, layer.bias)).backward()
    got = [p.grad for p in layer.parameters()] + [x.grad for x in xs]
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g, atol=1e-6)
    with torch.no_grad():  # outside autograd it is a plain linear
        assert StepWeights(layer.weight, layer.bias).token is None


def test_cached_linear_follows_weight_updates():
    torch.manual_seed(0)
    layer, x = Linear(6, 5), torch.randn(3, 6)
    with torch.no_grad():
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-6)
        layer.weight.mul_(2)  # an optimizer step or load_state_dict: the cached copy must follow
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-6)
    assert layer(x).requires_grad  # with autograd it is a plain nn.Linear


def test_a_copy_of_a_module_carries_no_derived_tensors():
    """deepcopy (int8's copy of the decoder, the bench's encoder copies) leaves the caches behind: keyed on the
    original's storages, they would only be stale weight there."""
    import copy

    torch.manual_seed(0)
    layer, x = Linear(6, 5), torch.randn(3, 6)
    with torch.no_grad():
        expected = layer(x)
        assert "_weight_t" in vars(layer)  # the cached (in, out) copy of the weight
        copied = copy.deepcopy(layer)
        assert "_weight_t" not in vars(copied)
        assert torch.equal(copied(x), expected)
    assert "_weight_t" in vars(layer)  # the original keeps its own


@pytest.mark.parametrize("config", [dict(), dict(deep_output=False, gate=False),
                                    dict(attention="hard", hard_inference="argmax")])
def test_precomputed_context_terms_decode_the_same(config):
    """One-image decoding reads the grid's products with W_z / L_z from `Memory.context_terms`."""
    dec = toy_decoder(**config).eval()
    features = bench.synthetic_batch(bench.TOY, 2, CPU)[0]
    tokens = torch.tensor([bench.START, bench.START])
    with torch.no_grad():
        plain, terms = dec.memory(features, context_terms=False), dec.memory(features, context_terms=True)
        assert plain.context_terms is None and terms.context_terms is not None
        state = dec.init_state(features)
        for (a, b) in zip(dec.step(tokens, state, plain), dec.step(tokens, state, terms), strict=True):
            for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
                assert torch.allclose(x, y, atol=1e-5)


@pytest.mark.parametrize("per_image", [1, 2])
def test_training_under_bf16_autocast_keeps_fp32_gradients(per_image):
    """The GPU recipe (bf16 autocast) exercised on the CPU, with one grid per caption and with captions
    sharing their image's grid: finite loss, fp32 gradients for every parameter."""
    dec = toy_decoder()
    features, captions, _ = bench.synthetic_batch(bench.TOY, 4, CPU)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dec(features[::per_image], captions)
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    for name, p in dec.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, name


def test_training_and_beam_measurements_run(tmp_path):
    results = bench.bench_training(bench.TOY, CPU, [5], repeats=1, amp=False)
    results += bench.bench_training(bench.TOY, CPU, [10], repeats=1, amp=True,
                                    configs={"soft": (dict(), 1), "hard": (dict(attention="hard"), 5)})
    results.append(bench.bench_beam(bench.TOY, CPU, images=4, baseline_images=2, repeats=1, amp=False))
    assert len(results) == 7
    assert "batch 10 (2 images x 5 captions)" in results[-2].setting
    for r in results:
        assert r.ours > 0 and len(r.ours_runs) == 1
        assert (r.baseline is None) == r.setting.startswith("hard")
    soft = [r for r in results if r.setting.startswith("soft")]
    assert all(r.speedup == pytest.approx(r.ours / r.baseline) and r.cpu_speedup > 0 for r in soft)
    assert "| train captions/s |" in bench.table(results)
    out = tmp_path / "bench.json"
    out.write_text(json.dumps(bench.report(results, CPU, amp=False, quick=True)))
    data = json.loads(out.read_text())
    assert "CPU" in data["device"] and len(data["results"]) == 7


def test_extraction_and_latency_measurements_run():
    extraction = bench.bench_extraction(CPU, "efficientnet_lite0", count=4, repeats=1, num_workers=0, batch_size=2,
                                        image_size=64)
    assert extraction.ours > 0 and extraction.baseline > 0 and "batch 2, 0 workers" in extraction.setting
    config = ModelConfig(embed_dim=16, hidden_dim=16, attention_dim=8, image_size=64, max_len=3)
    (latency, *_) = bench.bench_latency(CPU, repeats=1, pretrained=True, config=config, warmup=1,
                                         bundled=False)
    assert latency.unit == "ms" and latency.ours > 0 and latency.speedup == pytest.approx(latency.baseline / latency.ours)


def test_photo_latency_reports_its_parts():
    """The bundled photo captioner's latency row, one row per part of the same call (no baseline), then the
    same call on the int8 path against the fast one (issue 25's 40 ms row)."""
    whole, *parts, int8 = bench.bench_photo_latency(CPU, repeats=1, warmup=0)
    assert whole.baseline > 0 and "bundled flickr8k" in whole.setting
    assert [p.setting for p in parts] == [f"  part of it: {what}" for what in bench.PHOTO_PARTS.values()]
    assert all(p.ours > 0 and p.baseline is None for p in parts)
    assert "int8" in int8.setting and "40 ms" in int8.setting and int8.ours > 0 and int8.baseline > 0


def test_phone_photo_row_compares_the_reduced_decode_with_a_full_one():
    (row,) = bench.bench_phone_photo(CPU, repeats=1, size=(1600, 1200))
    assert row.ours > 0 and row.baseline > 0 and "1600x1200 JPEG" in row.setting


def test_args_parser_lists_choices():
    args = bench.get_args_parser().parse_args(["--device", "cpu", "--quick", "--only", "train", "beam"])
    assert args.quick and args.only == ["train", "beam"] and args.amp == "auto"
    with pytest.raises(SystemExit):
        bench.get_args_parser().parse_args(["--device", "tpu"])


def test_cached_context_readers_follow_weight_updates():
    dec = toy_decoder().eval()
    features = bench.synthetic_batch(bench.TOY, 1, CPU)[0]

    def expected():
        readers = torch.cat([dec.context_gates.weight, dec.output.context_proj.weight]).t()
        return features @ readers

    with torch.no_grad():
        assert torch.allclose(dec.memory(features).context_terms, expected(), atol=1e-5)
        dec.context_gates.weight.mul_(2)  # an optimizer step or load_state_dict: the cached copy must follow
        assert torch.allclose(dec.memory(features).context_terms, expected(), atol=1e-5)
        dec.double()  # a dtype move drops the copy
        features = features.double()
        assert dec.memory(features).context_terms.dtype == torch.float64


def test_cached_word_gates_equal_the_embedding_product_and_follow_updates():
    """Decoding reads W E y + b from a per-word table: the same numbers as the product, after any weight change."""
    dec = toy_decoder().eval()
    features = bench.synthetic_batch(bench.TOY, 1, CPU)[0]
    tokens = torch.tensor([bench.START, 5, 7, 5])
    with torch.no_grad():
        state = tuple(s.repeat_interleave(4, 0) for s in dec.init_state(features))
        memory = dec.memory(features)
        for change in (None, dec.embedding.weight, dec.embed_gates.weight, dec.embed_gates.bias):
            if change is not None:
                change.mul_(1.5)
            assert torch.allclose(dec.word_gate_table()[tokens], dec.embed_gates(dec.embedding(tokens)), atol=1e-6)
            fast = dec.step(tokens, state, memory)[0]
            with torch.enable_grad():  # the product path (training), same step
                slow = dec.step(tokens, state, memory)[0]
            assert torch.allclose(fast, slow, atol=1e-5)


def test_decoding_after_fused_optimizer_steps_uses_the_new_weights():
    """Fused Adam updates weights without bumping their version counters: the cached transposes and
    context readers must not survive the train()/eval() switch around an epoch (they once did)."""
    import copy

    dec = toy_decoder()
    features, captions, _ = bench.synthetic_batch(bench.TOY, 2, CPU)

    def decode(model):
        model.eval()
        with torch.no_grad():
            memory, state = model.memory(features[:1]), model.init_state(features[:1])
            return model.step(torch.tensor([bench.START]), state, memory)[0]

    decode(dec)  # fills the caches
    optimizer = torch.optim.Adam(dec.parameters(), lr=0.05, fused=True)
    dec.train()
    dec(features, captions).loss.backward()
    optimizer.step()
    assert torch.allclose(decode(dec), decode(copy.deepcopy(dec)), atol=1e-6)
    # and without a train/eval switch between (SCST samples in eval mode between its steps): no manual drop
    dec.eval()
    before = decode(dec)
    with torch.enable_grad():
        dec(features, captions).loss.backward()
    optimizer.step()
    after = decode(dec)
    assert not torch.allclose(before, after) and torch.allclose(after, decode(copy.deepcopy(dec)), atol=1e-6)


def test_repeated_eval_keeps_the_decoding_caches():
    """`Captioner.caption` calls eval() on every request: only a real train/eval switch drops the copies."""
    dec = toy_decoder().eval()
    features = bench.synthetic_batch(bench.TOY, 1, CPU)[0]
    with torch.no_grad():
        first = dec.memory(features).context_terms
        readers = dec.__dict__["_context_readers"].value
        dec.eval()
        dec.memory(features)
        assert dec.__dict__["_context_readers"].value is readers
        dec.train()
        assert "_context_readers" not in dec.__dict__
        assert torch.allclose(dec.eval().memory(features).context_terms, first)


def test_component_measurements_run():
    adam, encoder, tanh, sigmoid_form = bench.bench_components(bench.TOY, CPU, repeats=1, image_size=64)
    assert adam.unit == encoder.unit == tanh.unit == "ms" and adam.ours > 0 and encoder.baseline > 0 and tanh.ours > 0
    assert sigmoid_form.ours > 0 and sigmoid_form.baseline > 0 and "torch.tanh" in sigmoid_form.setting
    assert ("2 sigmoid(2x) - 1" in tanh.setting) == sigmoid_tanh_is_faster()
    assert "fused" in adam.setting and "folded" in encoder.setting


def test_the_hostile_inputs_bench_runs_cases_in_their_own_processes(capsys, tmp_path):
    """bench/hostile.py: the table docs/reliability.md quotes, one case per process, its line, time and peak."""
    from bench import hostile

    assert len(hostile.CASES) >= 40
    code = hostile.main(["--only", "6 ", "minor: --device", "--json", str(tmp_path / "out.json")])
    table = capsys.readouterr().out
    assert code == 0, table
    assert "error: --beam-size must be between 1 and 64, got 10000" in table
    assert "error: --device meta: not a device" in table
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [r["name"] for r in rows] == ["6 --beam-size 10000", "minor: --device meta"]
    assert all(0 < r["seconds"] < 5 and 100 < r["peak_mib"] < 2048 and not r["left_in_run"] for r in rows)


def test_guidance_sweep_counts_each_label_named_or_the_other():
    from types import SimpleNamespace

    from bench.guidance_sweep import naming_counts

    said = [SimpleNamespace(tokens=t.split()) for t in ("a kitten sleeps", "a dog runs", "a man sits", "two dogs")]
    assert naming_counts(said, ["cat", "cat", "cat", "dog"]) == {"cat": [3, 1, 1], "dog": [1, 1, 0]}


def test_encoder_options_measure_the_shipped_encoder_and_a_smaller_input():
    """bench/encoder_options.py's torch rows on two example photos: the shipped encoder is its own reference, a
    smaller input gives a smaller grid that the same decoder still captions (ONNX Runtime rows need it installed)."""
    from types import SimpleNamespace

    from bench.encoder_options import measure, torch_option
    from captioning import load_captioner

    model = load_captioner("flickr8k")
    photos = [bench.PHOTO, bench.PHOTO.with_name("cat-chelsea.jpg")]
    val = [SimpleNamespace(path=p, image_id=p.stem, captions=["a photo of something"]) for p in photos]
    options = [torch_option(model), torch_option(model, 224)]
    with torch.inference_mode():
        shipped, smaller = measure(options, val, rounds=1)
    assert shipped["grid_error"] == 0 and shipped["same_caption"] == shipped["same_top_tag"] == 1
    assert smaller["grid_error"] is None and "7x7 grid" in smaller["encoder"]
    assert all(row["encode_ms"] > 0 and row["decode_ms"] > 0 for row in (shipped, smaller))
