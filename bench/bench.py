"""Speed of the real training and decoding paths against the tutorial-style baseline (bench/baseline.py).

    python bench/bench.py [--device cpu|cuda] [--json OUT] [--quick]

One process, COCO sizes (vocabulary 9,494, 14x14x2048 grid, 512-d embeddings/attention/LSTM,
COCO-like caption lengths), random weights and synthetic inputs. Every figure is the median of
several timed repeats after warm-up; the two implementations run interleaved, round by round, so
a noisy shared machine slows both alike and the ratio stays meaningful."""

from __future__ import annotations

import argparse
import copy
import functools
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from captioning.config import ModelConfig
from captioning.decoder import ShowAttendTellDecoder
from captioning.encoders import WeightsUnavailableError, create_encoder
from captioning.images import DECODE_AT_LEAST, open_image
from captioning.model import BUNDLED_DIR, Captioner, load_captioner
from captioning.ops.attention_scores import tanh_, tanh_by_sigmoid_, uses_sigmoid_tanh
from captioning.search import beam_search
from captioning.vocab import Vocabulary

if __package__:
    from .baseline import TutorialDecoder, tutorial_beam_search, tutorial_train_step
else:  # run as a script: `python bench/bench.py`
    from baseline import TutorialDecoder, tutorial_beam_search, tutorial_train_step

START, END, PAD = Vocabulary.start_id, Vocabulary.end_id, Vocabulary.pad_id


@dataclass(frozen=True)
class Sizes:
    vocab: int = 9494
    positions: int = 196          # 14 x 14 grid
    feature_dim: int = 2048       # ResNet-101 conv5
    embed_dim: int = 512
    hidden_dim: int = 512
    attention_dim: int = 512
    mean_words: float = 10.5      # COCO captions: ~10.5 words, sd ~2.4, the tutorial drops > 50
    sd_words: float = 2.4
    max_words: int = 50
    decode_steps: int = 20        # beam max_len; random weights rarely emit <end> before it


COCO = Sizes()
# The bundled flickr8k captioner: 2,540 words, Lite0 at 320 px (10x10x1280), 512-d; Flickr8k captions ~11 words.
FLICKR8K = Sizes(vocab=2540, positions=100, feature_dim=1280, mean_words=10.9, sd_words=3.8, max_words=20)
FLICKR8K_HARD = replace(FLICKR8K, positions=49)  # flickr8k-hard: Lite0 at 224 px, a 7x7 grid
TOY = Sizes(vocab=40, positions=9, feature_dim=24, embed_dim=16, hidden_dim=16, attention_dim=8, decode_steps=4)


