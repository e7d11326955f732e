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

import torch

from captioning import load_captioner
from captioning.data.cache import FeatureCache
from captioning.data.records import load_karpathy
from captioning.images import open_image
from captioning.metrics import score_captions
from captioning.naming import names, read_labels


def encode(model, paths: list[Path], batch: int = 20) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model.encoder.encode_pil([open_image(p, at_least=model.encoder.preprocess.decode_at_least)
                                                    for p in paths[i:i + batch]]).half()
                          for i in range(0, len(paths), batch)])


def caption(model, grids: torch.Tensor, batch: int = 50) -> list:
    with torch.inference_mode():
        return [r for i in range(0, len(grids), batch) for r in model.caption_features(grids[i:i + batch].float())]


def naming_counts(results: list, labels: list[str]) -> dict[str, list[int]]:
    """label -> [photos, named, the other label named]."""
    counts = {label: [0, 0, 0] for label in sorted(set(labels))}
    for result, label in zip(results, labels, strict=True):
        row = counts[label]
        row[0] += 1
        if names(result.tokens, label):
            row[1] += 1
        elif any(names(result.tokens, other) for other in counts if other != label):
            row[2] += 1
    return counts


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
    val = [r for r in load_karpathy(args.annotations, args.images) if r.split == "val"]
    if args.cache:
        cache = FeatureCache.open(args.cache, encoder=model.encoder)
        val_grids = torch.stack([cache[r.image_id] for r in val])
    else:
        val_grids = encode(model, [Path(r.path) for r in val])
    labels = read_labels(args.labels)
    files = sorted(labels)
    pet_grids = encode(model, [Path(args.pets) / f for f in files])
    references = {r.image_id: r.captions for r in val}
    shipped, rows = model.guide_settings, []
    for changes in rows_asked:
        model.guide_settings = dataclasses.replace(shipped, **changes)
        hypotheses = {r.image_id: res.text for r, res in zip(val, caption(model, val_grids), strict=True)}
        scores = score_captions(references, hypotheses, spice=False).metrics
        counts = naming_counts(caption(model, pet_grids), [labels[f] for f in files])
        rows.append({"settings": changes, **{k: scores[k] for k in ("Bleu_4", "METEOR", "CIDEr")},
                     "naming": counts})
        print(rows[-1], file=sys.stderr)
    print("| settings | BLEU-4 | METEOR | CIDEr | " + " | ".join(f"{k}: named / the other" for k in rows[0]["naming"])
          + " |\n| --- | ---: | ---: | ---: |" + " ---: |" * len(rows[0]["naming"]))
    for row in rows:
        shares = " | ".join(f"{c[1] / c[0]:.1%} / {c[2] / c[0]:.1%}" for c in row["naming"].values())
        print(f"| `{json.dumps(row['settings'])}` | {row['Bleu_4']:.4f} | {row['METEOR']:.4f} | {row['CIDEr']:.4f} "
              f"| {shares} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
