"""Ways to run the default captioner's encoder faster, measured on real photos, one thread (issue 25, item 4):
the shipped trunk (BatchNorm folded), the same trunk at smaller input sizes (a smaller grid, the decoder as
trained: not retrained), and, when onnxruntime is installed, the folded trunk exported to ONNX and run by ONNX
Runtime in fp32 and statically quantised to int8 (QDQ, per-channel weights, calibrated on training photos), and,
when openvino is installed, the same trunk through OpenVINO in fp32.

For each: the median time from a decoded 640x480 photo to its grid (preprocessing included; interleaved rounds
on one photo), the median decoding time from that grid (beam 3, guided, as `Captioner.caption`), how far the
grids are from the shipped ones (relative L2), how often the classifier's top tag and the caption stay the same,
and the photos' BLEU-4. Each option is a real alternative only if it keeps the captions.

    pip install onnxruntime onnx openvino   # optional: the ONNX Runtime and OpenVINO rows
    python bench/encoder_options.py --annotations data/flickr8k/dataset_flickr8k.json \\
        --images data/flickr8k/images [--count 200] [--sizes 260 224] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from captioning import Captioner, load_captioner
from captioning.data.records import load_karpathy
from captioning.images import open_image
from captioning.metrics import score_captions

PHOTO = Path(__file__).resolve().parents[1] / "app" / "examples" / "astronaut-eileen-collins.jpg"
Encode = Callable[[Image.Image], torch.Tensor]


@dataclass
class Option:
    name: str
    encode: Encode     # a decoded photo -> its grid (1, P, D)
    model: Captioner   # what decodes that grid (the shipped model, or its copy for another grid size)


def torch_option(model: Captioner, size: int | None = None) -> Option:
    """The shipped encoder, or the same weights at `size` pixels (the grid then that size's natural one)."""
    if size is None or size == model.encoder.preprocess.image_size:
        return Option(f"torch, {model.encoder.preprocess.image_size} px (shipped)",
                      lambda image: model.encoder.encode_pil([image]), model)
    other = Captioner(replace(model.config, image_size=size), model.vocab, pretrained_encoder=False)
    other.load_state_dict(model.state_dict())
    other.guide_settings, other.length_penalty = model.guide_settings, model.length_penalty
    other.eval()
    grid = other.encoder.grid_size
    return Option(f"torch, {size} px ({grid}x{grid} grid, decoder not retrained)",
                  lambda image: other.encoder.encode_pil([image]), other)


def folded_trunk(model: Captioner) -> tuple[torch.nn.Module, torch.Tensor]:
    """The shipped encoder's BatchNorm-folded trunk, and example pixels to export or convert it with."""
    encoder = model.encoder
    return encoder.fold(encoder.trunk).eval(), encoder.preprocess([Image.new("RGB", (640, 480))])


def runtime_option(name: str, model: Captioner, run: Callable) -> Option:
    """An option whose trunk another runtime runs: `run` maps the pixels (numpy) to the feature map (numpy)."""

    def encode(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(run(model.encoder.preprocess([image]).numpy())).flatten(2).transpose(1, 2)

    return Option(name, encode, model)


def onnx_options(model: Captioner, calibration: list[Path], folder: Path) -> list[Option]:
    """ONNX Runtime fp32 and int8 runs of the folded trunk (none when onnxruntime or onnx is missing)."""
    try:
        import onnxruntime as ort
        from onnxruntime import quantization as q
    except ImportError:
        print("onnxruntime is not installed (pip install onnxruntime onnx): no ONNX Runtime rows", file=sys.stderr)
        return []
    encoder = model.encoder
    trunk, example = folded_trunk(model)
    fp32, prepared, int8 = folder / "trunk.onnx", folder / "trunk_pre.onnx", folder / "trunk_int8.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(trunk, (example,), fp32, input_names=["pixels"], output_names=["grid"], dynamo=False)

    class Photos(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.paths = iter(calibration)

        def get_next(self) -> dict | None:
            path = next(self.paths, None)
            return None if path is None else {"pixels": encoder.preprocess([open_image(path)]).numpy()}

    q.shape_inference.quant_pre_process(str(fp32), str(prepared))
    q.quantize_static(str(prepared), str(int8), Photos(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = settings.inter_op_num_threads = 1

    def option(name: str, path: Path) -> Option:
        session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
        return runtime_option(name, model, lambda pixels: session.run(None, {"pixels": pixels})[0])

    return [option("ONNX Runtime fp32, 320 px", fp32),
            option(f"ONNX Runtime int8 (static, per-channel, {len(calibration)} calibration photos), 320 px", int8)]


def openvino_option(model: Captioner) -> list[Option]:
    """OpenVINO's fp32 run of the folded trunk (none when openvino is missing)."""
    try:
        import openvino
    except ImportError:
        print("openvino is not installed (pip install openvino): no OpenVINO row", file=sys.stderr)
        return []
    trunk, example = folded_trunk(model)
    with torch.no_grad():
        converted = openvino.convert_model(trunk, example_input=example)
    compiled = openvino.Core().compile_model(converted, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1,
                                                                "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return [runtime_option("OpenVINO fp32, 320 px", model,
                           lambda pixels: request.infer({0: pixels})[compiled.output(0)].copy())]


def timed(run: Callable[[], object]) -> tuple[object, float]:
    """run()'s result and the milliseconds it took."""
    start = time.perf_counter()
    result = run()
    return result, 1000 * (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--annotations", required=True, help="Karpathy split file")
    p.add_argument("--images", required=True, help="image folder")
    p.add_argument("--count", type=int, default=200, help="val photos (the split's first)")
    p.add_argument("--calibration", type=int, default=64, help="training photos that calibrate int8")
    p.add_argument("--sizes", type=int, nargs="*", default=[260, 224], help="smaller input sizes to try")
    p.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds on the example photo")
    p.add_argument("--model", default="flickr8k")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_captioner(args.model)
    records = load_karpathy(args.annotations, args.images)
    val = [r for r in records if r.split == "val"][:args.count]
    calibration = [Path(r.path) for r in records if r.split == "train"][:args.calibration]
    with tempfile.TemporaryDirectory() as folder:  # options built outside inference mode: their caches need versions
        options = [torch_option(model), *(torch_option(model, s) for s in args.sizes),
                   *onnx_options(model, calibration, Path(folder)), *openvino_option(model)]
        with torch.inference_mode():
            rows = measure(options, val, args.rounds)
    print(f"{args.model}, {len(val)} val photos, one thread; ms are medians\n")
    print("| encoder | photo -> grid ms | x shipped | decode ms | grid rel. error | same top tag | same caption "
          "| BLEU-4 |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        error = "-" if row["grid_error"] is None else f"{row['grid_error']:.3f}"
        print(f"| {row['encoder']} | {row['encode_ms']:.1f} | {rows[0]['encode_ms'] / row['encode_ms']:.2f}x | "
              f"{row['decode_ms']:.1f} | {error} | {row['same_top_tag']:.1%} | "
              f"{row['same_caption']:.1%} | {row['bleu4']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "photos": len(val), "rows": rows}, indent=1))
    return 0


def measure(options: list[Option], val: list, rounds: int) -> list[dict]:
    """Interleaved timings on the example photo, then every option over the val photos, each against the first
    (the shipped encoder)."""
    photo = Image.open(PHOTO).convert("RGB").resize((640, 480))
    times: dict[str, list[float]] = {o.name: [] for o in options}
    for round_ in range(3 + rounds):  # 3 warm-up rounds
        for o in options:
            _, ms = timed(lambda o=o: o.encode(photo))
            times[o.name] += [ms] if round_ >= 3 else []
    photos = [open_image(r.path, at_least=options[0].model.encoder.preprocess.decode_at_least) for r in val]
    references = {r.image_id: r.captions for r in val}
    outputs = []  # per option: grids, top tags, captions, decoding ms
    for o in options:
        grids = [o.encode(image) for image in photos]
        for grid in grids[:3]:  # warm-up: the decoder's first calls build its caches
            o.model.caption_features(grid)
        decoded = [timed(lambda grid=grid, model=o.model: model.caption_features(grid)[0]) for grid in grids]
        tags = [o.model.tag_probabilities(g).argmax().item() for g in grids]
        outputs.append((grids, tags, [r for r, _ in decoded], [ms for _, ms in decoded]))
    shipped_grids, shipped_tags, shipped, _ = outputs[0]
    rows = []
    for o, (grids, tags, results, decode_ms) in zip(options, outputs, strict=True):
        same_shape = grids[0].shape == shipped_grids[0].shape
        error = statistics.mean(float((g - s).norm() / s.norm()) for g, s in zip(grids, shipped_grids, strict=True)
                                ) if same_shape else None
        bleu = score_captions(references, {r.image_id: res.text for r, res in zip(val, results, strict=True)},
                              spice=False).metrics["Bleu_4"]
        rows.append({"encoder": o.name, "encode_ms": statistics.median(times[o.name]),
                     "decode_ms": statistics.median(decode_ms), "grid_error": error,
                     "same_top_tag": sum(a == b for a, b in zip(tags, shipped_tags, strict=True)) / len(val),
                     "same_caption": sum(a.text == b.text for a, b in zip(results, shipped, strict=True)) / len(val),
                     "bleu4": bleu})
    return rows


if __name__ == "__main__":
    sys.exit(main())