@dataclass
class Runs:
    """One case's timed repeats: wall-clock and process CPU seconds per call, peak memory."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    failed: str | None = None  # "OOM" when the case ran out of memory


@dataclass
class Result:
    task: str
    setting: str
    unit: str                      # "captions/s", "images/s" or "ms"
    ours: float | None             # median over repeats (throughput, or latency in ms)
    baseline: float | None
    speedup: float | None          # baseline time / our time, from wall-clock medians
    cpu_speedup: float | None      # the same from process CPU time: robust to other processes on a shared machine
    ours_best: float | None = None  # best repeat (an idle machine's figure)
    ours_runs: list[float] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)
    ours_cpu_ms: float | None = None        # median process CPU time per caption/image, in ms
    baseline_cpu_ms: float | None = None
    ours_peak_mib: float | None = None      # CUDA only: peak allocated memory per 1,000 captions/images
    baseline_peak_mib: float | None = None
    note: str = ""


def make_result(task: str, setting: str, unit: str, items: int, ours: Runs, base: Runs | None = None,
                base_items: int | None = None, note: str = "") -> Result:
    """Figures for `items` captions/images per call (`base_items` for the baseline's calls, if other);
    speed-ups compare medians of time per item."""
    base_items = base_items or items

    def figures(runs: Runs, n: int) -> list[float]:
        return [s * 1000 / n if unit == "ms" else n / s for s in runs.wall]

    def per_item(runs: Runs | None, n: int, cpu: bool = False) -> float | None:
        if runs is None or runs.failed or not runs.wall:
            return None
        return statistics.median(runs.cpu if cpu else runs.wall) / n

    def ratio(cpu: bool) -> float | None:
        b, o = per_item(base, base_items, cpu), per_item(ours, items, cpu)
        return b / o if b and o else None

    o = figures(ours, items)
    b = figures(base, base_items) if base is not None and not base.failed else []
    best = (min(o) if unit == "ms" else max(o)) if o else None
    if base is not None and base.failed:
        note = f"{note}; baseline {base.failed}".strip("; ")

    def peak(runs: Runs | None, n: int) -> float | None:  # per 1,000 captions/images
        return runs.peak_mib * 1000 / n if runs is not None and runs.peak_mib is not None else None

    def cpu_ms(runs: Runs | None, n: int) -> float | None:
        t = per_item(runs, n, cpu=True)
        return t * 1000 if t is not None else None

    return Result(task, setting, unit, statistics.median(o) if o else None, statistics.median(b) if b else None,
                  ratio(False), ratio(True), best, o, b, cpu_ms(ours, items), cpu_ms(base, base_items),
                  peak(ours, items), peak(base, base_items), note)


# ---- measuring ---------------------------------------------------------------------------------
def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float, float | None]:
    """Wall and process CPU seconds for one call, and (CUDA) its peak allocated MiB above the start.

    No CPU memory figure: after warm-up the allocator serves every call from memory it already
    holds, so RSS growth reads zero and says nothing."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    cpu, start = time.process_time(), time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if device.type == "cuda":
        return wall, cpu, (torch.cuda.max_memory_allocated() - base) / 2**20
    return wall, cpu, None


def interleaved(cases: dict[str, Callable[[], object]], device: torch.device, repeats: int,
                warmup: int = 1) -> dict[str, Runs]:
    """Run the cases round-robin, starting one later each round, so a busy spell slows all of them alike."""
    names = list(cases)
    runs = {n: Runs() for n in names}
    for r in range(warmup + repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if runs[name].failed:
                continue
            try:
                wall, cpu, peak = timed(cases[name], device)
            except torch.OutOfMemoryError:  # e.g. the baseline's (B, T, V) logits at a large batch
                runs[name].failed = "OOM"
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if r >= warmup:
                runs[name].wall.append(wall)
                runs[name].cpu.append(cpu)
                if peak is not None:
                    runs[name].peak_mib = max(runs[name].peak_mib or 0.0, peak)
    return runs


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)


def _progress(result: Result) -> Result:
    print(f"[bench] {result.task}: {result.setting}: ours {_fmt(result.ours, result.unit)}, "
          f"baseline {_fmt(result.baseline, result.unit)}", file=sys.stderr, flush=True)
    return result


# ---- synthetic data and models -----------------------------------------------------------------
def synthetic_batch(sizes: Sizes, batch: int, device: torch.device, seed: int = 0):
    """Features (B, P, D), captions (B, max_words + 2) padded like the tutorial's, lengths (B,)."""
    g = torch.Generator().manual_seed(seed)
    words = (torch.randn(batch, generator=g) * sizes.sd_words + sizes.mean_words).round().long()
    words = words.clamp(3, sizes.max_words)
    captions = torch.full((batch, sizes.max_words + 2), PAD, dtype=torch.long)
    for i, n in enumerate(words.tolist()):
        captions[i, 0], captions[i, n + 1] = START, END
        captions[i, 1:n + 1] = torch.randint(4, sizes.vocab, (n,), generator=g)
    features = torch.randn(batch, sizes.positions, sizes.feature_dim, generator=g).relu_()
    return features.to(device), captions.to(device), (words + 2).to(device)


def our_decoder(sizes: Sizes, device: torch.device, compile: bool = False, **config) -> ShowAttendTellDecoder:
    torch.manual_seed(0)
    c = ModelConfig(embed_dim=sizes.embed_dim, hidden_dim=sizes.hidden_dim, attention_dim=sizes.attention_dim,
                    **config)
    decoder = ShowAttendTellDecoder(c, sizes.vocab, sizes.feature_dim).to(device)
    if compile:
        decoder.attention.compile_kernel()
    return decoder


def tutorial_decoder(sizes: Sizes, device: torch.device, vocab: int | None = None,
                     feature_dim: int | None = None) -> TutorialDecoder:
    torch.manual_seed(0)
    return TutorialDecoder(vocab or sizes.vocab, feature_dim or sizes.feature_dim, sizes.embed_dim,
                           sizes.hidden_dim, sizes.attention_dim).to(device)


# The tutorial's model (soft attention, scalar gate, shallow output), then our paper defaults: (config, captions per
# image). train.py batches 5 captions of each image by default (--captions-per-image), so each grid is projected and
# read once per step for all of them; the second row is the same model fed one grid per caption, as the tutorial is.
TRAIN_CONFIGS = {
    "soft, shallow output (= baseline model)": (dict(deep_output=False), 5),
    "soft, shallow output, one grid per caption": (dict(deep_output=False), 1),
    "soft, deep output (our default)": (dict(), 5),
    "hard, REINFORCE 2 samples": (dict(attention="hard"), 5),
}


def our_train_step(decoder: ShowAttendTellDecoder, features, captions, amp: bool) -> Callable[[], None]:
    """One real training step: forward (teacher-forced loss), backward, clipping, Adam.

    features (I, P, D), captions (I * k, T): k captions per image, as train.py batches them."""
    device = features.device
    decoder.train()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-4, fused=True)  # fused: also 4.3-4.5x faster on CPU

    def run() -> None:
        with _autocast(device, amp):
            out = decoder(features, captions)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 5.0)
        optimizer.step()

    return run


