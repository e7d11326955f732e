"""`captioning` command line: train, evaluate, caption, naming, average, prepare, download.

Errors end the command with one line `error: ...` and a non-zero status; `--debug` shows the
traceback instead. Heavy imports happen inside the commands, so `--help` stays quick."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .engine.runtime import passive_openmp

passive_openmp()  # before anything loads torch: idle OpenMP threads sleep instead of spinning

from .engine.cli_base import OneLineErrorParser, run_command  # noqa: E402
from .limits import DEFAULT_BEAM_SIZE, INFERENCE_HELP, INFERENCE_KINDS, MAX_LEN, check_decoding  # noqa: E402


def _train(args: argparse.Namespace) -> int:
    from .train import main

    main(args)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import main

    main(args)
    return 0


def _average(args: argparse.Namespace) -> int:
    from .averaging import main

    main(args)
    return 0


def _naming(args: argparse.Namespace) -> int:
    from .naming import main

    main(args)
    return 0


def _caption(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .images import ImageLoadError, open_image
    from .model import load_captioner

    device = resolve_device(args.device)
    check_decoding(beam_size=args.beam_size, max_len=MAX_LEN if args.max_len is None else args.max_len,
                   names=("--beam-size", "--max-len"))
    if args.guide_threshold is not None and not 0 < args.guide_threshold <= 1:
        raise ValueError(f"--guide-threshold must be in (0, 1], got {args.guide_threshold}")
    guide = False if not args.guide else args.guide_threshold
    model = load_captioner(args.checkpoint, device, inference=args.inference)
    if args.tags and model.tag_table is None:
        print(f"note: no tags: encoder {model.encoder.name} has no classifier with a tag table", file=sys.stderr)
    failed = 0
    for path in args.images:
        try:
            image = open_image(path, at_least=model.encoder.preprocess.decode_at_least)
        except ImageLoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        result = model.caption([image], beam_size=args.beam_size, max_len=args.max_len, guide=guide)[0]
        line = f"{path}\t{result.text}"
        if args.tags:
            line += "\t" + ", ".join(f"{word} {p:.2f}" for word, p in result.tags)
        print(line, flush=True)
        for notice in result.notices:
            print(f"note: {path}: {notice}", file=sys.stderr)
        if args.attention_out:
            from .engine.figures import attention_figure

            out = Path(args.attention_out) / f"{Path(path).stem}.png"
            attention_figure(image, result.tokens, result.attention, out, title=result.text)
    return 1 if failed else 0


def _prepare(args: argparse.Namespace) -> int:
    from .data.flickr8k import prepare_flickr8k
    from .data.shapes import prepare_shapes

    if args.dataset == "captions":
        from .data.captions_table import prepare_captions

        if not args.source or not args.images:
            raise ValueError("prepare captions needs --from TABLE (photo<TAB>caption lines) and --images DIR")
        out = prepare_captions(args.source, args.images, args.out, val_share=args.val_share,
                               test_share=args.test_share, seed=args.seed, skip_invalid=args.skip_invalid)
        print(f"wrote {out}")
        return 0
    if args.dataset == "flickr8k":
        if not args.source:
            raise ValueError("prepare flickr8k needs --from DIR (the folder of Flickr8k.token.txt and its split lists)")
        print(f"wrote {prepare_flickr8k(args.source, args.out)}")
        return 0
    if args.num_images < 3:
        raise ValueError(f"--num-images must be at least 3 (train, val and test images), got {args.num_images}")
    prepare_shapes(args.out, num_images=args.num_images, seed=args.seed)
    return 0


def _download(args: argparse.Namespace) -> int:
    from .data.download import (
        FLICKR8K_FILES,
        FLICKR8K_URL,
        DownloadError,
        plan_coco_download,
        plan_flickr8k_download,
    )

    if args.dataset == "flickr8k":
        items = plan_flickr8k_download(args.root)
        if items:
            try:
                return _fetch(items, args.root, announce=False)  # offline, the error below is the only line
            except DownloadError as exc:  # say what to fetch by hand and where it goes
                reason = str(exc).split(": ", 1)[-1].removesuffix("; rerun to resume")
                archives = " and ".join(f"{FLICKR8K_URL}/{a}" for a, _, _ in FLICKR8K_FILES.values())
                raise DownloadError(f"cannot download Flickr8k ({reason}): download {archives} and unzip both "
                                    f"into {args.root}") from None
    else:
        items = plan_coco_download(args.root, include=args.include)
    return _fetch(items, args.root)


def _fetch(items: list, root: str, announce: bool = True) -> int:
    from .data.download import download

    if not items:
        print(f"{root}: everything is already there")
        return 0
    total = sum(i.size_hint or 0 for i in items) / 1e9
    if announce:
        print(f"downloading {len(items)} item(s) (about {total:.1f} GB) into {root}")
    for path in download(items):
        print(f"ready: {path}")
    return 0


HEAVY = ("train", "evaluate", "naming")  # their options are built by modules that import torch


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command`, the options of only that one of the HEAVY commands, so that
    `captioning --help` and the light commands never wait for torch to import."""
    def full(name: str) -> bool:
        return command is None or command == name

    parser = OneLineErrorParser(prog="captioning", description="Show, Attend and Tell image captioning.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser, metavar="COMMAND")
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")

    if full("train"):
        from .train_config import get_args_parser as train_parser
    p = sub.add_parser("train", parents=[*([train_parser(add_help=False)] if full("train") else []), debug],
                       help="train a captioner",
                       description="Train a captioner. Every option can also be set in a --config YAML "
                                   "(key = option name with underscores); the command line wins.",
                       argument_default=argparse.SUPPRESS)
    p.set_defaults(func=_train)

    if full("evaluate"):
        from .evaluate import get_args_parser as evaluate_parser
    p = sub.add_parser("evaluate", parents=[*([evaluate_parser(add_help=False)] if full("evaluate") else []), debug],
                       help="COCO metrics of a run")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("caption", parents=[debug], help="caption images")
    p.add_argument("checkpoint", help="run folder, checkpoint folder or bundled model name")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--beam-size", type=int, default=DEFAULT_BEAM_SIZE,
                   help=f"beam size (1: greedy; default: {DEFAULT_BEAM_SIZE})")
    p.add_argument("--max-len", type=int, help="longest caption in words (default: the model's)")
    p.add_argument("--attention-out", help="folder for one attention figure (PNG) per image")
    p.add_argument("--tags", action="store_true",
                   help="also print what the encoder's classifier sees, as caption words with probabilities")
    p.add_argument("--guide", action=argparse.BooleanOptionalAction, default=True,
                   help="make the caption say the encoder's confident tag (default: on)")
    p.add_argument("--guide-threshold", type=float,
                   help="tag probability from which the caption must say it (default: the model's)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--inference", choices=INFERENCE_KINDS, default="fast", help=INFERENCE_HELP)
    p.set_defaults(func=_caption)

    if full("naming"):
        from .naming import get_args_parser as naming_parser
    p = sub.add_parser("naming", parents=[*([naming_parser(add_help=False)] if full("naming") else []), debug],
                       help="how often captions name the labelled thing in photos, with and without guidance")
    p.set_defaults(func=_naming)

    p = sub.add_parser("average", parents=[debug], help="average the weights of several checkpoints of one model")
    p.add_argument("checkpoints", nargs="+", help="checkpoint folders, run folders (their best) or bundled names")
    p.add_argument("--out", required=True, help="the averaged checkpoint folder to write")
    p.add_argument("--half", action="store_true", help="store floating weights in float16")
    p.add_argument("--length-penalty", type=float,
                   help="the averaged model ranks beams by log p / length^this (default: the first checkpoint's)")
    p.set_defaults(func=_average)

    p = sub.add_parser("prepare", parents=[debug],
                       help="write the synthetic shapes set, or a Karpathy JSON of Flickr8k or of your own captions")
    p.add_argument("dataset", choices=("shapes", "flickr8k", "captions"), help="which dataset")
    p.add_argument("--out", required=True, help="output folder (shapes) or JSON file (flickr8k, captions)")
    p.add_argument("--from", dest="source", help="flickr8k: the folder of Flickr8k.token.txt and the split lists; "
                                                 "captions: a table of 'photo.jpg<TAB>caption' lines (or CSV)")
    p.add_argument("--images", help="captions: the folder of the photos")
    p.add_argument("--val-share", type=float, default=0.1, help="captions: share of photos for val (default: 0.1)")
    p.add_argument("--test-share", type=float, default=0.1, help="captions: share of photos for test (default: 0.1)")
    p.add_argument("--skip-invalid", action="store_true", help="captions: skip and count bad lines and missing photos")
    p.add_argument("--num-images", type=int, default=1000, help="images, split 80/10/10 (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("download", parents=[debug], help="download a dataset")
    p.add_argument("dataset", choices=("coco", "flickr8k"), help="which dataset")
    p.add_argument("--root", required=True, help="download folder")
    p.add_argument("--include", nargs="+", default=["train2014", "val2014", "annotations", "karpathy"],
                   choices=("train2014", "val2014", "annotations", "karpathy"), help="coco: parts to fetch (default: all)")
    p.set_defaults(func=_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    return run_command(args.func, args, debug)


if __name__ == "__main__":
    sys.exit(main())
