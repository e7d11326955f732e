"""Guidance settings of the bundled captioner, measured on both sides of their trade-off: Flickr8k val (BLEU-4,
METEOR, CIDEr, beam 3) and pets_dev (cats and dogs named, the other animal named). Each positional argument
is one row: a JSON object of `GuideSettings` fields that replace the model's own ({} is the model as shipped).
The photos are encoded once (or val read from a feature cache of the model's encoder); the rows decode the
same grids through `Captioner.caption_features`, the code the commands run.

    python bench/guidance_sweep.py --annotations data/flickr8k/dataset_flickr8k.json \\
        --images data/flickr8k/images --labels ../shared/data/pets_dev/labels.json \\
        --pets ../shared/data/pets_dev/images [--cache data/f8k_cache_lite2_320] [--json OUT] \\
        '{}' '{"hedge_kinds": []}' '{"hedge_people": 0}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

if __package__:
    from .flickr8k_val import caption_grids, encode_photos, print_table, val_grids, val_records, val_scores
else:  # run as a script: `python bench/guidance_sweep.py`
    from flickr8k_val import caption_grids, encode_photos, print_table, val_grids, val_records, val_scores
from captioning import load_captioner
from captioning.naming import read_labels, tally


def naming_counts(results: list, labels: list[str]) -> dict[str, list[int]]:
    """label -> [photos, named, the other label named] (`captioning.naming.tally`)."""
    rows = tally(((label, result.tokens) for result, label in zip(results, labels, strict=True)), labels)
    return {row.label: [row.photos, row.right, row.wrong] for row in rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("settings", nargs="+", help="JSON objects of GuideSettings fields, one row each")
    p.add_argument("--annotations", required=True, help="Karpathy split file of Flickr8k")
    p.add_argument("--images", required=True, help="Flickr8k's photos")
    p.add_argument("--labels", required=True, help='pets_dev labels.json ({"cat.1.jpg": "cat", ...})')
    p.add_argument("--pets", required=True, help="pets_dev's photos")
    p.add_argument("--cache", help="a feature cache of the model's encoder holding the val photos")
    p.add_argument("--model", default="flickr8k")
    p.add_argument("--json")
    args = p.parse_args(argv)
    rows_asked = [json.loads(s) for s in args.settings]
    model = load_captioner(args.model)
    val = val_records(args.annotations, args.images)
    grids = val_grids(model, val, args.cache)
    labels = read_labels(args.labels)
    files = sorted(labels)
    pet_grids = encode_photos(model, [Path(args.pets) / f for f in files])
    shipped, rows = model.guide_settings, []
    for changes in rows_asked:
        model.guide_settings = dataclasses.replace(shipped, **changes)
        rows.append({"settings": changes, **val_scores(val, caption_grids(model, grids)),
                     "naming": naming_counts(caption_grids(model, pet_grids), [labels[f] for f in files])})
        print(rows[-1], file=sys.stderr)
    kinds = list(rows[0]["naming"])
    print_table(["settings", "BLEU-4", "METEOR", "CIDEr", *(f"{k}: named / the other" for k in kinds)],
                [[f"`{json.dumps(r['settings'])}`", f"{r['Bleu_4']:.4f}", f"{r['METEOR']:.4f}", f"{r['CIDEr']:.4f}",
                  *(f"{c[1] / c[0]:.1%} / {c[2] / c[0]:.1%}" for c in r["naming"].values())] for r in rows],
                rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