def baseline_train_step(model: TutorialDecoder, features, captions, lengths) -> Callable[[], None]:
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return lambda: tutorial_train_step(model, optimizer, features, captions, lengths)


def bench_training(sizes: Sizes, device: torch.device, batches: list[int], repeats: int, amp: bool,
                   configs: dict[str, tuple[dict, int]] = TRAIN_CONFIGS, compile: bool = False) -> list[Result]:
    """Captions/s at each batch size (captions per batch). Every case trains on the same captions of the
    same images: ours as train.py feeds them (one grid per image), the baseline one grid per caption."""
    results = []
    for batch in batches:
        features, captions, lengths = synthetic_batch(sizes, batch, device)
        per_caption = features[::5].repeat_interleave(5, 0)  # every 5 consecutive captions describe one image
        cases = {name: our_train_step(our_decoder(sizes, device, compile, **cfg), per_caption[::k].contiguous(),
                                      captions, amp)
                 for name, (cfg, k) in configs.items()}
        cases["baseline"] = baseline_train_step(tutorial_decoder(sizes, device), per_caption, captions, lengths)
        runs = interleaved(cases, device, repeats, warmup=2 if compile else 1)
        base = runs.pop("baseline")
        for name, ours in runs.items():
            soft = name.startswith("soft")  # the baseline is the tutorial's soft-attention model
            k = configs[name][1]
            label = f"{name}, batch {batch} ({batch // k} images x {k} captions)" if k > 1 else f"{name}, batch {batch}"
            results.append(_progress(make_result("train captions/s", label, "captions/s", batch,
                                                 ours, base if soft else None)))
    return results


