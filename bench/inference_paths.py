"""The three paths of the inference seam (`captioning.inference`) on real photos, one thread: decoding time per
photo (median over the photos, beam 3, guided as by default) and how often each path writes the fast path's
caption. The encoder runs once per photo beforehand (all paths share it) and its time is shown beside.

    python bench/inference_paths.py --annotations data/flickr8k/dataset_flickr8k.json \\
        --images data/flickr8k/images [--split val] [--count 200] [--model flickr8k] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from captioning import load_captioner
from captioning.data.records import load_karpathy
from captioning.images import open_image
from captioning.limits import INFERENCE_KINDS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--annotations", required=True, help="Karpathy split file")
    p.add_argument("--images", required=True, help="image folder")
    p.add_argument("--split", default="val")
    p.add_argument("--count", type=int, default=200, help="photos (the split's first)")
    p.add_argument("--model", default="flickr8k")
    p.add_argument("--json", help="also write the table here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    records = [r for r in load_karpathy(args.annotations, args.images) if r.split == args.split][:args.count]
    models = {kind: load_captioner(args.model, inference=kind) for kind in INFERENCE_KINDS}
    encoder = models["fast"].encoder
    grids, encode_ms = [], []
    for record in records:
        image = open_image(record.path, at_least=encoder.preprocess.decode_at_least)
        start = time.perf_counter()
        grids.append(encoder.encode_pil([image]))
        encode_ms.append(1000 * (time.perf_counter() - start))
    rows, reference = [], None
    for kind, model in models.items():
        times, results = [], []
        for grid in grids:
            start = time.perf_counter()
            results.append(model.caption_features(grid)[0])
            times.append(1000 * (time.perf_counter() - start))
        reference = reference or results
        same = sum(a.text == b.text for a, b in zip(reference, results, strict=True))
        gap = max(abs(a.log_prob - b.log_prob) for a, b in zip(reference, results, strict=True) if a.text == b.text)
        rows.append({"path": kind, "decode_ms_median": statistics.median(times), "same_caption": same / len(grids),
                     "max_logp_gap_when_same": gap})
    print(f"{args.model}, {len(grids)} {args.split} photos, one thread; encoder median "
          f"{statistics.median(encode_ms):.1f} ms per photo (shared by all paths)\n")
    print("| path | decode ms / photo (median) | x fast | same caption as fast | max abs log p gap (same caption) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['path']} | {row['decode_ms_median']:.1f} | "
              f"{row['decode_ms_median'] / rows[0]['decode_ms_median']:.2f} | {row['same_caption']:.1%} | "
              f"{row['max_logp_gap_when_same']:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "photos": len(grids),
                                               "encode_ms_median": statistics.median(encode_ms), "rows": rows},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
