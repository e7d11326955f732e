"""`vqa prepare caption-qa --captions dataset_flickr8k.json --out QA.json [--seed N]`: Visual7W telling
questions generated from captions (`vqa.caption_qa`), splits following the images; the file is what
`vqa train --format visual7w --annotations QA.json --images DIR` reads."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from captioning.checkpoint import write_json_atomic
from captioning.data.annotations import DatasetError, list_field, read_json

from .caption_qa import TYPES, counts, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", required=True, metavar="{caption-qa}")
    p = sub.add_parser("caption-qa", help="telling questions from captions (COCO-QA style, one-word answers)",
                       description="telling questions from captions (COCO-QA style, one-word answers)")
    p.add_argument("--captions", required=True, metavar="KARPATHY_JSON",
                   help="captions in the Karpathy layout (dataset_flickr8k.json)")
    p.add_argument("--out", required=True, metavar="QA_JSON", help="Visual7W telling JSON to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the question and wrong-choice sampling")
    p.add_argument("--examples", type=int, default=0, metavar="N",
                   help="also print N questions drawn at random (seeded by --seed) as a Markdown table")
    p.add_argument("--per-type", type=int, default=2, help="at most this many questions of each type per image")


def main(args: argparse.Namespace) -> dict:
    path = Path(args.captions)
    entries = list_field(read_json(path), "images", path)
    bad = next((i for i, e in enumerate(entries) if not isinstance(e, dict) or "filename" not in e
                or "split" not in e), None)
    if bad is not None:
        raise DatasetError(f"{path}: images[{bad}] needs \"filename\", \"split\" and \"sentences\"")
    data = generate(entries, seed=args.seed, per_type=args.per_type)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, data)
    table = counts(data)
    print(f"{out}: {sum(len(i['qa_pairs']) for i in data['images']):,} questions about "
          f"{len(data['images']):,} of {len(entries):,} images")
    for split in sorted(table):
        print(f"  {split:<6}" + "  ".join(f"{t} {table[split][t]:,}" for t in TYPES))
    if args.examples:
        print(examples_table(data, args.examples, args.seed))
    return data


def examples_table(data: dict, n: int, seed: int) -> str:
    """`n` questions drawn with `seed`: image, type, question, answer, wrong choices (Markdown)."""
    pairs = [(image["filename"], image["split"], qa) for image in data["images"] for qa in image["qa_pairs"]]
    rows = ["| image | split | type | question | answer | wrong choices |", "| --- | --- | --- | --- | --- | --- |"]
    for filename, split, qa in random.Random(seed).sample(pairs, min(n, len(pairs))):
        rows.append(f"| {filename} | {split} | {qa['type']} | {qa['question']} | {qa['answer']} | "
                    f"{', '.join(qa['multiple_choices'])} |")
    return "\n".join(rows)