# ---- beam search -------------------------------------------------------------------------------
def bench_beam(sizes: Sizes, device: torch.device, images: int, baseline_images: int, repeats: int,
               amp: bool, beam_size: int = 3, compile: bool = False) -> Result:
    features, _, _ = synthetic_batch(sizes, images, device, seed=1)
    ours = our_decoder(sizes, device, compile).eval()
    base = tutorial_decoder(sizes, device).eval()

    @torch.inference_mode()
    def run_ours() -> None:
        with _autocast(device, amp):
            memory, state = tuple(ours.memory(features)), ours.init_state(features)
            beam_search(ours.step, state, memory, start_id=START, end_id=END, pad_id=PAD,
                        max_len=sizes.decode_steps, beam_size=beam_size)

    def run_base() -> None:
        for i in range(baseline_images):
            tutorial_beam_search(base, features[i:i + 1], start_id=START, end_id=END, beam_size=beam_size,
                                 max_len=sizes.decode_steps)

    runs = interleaved({"ours": run_ours, "baseline": run_base}, device, repeats, warmup=2 if compile else 1)
    return _progress(make_result("beam search images/s", f"beam {beam_size}, {sizes.decode_steps} steps, batch "
                                 f"{images} (baseline one image at a time)", "images/s", images, runs["ours"],
                                 runs["baseline"], base_items=baseline_images))


# ---- feature extraction ------------------------------------------------------------------------
def write_jpegs(folder: Path, count: int, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[Path]:
    """COCO-sized JPEGs with smooth structure plus noise (~COCO file sizes)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (size[1] // 32, size[0] // 32, 3), dtype=np.uint8))
        pixels = np.asarray(coarse.resize(size, Image.BICUBIC), dtype=np.int16)
        pixels = (pixels + rng.normal(0, 10, pixels.shape)).clip(0, 255).astype(np.uint8)
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def bench_extraction(device: torch.device, encoder_name: str, count: int, repeats: int, num_workers: int,
                     batch_size: int, image_size: int | None = None) -> Result:
    """FeatureCache.build (its own device choices: bf16 + channels_last on a GPU, one image per encoder call
    on a CPU, JPEG decoding in loader workers) against a one-image-at-a-time loop with the same weights."""
    from captioning.data.cache import FeatureCache
    from captioning.data.records import ImageRecord

    try:  # trained weights: random ones drift into denormal floats, which crawl on a CPU
        base_encoder = create_encoder(encoder_name, pretrained=True, image_size=image_size)
    except (WeightsUnavailableError, RuntimeError):
        base_encoder = create_encoder(encoder_name, pretrained=False, image_size=image_size)
    base_encoder = base_encoder.to(device).eval()
    encoder = copy.deepcopy(base_encoder)
    base_encoder.fold = None  # a plain loop runs the trunk as built, BatchNorm layers and all
    with tempfile.TemporaryDirectory(prefix="showtell-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        paths = write_jpegs(tmp / "images", count)
        records = [ImageRecord(i, p, "train", ["an image"]) for i, p in enumerate(paths)]
        out = np.empty((count, encoder.num_positions, encoder.channels), dtype=np.float16)
        builds = iter(range(10**6))

        def run_ours() -> None:
            FeatureCache.build(encoder, records, tmp / f"cache{next(builds)}", batch_size=batch_size,
                               num_workers=num_workers, device=device, progress=False)

        @torch.no_grad()
        def run_base() -> None:  # one image at a time in the main process, as a plain loop would
            for i, path in enumerate(paths):
                pixels = base_encoder.preprocess([Image.open(path).convert("RGB")]).to(device)
                out[i] = base_encoder(pixels).cpu().numpy()

        runs = interleaved({"ours": run_ours, "baseline": run_base}, device, repeats)
    return _progress(make_result(
        "JPEG -> feature cache images/s", f"{encoder_name} {encoder.preprocess.image_size}px, {count} 640x480 "
        f"JPEGs, FeatureCache.build batch {batch_size}, {num_workers} workers (baseline: one by one)", "images/s",
        count, runs["ours"], runs["baseline"]))


# ---- one-image latency -------------------------------------------------------------------------
SHAPES_WORDS = ("a an the red green blue yellow purple orange circle circles square squares triangle triangles "
                "above below left right of to next each other two three small large is there").split()


def tutorial_pipeline(model: Captioner, image: Image.Image, steps: int, device: torch.device) -> Callable[[], None]:
    """A tutorial-style caption of `image` at `model`'s sizes: the plain encoder trunk (BatchNorm layers and
    all) and the tutorial's one-image beam 3 with random weights, <end> disabled, for exactly `steps` steps."""
    c = model.config
    base = tutorial_decoder(Sizes(embed_dim=c.embed_dim, hidden_dim=c.hidden_dim, attention_dim=c.attention_dim),
                            device, len(model.vocab), model.encoder.channels).eval()
    with torch.no_grad():
        base.fc.bias[END] = float("-inf")
    encoder = copy.deepcopy(model.encoder)
    encoder.fold = None

    @torch.no_grad()
    def run() -> None:
        features = encoder(encoder.preprocess([image]).to(device))
        tutorial_beam_search(base, features, start_id=START, end_id=END, beam_size=3, max_len=steps)
    return run


