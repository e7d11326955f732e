"""`vqa prepare caption-qa --captions dataset_flickr8k.json --out QA.json [--seed N]`: Visual7W telling
questions generated from captions (`vqa.caption_qa`), splits following the images; the file is what
`vqa train --format visual7w --annotations QA.json --images DIR` reads.

`vqa prepare caption-words --flickr30k results_20130124.token --exclude dataset_flickr8k.json`: rewrites
`vqa/caption_qa_words.py`, the words that suggest an object (`caption_qa_broader.derive_evidence`), from the
captions of the Flickr30k photos that are not Flickr8k photos (so no Flickr8k val caption shapes them)."""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

from captioning.checkpoint import write_json_atomic
from captioning.data.annotations import DatasetError, list_field, read_json
from captioning.vocab import tokenize

from .caption_qa import ALL_TYPES, YES_NO_TYPES, counts, derive_evidence, generate, yes_no_balance

WORDS_MODULE = Path(__file__).parent / "caption_qa_words.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", required=True, metavar="{caption-qa,caption-words}")
    p = sub.add_parser("caption-qa", help="telling questions from captions (COCO-QA style, one-word answers)",
                       description="telling questions from captions (COCO-QA style, one-word answers)")
    p.add_argument("--captions", required=True, metavar="KARPATHY_JSON",
                   help="captions in the Karpathy layout (dataset_flickr8k.json)")
    p.add_argument("--out", required=True, metavar="QA_JSON", help="Visual7W telling JSON to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the question and wrong-choice sampling")
    p.add_argument("--examples", type=int, default=0, metavar="N",
                   help="also print N questions drawn at random (seeded by --seed) as a Markdown table")
    p.add_argument("--per-type", type=int, default=2,
                   help="at most this many questions of each COCO-QA-style type per image")
    p.add_argument("--yes-no-per-image", type=int, default=1, metavar="N",
                   help="yes/no pairs (one yes, one no) of each yes/no type per image, at most")
    p.add_argument("--coco-qa-only", dest="broader", action="store_false",
                   help="only the COCO-QA-style types (what, who, where, colour, how many, doing)")
    p.add_argument("--one-wording", dest="paraphrase", action="store_false",
                   help="each question in its canonical wording only (\"What colour is the dog?\"), as sets "
                        "made before the paraphrases were (vqa.caption_qa_wording)")
    w = sub.add_parser("caption-words", help="derive the words that suggest an object from other captions",
                       description="rewrite vqa/caption_qa_words.py from Flickr30k's captions")
    w.add_argument("--flickr30k", required=True, metavar="TOKEN_FILE",
                   help="Flickr30k's results_20130124.token (<photo>.jpg#<n><TAB><caption>)")
    w.add_argument("--exclude", metavar="KARPATHY_JSON",
                   help="leave out the photos of this Karpathy file (Flickr8k: same Flickr ids)")
    w.add_argument("--out", default=str(WORDS_MODULE), help="Python module to write (default: %(default)s)")


def main(args: argparse.Namespace):
    return caption_words(args) if args.what == "caption-words" else caption_qa(args)


def caption_qa(args: argparse.Namespace) -> dict:
    path = Path(args.captions)
    entries = list_field(read_json(path), "images", path)
    bad = next((i for i, e in enumerate(entries) if not isinstance(e, dict) or "filename" not in e
                or "split" not in e), None)
    if bad is not None:
        raise DatasetError(f"{path}: images[{bad}] needs \"filename\", \"split\" and \"sentences\"")
    if args.yes_no_per_image < 0 or args.per_type < 0:
        raise ValueError("--per-type and --yes-no-per-image must be 0 or more")
    data = generate(entries, seed=args.seed, per_type=args.per_type, broader=args.broader,
                    yes_no_per_image=args.yes_no_per_image, paraphrase=args.paraphrase)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, data)
    print(f"{out}: {sum(len(i['qa_pairs']) for i in data['images']):,} questions about "
          f"{len(data['images']):,} of {len(entries):,} images")
    print(counts_table(data))
    if args.examples:
        print(examples_table(data, args.examples, args.seed))
    return data


