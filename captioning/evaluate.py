"""Evaluate a captioner: `captioning evaluate RUN [--split test] [--beam-size K] [--json OUT]`, or score an
existing results file like the coco-caption toolkit: `captioning evaluate --results R.json --annotations A`.

A run folder remembers its dataset (RUN/config.yaml), so `evaluate RUN` needs nothing else; the
captions are written as a COCO results file ([{"image_id", "caption"}]) beside a metrics JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader

from .data import (
    FORMATS,
    CaptionDataset,
    DatasetError,
    FeatureCache,
    collate_captions,
    load_dataset,
    sniff_format,
    split_records,
)
from .data.splits import held_out_ids, load_training_records, mark_held_out
from .engine.device import resolve_device
from .grounding import grounding_score
from .lexicon.endings import bad_ending
from .limits import INFERENCE_HELP, INFERENCE_KINDS
from .metrics import score_captions, score_results_file
from .model import Captioner, CaptionResult, load_captioner, resolve_checkpoint
from .search import DEFAULT_BEAM_SIZE
from .train_config import read_run_config


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Caption a split and report COCO metrics.", add_help=add_help)
    p.add_argument("run_dir", nargs="?", help="run folder (uses its best checkpoint), checkpoint folder or bundled "
                   "model name")
    p.add_argument("--results", help="score this COCO results JSON instead of a model (needs --annotations)")
    p.add_argument("--annotations", help="annotation file: Karpathy JSON, COCO captions JSON or Flickr8k.token.txt "
                   "(default: the run's)")
    p.add_argument("--images", help="image root (default: the run's)")
    p.add_argument("--format", choices=FORMATS, help="annotation format (default: the run's, else auto)")
    p.add_argument("--split", choices=("train", "val", "test"),
                   help="split to caption (default: test, or val when there is no test split)")
    p.add_argument("--beam-size", type=int, help="beam size (default: the run's beam_size; 1: greedy)")
    p.add_argument("--inference", choices=INFERENCE_KINDS, default="fast", help=INFERENCE_HELP)
    p.add_argument("--max-len", type=int, help="longest caption in words (default: the model's)")
    p.add_argument("--length-penalty", type=float,
                   help="rank beams by log p / length^this (default: the model's, 0 unless its config.json says)")
    p.add_argument("--guide", action=argparse.BooleanOptionalAction, default=True,
                   help="make captions say the encoder's confident tag, as `caption` and the app do (default: on)")
    p.add_argument("--max-images", type=int, default=0, help="caption at most this many images (0: all)")
    p.add_argument("--batch-size", type=int, default=64, help="images per decoding batch (default: 64)")
    p.add_argument("--num-workers", type=int, default=2, help="image loading workers (default: 2)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", help="metrics JSON to write (default: RUN/eval/metrics_<split>_beam<K>.json; "
                                  "for a checkpoint folder: ./eval/...)")
    p.add_argument("--results-out", help="COCO results JSON to write (default: RUN/eval/results_<split>_beam<K>.json)")
    p.add_argument("--no-java", action="store_true",
                   help="regex tokenizer, no METEOR/SPICE (otherwise the PTB tokenizer when Java is installed)")
    return p


@torch.inference_mode()
def caption_records(model: Captioner, records: Sequence, *, features=None, beam_size: int = DEFAULT_BEAM_SIZE,
                    max_len: int | None = None, length_penalty: float | None = None, batch_size: int = 64,
                    device: torch.device | str | None = None, amp: bool = True,
                    num_workers: int = 0, guide: bool | None = None) -> list[CaptionResult]:
    """Caption each record's image, from cached encoder grids (`features`) or from pixels; `guide` as in
    `Captioner.caption` (None: the model's default)."""
    device = torch.device(device) if device is not None else model.device
    source = features if features is not None and model.encoder.frozen else model.encoder
    dataset = CaptionDataset(records, model.vocab, source, per_image=True)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_captions, num_workers=num_workers)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" \
        else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    out: list[CaptionResult] = []
    try:
        with autocast:
            for images, _, _ in loader:
                images = images.to(device, non_blocking=True)
                grid = images if source is features else model.encoder(images)
                out += model.caption_features(grid, beam_size=beam_size, max_len=max_len, length_penalty=length_penalty,
                                              guide=guide)
    finally:
        model.train(was_training)
    return out


SHAPES_OBJECT_KEYS = ("color", "shape", "box")


def attention_grounding(records: Sequence, results: Sequence[CaptionResult], all_records: Sequence):
    """Grounding score over records with `objects` (the shapes set); None when there are none, or when
    the objects follow another schema (an optional extra never stops the evaluation: a note says why)."""
    if not any(r.objects for r in records):
        return None
    odd = next((o for r in all_records for o in (r.objects or [])
                if not isinstance(o, dict) or any(k not in o for k in SHAPES_OBJECT_KEYS)), None)
    if odd is not None:
        print(f"note: grounding score skipped: the images' objects are not the shapes set's "
              f"{{color, shape, box}} (e.g. {str(odd)[:80]})")
        return None
    colours = {o["color"] for r in all_records for o in (r.objects or [])}
    shapes = {o["shape"] for r in all_records for o in (r.objects or [])}
    items = []
    for record, result in zip(records, results, strict=True):
        with Image.open(record.path) as im:
            size = im.size
        items.append((result.tokens, result.attention, record.objects or [], size))
    return grounding_score(items, colours, shapes)