def bench_latency(device: torch.device, repeats: int, pretrained: bool = True,
                  config: ModelConfig | None = None, warmup: int = 3, bundled: bool = True) -> list[Result]:
    """Captioner.caption on one 640x480 PIL image (encoder + beam 3) against encoder + tutorial beam search.

    Random weights with <end> disabled, so both decode the full max_len steps (the worst case)."""
    vocab = Vocabulary.build([SHAPES_WORDS])
    config = config or ModelConfig()
    torch.manual_seed(0)
    ours = Captioner(config, vocab, pretrained_encoder=pretrained).to(device).eval()
    with torch.no_grad():
        ours.decoder.output.logits.bias[END] = float("-inf")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    cases = {"ours": lambda: ours.caption([image], beam_size=3),
             "baseline": tutorial_pipeline(ours, image, config.max_len, device)}
    if bundled and (BUNDLED_DIR / "shapes-soft").exists():
        trained = load_captioner(BUNDLED_DIR / "shapes-soft", device)
        cases["bundled"] = lambda: trained.caption([image], beam_size=3)
    runs = interleaved(cases, device, repeats, warmup=warmup)
    setting = f"{config.encoder} {ours.encoder.preprocess.image_size}px + beam 3, {config.max_len} steps"
    results = [_progress(make_result("caption latency ms", f"1 image, {setting}, random weights", "ms", 1,
                                     runs["ours"], runs["baseline"]))]
    if "bundled" in runs:
        results.append(_progress(make_result("caption latency ms", "1 image, bundled shapes-soft + beam 3", "ms", 1,
                                             runs["bundled"])))
    return results


PHOTO = Path(__file__).resolve().parent.parent / "app" / "examples" / "astronaut-eileen-collins.jpg"


@functools.cache
def bundled_photo_captioner(name: str, device: torch.device) -> Captioner | None:
    """The bundled model both photo benches time, loaded once (None without it or the example photo)."""
    if not (BUNDLED_DIR / name).exists() or not PHOTO.exists():
        return None
    return load_captioner(name, device)


def bench_photo_latency(device: torch.device, repeats: int, name: str = "flickr8k", warmup: int = 3) -> list[Result]:
    """The bundled photo captioner on one 640x480 photo as the app runs it (encoder + beam 3) against a
    tutorial-style pipeline of the same sizes: the plain encoder trunk and the tutorial's beam search,
    decoding as many steps as our caption took (random weights with <end> disabled)."""
    trained = bundled_photo_captioner(name, device)
    if trained is None:
        return []
    photo = Image.open(PHOTO).convert("RGB").resize((640, 480))
    steps = len(trained.caption([photo], beam_size=3)[0].tokens) + 1
    cases = {"ours": lambda: trained.caption([photo], beam_size=3),
             "baseline": tutorial_pipeline(trained, photo, steps, device), **photo_latency_parts(trained, photo)}
    if device.type == "cpu":  # issue 25's 40 ms row: the same call with the int8 inference path
        int8 = load_captioner(name, device, inference="int8")
        cases["int8"] = lambda: int8.caption([photo], beam_size=3)
    runs = interleaved(cases, device, repeats, warmup=warmup)
    size, grid = trained.encoder.preprocess.image_size, trained.encoder.grid_size
    results = [_progress(make_result("caption latency ms", f"1 photo 640x480, bundled {name} ({size} px, {grid}x{grid} "
                                     f"grid) + beam 3, {steps} steps", "ms", 1, runs["ours"], runs["baseline"]))]
    for part, what in PHOTO_PARTS.items():
        results.append(_progress(make_result("caption latency ms", f"  part of it: {what}", "ms", 1, runs[part])))
    if "int8" in runs:
        results.append(_progress(make_result("caption latency ms", "  the same photo, int8 step products (inference="
                                             "\"int8\"; baseline: fast, above): target 40 ms", "ms", 1, runs["int8"],
                                             runs["ours"])))
    return results