def counts_table(data: dict) -> str:
    """Questions per type and split (Markdown), then each yes/no type's answers: yes / no."""
    table, balance = counts(data), yes_no_balance(data)
    types = [t for t in ALL_TYPES if any(table[s][t] for s in table)]
    rows = ["| split | " + " | ".join(types) + " | all |", "| --- |" + " ---: |" * (len(types) + 1)]
    for split in sorted(table):
        rows.append(f"| {split} | " + " | ".join(f"{table[split][t]:,}" for t in types) +
                    f" | {sum(table[split].values()):,} |")
    for split in sorted(balance):
        rows.append(f"yes/no in {split}: " + ", ".join(
            f"{t} {balance[split][t]['yes']:,} yes / {balance[split][t]['no']:,} no"
            for t in YES_NO_TYPES if t in balance[split]))
    return "\n".join(rows)


def examples_table(data: dict, n: int, seed: int) -> str:
    """`n` questions drawn with `seed`: image, type, question, answer, wrong choices (Markdown)."""
    pairs = [(image["filename"], image["split"], qa) for image in data["images"] for qa in image["qa_pairs"]]
    rows = ["| image | split | type | question | answer | wrong choices |", "| --- | --- | --- | --- | --- | --- |"]
    for filename, split, qa in random.Random(seed).sample(pairs, min(n, len(pairs))):
        rows.append(f"| {filename} | {split} | {qa['type']} | {qa['question']} | {qa['answer']} | "
                    f"{', '.join(qa['multiple_choices'])} |")
    return "\n".join(rows)


# ---- caption-words ------------------------------------------------------------------------------------
def flickr30k_photos(token_file: str | Path, exclude: set[str] = frozenset()) -> list[set[str]]:
    """The words of each photo's captions in a Flickr30k token file, leaving out the photos named in
    `exclude` (Flickr ids: "1000268201" for 1000268201.jpg and Flickr8k's 1000268201_693b08cb0e.jpg)."""
    photos: dict[str, set[str]] = defaultdict(set)
    with open(token_file, encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            name, tab, caption = line.rstrip("\n").partition("\t")
            if not tab or "#" not in name:
                raise DatasetError(f"{token_file}: line {n} is not <photo>.jpg#<n><TAB><caption>")
            photo = name.split("#", 1)[0].rsplit(".", 1)[0]
            if photo not in exclude:
                photos[photo].update(tokenize(caption))
    return [photos[p] for p in sorted(photos)]


def caption_words(args: argparse.Namespace) -> dict[str, list[str]]:
    exclude: set[str] = set()
    if args.exclude:
        path = Path(args.exclude)
        exclude = {str(e.get("filename", "")).split("_", 1)[0].rsplit(".", 1)[0]
                   for e in list_field(read_json(path), "images", path) if isinstance(e, dict)}
    photos = flickr30k_photos(args.flickr30k, exclude)
    evidence = derive_evidence(photos)
    out = Path(args.out)
    out.write_text(words_module(evidence, len(photos)), encoding="utf-8")
    print(f"{out}: evidence words of {len(evidence)} objects from {len(photos):,} photos "
          f"({sum(map(len, evidence.values())):,} words)")
    return evidence


def words_module(evidence: dict[str, list[str]], photos: int) -> str:
    """The text of `caption_qa_words.py`: EVIDENCE as frozensets, lines of at most 110 characters."""
    lines = ['"""Words that suggest an object of `caption_qa_lexicon.PRESENCE` is in a photo even when no caption names',
             "it: a \"no\" to \"Is there a ...?\" is never asked about a photo whose captions use one of them.",
             "",
             f"Derived by `vqa prepare caption-words` (`caption_qa_broader.derive_evidence`) from the captions of {photos:,}",
             "Flickr30k photos (those that are not Flickr8k photos); regenerate rather than edit:",
             "",
             "    vqa prepare caption-words --flickr30k FLICKR30K/results_20130124.token \\",
             '        --exclude data/flickr8k/dataset_flickr8k.json"""',
             "",
             "EVIDENCE: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in {"]
    for obj in sorted(evidence):
        words, line = evidence[obj], f'    "{obj}": "'
        if not words:
            lines.append(line + '",')
            continue
        chunk: list[str] = []
        for word in words:
            if len(line) + len(" ".join(chunk + [word])) + 3 > 110:
                lines.append(line + " ".join(chunk) + ' "')
                line, chunk = '        "', []
            chunk.append(word)
        lines.append(line + " ".join(chunk) + '",')
    lines.append("}.items()}")
    return "\n".join(lines) + "\n"