def _write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def main(args: argparse.Namespace) -> dict:
    if args.results:
        if args.run_dir:
            raise ValueError("give either a run folder or --results, not both")
        if not args.annotations:
            raise ValueError("--results needs --annotations (a COCO captions_*.json)")
        scores = score_results_file(args.results, args.annotations, use_java=False if args.no_java else None)
        print(f"scored {args.results} against {args.annotations}")
        print("\n".join(scores.lines()))
        report = {"results": str(args.results), "annotations": str(args.annotations), **scores.to_dict()}
        if args.json:
            print(f"wrote {_write_json(Path(args.json), report)}")
        return report
    if not args.run_dir:
        raise ValueError("give a run folder (captioning evaluate RUN) or --results FILE --annotations FILE")
    return evaluate_run(args)


def _dataset(args: argparse.Namespace, run_dir: Path, run: dict) -> tuple[list, str]:
    annotations = args.annotations or run.get("annotations")
    images = args.images or run.get("images")
    if not annotations or not images:
        raise ValueError(f"{run_dir} has no config.yaml naming its dataset; pass --annotations and --images")
    fmt = args.format or run.get("format", "auto")
    fmt = sniff_format(annotations) if fmt == "auto" else fmt
    own = bool(run) and Path(annotations).absolute() == Path(run["annotations"]).absolute()
    if own:  # the training annotations: the same records and held-out images as in training
        records = load_training_records(annotations, images, fmt, run.get("skip_invalid", False))
    elif fmt == "coco" and args.split:
        records = load_dataset(annotations, images, format=fmt, split=args.split)
    else:
        try:
            records = load_dataset(annotations, images, format=fmt)
        except DatasetError as exc:  # a COCO file whose name does not say its split: all of it is evaluated
            if "cannot tell the split" not in str(exc):
                raise
            records = load_dataset(annotations, images, format=fmt, split="test")
    held = held_out_ids(run_dir)
    if held is not None and own:  # the run's held-out validation images
        mark_held_out(records, held)
    split = args.split
    if split is None:
        split = "test" if split_records(records, "test") else "val"
    chosen = split_records(records, split)
    if not chosen:
        present = sorted({r.split for r in records})
        raise ValueError(f"{annotations} has no {split} images (splits present: {', '.join(present)}); "
                         "choose one with --split, or pass another --annotations (e.g. captions_val2014.json)")
    return records, split


def evaluate_run(args: argparse.Namespace) -> dict:
    run_dir = Path(args.run_dir)
    folder = resolve_checkpoint(run_dir)
    run = read_run_config(run_dir) if (run_dir / "config.yaml").is_file() else {}
    device = resolve_device(args.device)
    records, split = _dataset(args, run_dir, run)
    chosen = split_records(records, split)
    if args.max_images > 0:
        chosen = chosen[:args.max_images]
    beam = args.beam_size if args.beam_size is not None else run.get("beam_size") or DEFAULT_BEAM_SIZE
    for flag, value in (("--beam-size", beam), ("--max-len", args.max_len), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    model = load_captioner(folder, device, inference=args.inference)
    length_penalty = model.length_penalty if args.length_penalty is None else args.length_penalty

    features = None
    cache_dir = run.get("cache_dir") or (run_dir / "features")
    if model.encoder.frozen and run:  # reuse (and extend) the run's feature cache
        features = FeatureCache.build(model.encoder, chosen, cache_dir, batch_size=args.batch_size,
                                      num_workers=args.num_workers, device=device)
    results = caption_records(model, chosen, features=features, beam_size=beam, max_len=args.max_len,
                              length_penalty=length_penalty, batch_size=args.batch_size, device=device,
                              num_workers=args.num_workers, guide=None if args.guide else False)
    coco_results = [{"image_id": r.image_id, "caption": res.text} for r, res in zip(chosen, results, strict=True)]
    scores = score_captions({r.image_id: r.captions for r in chosen},
                            {r.image_id: res.text for r, res in zip(chosen, results, strict=True)},
                            use_java=False if args.no_java else None)
    grounding = attention_grounding(chosen, results, records)

    base = run_dir if run else Path.cwd()  # never write into a checkpoint (or bundled model) folder
    tag = f"{split}_beam{beam}" + (f"_lp{length_penalty:g}" if length_penalty else "") + \
        ("" if args.guide else "_unguided")
    lengths = [len(res.tokens) for res in results]
    shape = {"mean_length": sum(lengths) / max(len(lengths), 1),
             "words_used": len({word for res in results for word in res.tokens})}
    results_path = Path(args.results_out) if args.results_out else base / "eval" / f"results_{tag}.json"
    metrics_path = Path(args.json) if args.json else base / "eval" / f"metrics_{tag}.json"
    report = {"checkpoint": str(folder), "split": split, "images": len(chosen), "beam_size": beam,
              "length_penalty": length_penalty, "guided": args.guide, **scores.to_dict(), **shape,
              "bad_endings": sum(bad_ending(res.tokens) is not None for res in results),
              "grounding": grounding.to_dict() if grounding else None,
              "results": str(results_path)}
    _write_json(results_path, coco_results)
    _write_json(metrics_path, report)
    print(f"{folder}: {len(chosen)} {split} images, beam size {beam}{'' if args.guide else ', unguided'}")
    print("\n".join(scores.lines()))
    print(f"captions: {shape['mean_length']:.2f} words on average, {shape['words_used']} distinct words, "
          f"{report['bad_endings']} ending on a word that cannot end one (the, of, holding, a red)")
    if grounding is not None:
        print(grounding.line())
    print(f"wrote {results_path} and {metrics_path}")
    return report