def bench_phone_photo(device: torch.device, repeats: int, name: str = "flickr8k", size: tuple[int, int] = (4032, 3024)
                      ) -> list[Result]:
    """A phone photo's JPEG bytes (12 megapixels) to its caption, as the app and `captioning caption` take it
    (`open_image(..., at_least=DECODE_AT_LEAST)`: a reduced-scale JPEG decode, then the two-step resize) against
    a full decode and a plain resize to the encoder's size."""
    trained = bundled_photo_captioner(name, device)
    if trained is None:
        return []
    buffer = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize(size, Image.BICUBIC).save(buffer, "JPEG", quality=90)
    data, side = buffer.getvalue(), trained.encoder.preprocess.image_size

    def plain() -> object:
        return trained.caption([open_image(data).resize((side, side), Image.BILINEAR)], beam_size=3)

    cases = {"ours": lambda: trained.caption([open_image(data, at_least=DECODE_AT_LEAST)], beam_size=3),
             "baseline": plain}
    runs = interleaved(cases, device, repeats, warmup=2)
    return [_progress(make_result("caption latency ms", f"{size[0]}x{size[1]} JPEG bytes ({len(data) / 2**20:.1f} MiB) "
                                  f"to caption, bundled {name} + beam 3 (baseline: full decode, plain resize)", "ms",
                                  1, runs["ours"], runs["baseline"]))]


GUIDED_PHOTOS = ("astronaut-eileen-collins.jpg", "cat-chelsea.jpg")  # no tag to require; a cat to require


def bench_guidance(device: torch.device, repeats: int, name: str = "flickr8k") -> list[Result]:
    """What tags and guided decoding add to one 640x480 photo's caption (the default, guided) against the
    same call with guide=False: on a photo where no tag is confident enough to require, and on the cat,
    whose required word doubles the beams (constrained beam search)."""
    trained = bundled_photo_captioner(name, device)
    if trained is None:
        return []
    results = []
    for file in GUIDED_PHOTOS:
        photo = Image.open(PHOTO.with_name(file)).convert("RGB").resize((640, 480))
        guided = trained.caption([photo], beam_size=3)[0]
        cases = {"ours": lambda photo=photo: trained.caption([photo], beam_size=3),
                 "baseline": lambda photo=photo: trained.caption([photo], beam_size=3, guide=False)}
        runs = interleaved(cases, device, repeats, warmup=3)
        required = ", ".join(guided.guided_by) or "nothing"
        results.append(_progress(make_result("caption latency ms", f"1 photo 640x480 ({file}), bundled {name} + beam 3, "
                                             f"tags + guidance (requires: {required}; baseline: guide=False)", "ms", 1,
                                             runs["ours"], runs["baseline"])))
    return results


PHOTO_PARTS = {"preprocess": "preprocessing (resize to the encoder's size, normalise)",
               "encoder": "encoder (BatchNorm-folded trunk)",
               "memory": "decoder.memory + init_state (grid projections, context terms)",
               "decode": "decoding from the grid: memory + beam 3 (the steps are the difference)"}


def photo_latency_parts(model: Captioner, photo: Image.Image) -> dict[str, Callable[[], object]]:
    """What `Captioner.caption` does to one photo, piece by piece, on inputs computed once here."""
    encoder, decoder = model.encoder, model.decoder
    with torch.inference_mode():
        pixels = encoder.preprocess([photo])
        features = encoder(pixels)

    @torch.inference_mode()
    def memory() -> None:
        decoder.memory(features), decoder.init_state(features)

    return {"preprocess": lambda: encoder.preprocess([photo]),
            "encoder": torch.inference_mode()(lambda: encoder(pixels)),
            "memory": memory,
            "decode": lambda: model.caption_features(features, beam_size=3)}


