"""Fill the stand-in column of `caption_words.tsv`: for each caption word, a common caption word of the
same kind that occurs in similar contexts (a decoder that never learnt the word says it the way it says the
stand-in, `captioning.new_words`).

    python -m captioning.lexicon.derive_stand_ins --flickr30k results_20130124.token \
        --karpathy dataset_flickr8k.json

Similarity is the cosine of positive-PMI context vectors (two words either side) over the human captions.
Candidates are the table's words of the same kind that the captions use at least COMMON times; a word seen
fewer than RARE times, or with no candidate of its kind, gets the most common word of its kind (or none).
A stand-in already in the table (one reviewed by hand) is kept: only empty cells are filled."""

from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict
from pathlib import Path

from .derive_endings import caption_texts
from .tags import CAPTION_WORDS

WINDOW, COMMON, RARE = 2, 100, 5


def context_vectors(captions: list[list[str]], words: set[str]) -> dict[str, dict[str, float]]:
    """Positive PMI of each word in `words` with the words around it."""
    pairs: dict[str, Counter] = defaultdict(Counter)
    contexts: Counter = Counter()
    for tokens in captions:
        for i, word in enumerate(tokens):
            around = tokens[max(0, i - WINDOW):i] + tokens[i + 1:i + 1 + WINDOW]
            contexts.update(around)
            if word in words:
                pairs[word].update(around)
    total = sum(contexts.values())
    vectors = {}
    for word, counts in pairs.items():
        n = sum(counts.values())
        vectors[word] = {c: pmi for c, k in counts.items()
                         if (pmi := math.log(k * total / (n * contexts[c]))) > 0}
    return vectors


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flickr30k", type=Path, help="Flickr30k's results_20130124.token")
    parser.add_argument("--karpathy", type=Path, help="a Karpathy split file; its train captions are read")
    parser.add_argument("--table", type=Path, default=CAPTION_WORDS)
    args = parser.parse_args(argv)
    captions = caption_texts(args.flickr30k, args.karpathy)
    uses = Counter(w for tokens in captions for w in tokens)
    lines = args.table.read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    kinds = {row[0]: row[1] for row in rows}
    vectors = context_vectors(captions, set(kinds))
    common = defaultdict(list)
    for word, kind in kinds.items():
        if uses[word] >= COMMON:
            common[kind].append(word)
    out = [line for line in lines if line.startswith("#")]
    for row in rows:
        word, kind, forms = row[0], row[1], row[2] if len(row) > 2 else ""
        candidates = [c for c in common[kind] if c != word]
        if len(row) > 3 and row[3]:
            stand_in = row[3]
        elif word in common[kind]:
            stand_in = word
        elif uses[word] >= RARE and word in vectors and candidates:
            stand_in = max(candidates, key=lambda c: (cosine(vectors[word], vectors.get(c, {})), uses[c]))
        else:
            stand_in = max(candidates, key=lambda c: uses[c], default="")
        out.append("\t".join([word, kind, forms, stand_in]))
    args.table.write_text("\n".join(out) + "\n", encoding="utf-8")
    print(f"{args.table}: stand-ins for {len(rows)} words")


if __name__ == "__main__":
    main()