# ---- components ------------------------------------------------------------------------------
def bench_components(sizes: Sizes, device: torch.device, repeats: int, image_size: int | None = None) -> list[Result]:
    """Three parts measured alone: one Adam step over the decoder's parameters (ours fused, the tutorial's
    default), one image through the frozen default encoder (ours BatchNorm-folded, the plain trunk), and
    the tanh of one beam-3 attention step over a 10x10 grid (ours the formula `tanh_` picked on this machine,
    and the sigmoid form itself, against torch.tanh)."""
    decoder = our_decoder(sizes, device)
    params = list(decoder.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    fused = torch.optim.Adam(params, lr=1e-4, fused=True)
    plain = torch.optim.Adam(copy.deepcopy(params), lr=1e-4)
    for p, q in zip(plain.param_groups[0]["params"], params, strict=True):
        p.grad = q.grad.clone()
    runs = interleaved({"ours": fused.step, "baseline": plain.step}, device, repeats)
    results = [_progress(make_result("Adam step ms", f"decoder's {sum(p.numel() for p in params):,} parameters "
                                     "(ours fused, baseline default)", "ms", 1, runs["ours"], runs["baseline"]))]
    try:
        encoder = create_encoder("efficientnet_lite0", pretrained=True, image_size=image_size)
    except (WeightsUnavailableError, RuntimeError):
        encoder = create_encoder("efficientnet_lite0", pretrained=False, image_size=image_size)
    encoder = encoder.to(device).eval()
    unfolded = copy.deepcopy(encoder)
    unfolded.fold = None
    size = encoder.preprocess.image_size
    pixels = torch.randn(1, 3, size, size, device=device)
    runs = interleaved({"ours": torch.inference_mode()(lambda: encoder(pixels)),
                        "baseline": torch.inference_mode()(lambda: unfolded(pixels))}, device, repeats * 6, warmup=3)
    results.append(_progress(make_result("encoder ms", f"1 image, efficientnet_lite0 {size}px (ours BatchNorm "
                                         "folded, baseline the plain trunk)", "ms", 1, runs["ours"], runs["baseline"])))
    energies = torch.randn(4, 100, sizes.attention_dim, device=device)  # 3 beams + the greedy lane, 100 cells
    scratch = torch.empty_like(energies)
    runs = interleaved({"ours": lambda: tanh_(scratch.copy_(energies)),
                        "baseline": lambda: scratch.copy_(energies).tanh_(),
                        "sigmoid form": lambda: tanh_by_sigmoid_(scratch.copy_(energies))}, device, repeats * 20, warmup=5)
    picked = "2 sigmoid(2x) - 1" if uses_sigmoid_tanh(device) else "torch.tanh"
    results.append(_progress(make_result("attention tanh ms", f"(4, 100, {sizes.attention_dim}) values, one beam "
                                         f"step (ours: the faster formula here, {picked}; baseline torch.tanh)", "ms",
                                         1, runs["ours"], runs["baseline"])))
    results.append(_progress(make_result("attention tanh ms", "  the same as 2 sigmoid(2x) - 1, against torch.tanh",
                                         "ms", 1, runs["sigmoid form"], runs["baseline"])))
    return results


# ---- report ------------------------------------------------------------------------------------
def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:.1f}" if x >= 10 or unit == "ms" else f"{x:.2f}"


def table(results: list[Result]) -> str:
    lines = ["| task | setting | ours | baseline | speed-up (wall) | speed-up (CPU time) | "
             "peak MiB per 1,000 ours / baseline |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        ours = _fmt(r.ours, r.unit) + (f" (best {_fmt(r.ours_best, r.unit)})" if r.unit == "ms" else "")
        base = r.note or _fmt(r.baseline, r.unit)
        speed = "-" if r.speedup is None else f"{r.speedup:.1f}x"
        cpu = "-" if r.cpu_speedup is None else f"{r.cpu_speedup:.1f}x"
        peak = f"{_fmt(r.ours_peak_mib)} / {_fmt(r.baseline_peak_mib)}" if r.ours_peak_mib is not None else "-"
        lines.append(f"| {r.task} | {r.setting} | {ours} | {base} | {speed} | {cpu} | {peak} |")
    return "\n".join(lines)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def report(results: list[Result], device: torch.device, **settings) -> dict:
    """What --json writes: the figures (medians, every repeat, ratios) plus the device and settings."""
    return {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
            "threads": torch.get_num_threads(), **settings, "sizes": asdict(COCO),
            "results": [asdict(r) for r in results]}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", type=Path, help="also write the figures (and the device name) to this JSON file")
    p.add_argument("--quick", action="store_true", help="fewer batch sizes, images and repeats (CPU: < 2 min)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="bf16 autocast for our paths (auto: on for cuda, off for cpu)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile our per-step attention kernel (decoder.attention.compile_kernel)")
    p.add_argument("--repeats", type=int, help="timed repeats per figure (default: 3 quick, 5 full)")
    p.add_argument("--only", nargs="+", choices=["train", "beam", "extract", "latency", "flickr8k", "components"],
                   default=["train", "beam", "extract", "latency", "flickr8k", "components"],
                   help="flickr8k: training on the bundled photo captioner's real sizes, and its photo latency")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    return p


def main(args: argparse.Namespace) -> list[Result]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = device.type == "cuda" if args.amp == "auto" else args.amp == "on"
    gpu, quick = device.type == "cuda", args.quick
    repeats = args.repeats or (3 if quick else 5)
    results: list[Result] = []
    if "train" in args.only:
        batches = ([320] if quick else [320, 1280]) if gpu else ([40] if quick else [40, 160])  # multiples of 5
        results += bench_training(COCO, device, batches, repeats, amp, compile=args.compile)
    if "beam" in args.only:
        images, base_images = (1000, 50) if gpu else ((16, 3) if quick else (64, 8))
        results.append(bench_beam(COCO, device, images, base_images, repeats, amp, compile=args.compile))
    if "extract" in args.only:
        # train.py's defaults (cache batch 64, 2 workers), then what suits the device: on the 2-core CPU one
        # decoding worker beside the encoding process, on a GPU more workers and larger batches.
        count = (256 if gpu else 48) if quick else (1000 if gpu else 200)
        for name in (["efficientnet_lite0", "resnet101"] if gpu else ["efficientnet_lite0"]):
            results.append(bench_extraction(device, name, count, max(2, repeats - 1), num_workers=2, batch_size=64))
            results.append(bench_extraction(device, name, count, max(2, repeats - 1), num_workers=12 if gpu else 1,
                                            batch_size=256 if gpu else 64))
    if "latency" in args.only:
        results += bench_latency(device, 10 if quick else 20)
    if "flickr8k" in args.only:
        batch = 500 if gpu else 100  # configs/flickr8k_soft.yaml: 20 images x 5 captions
        results += bench_training(FLICKR8K, device, [batch], repeats, amp,
                                  configs={"soft, deep output (flickr8k recipe)": (dict(), 5)}, compile=args.compile)
        results += bench_training(FLICKR8K_HARD, device, [batch], repeats, amp, compile=args.compile,
                                  configs={"hard, 7x7 grid, 2 samples (flickr8k-hard recipe)": (dict(attention="hard"), 5)})
        results += bench_photo_latency(device, 10 if quick else 20)
        results += bench_phone_photo(device, 5 if quick else 10)
        results += bench_guidance(device, 10 if quick else 20)
    if "components" in args.only:
        results += bench_components(COCO, device, repeats)
    print(f"device: {device_name(device)}; torch {torch.__version__}; amp {'bf16' if amp else 'off'}; "
          f"compile {'on' if args.compile else 'off'}")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(report(results, device, amp=amp, compile=args.compile, quick=quick), indent=2))
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
