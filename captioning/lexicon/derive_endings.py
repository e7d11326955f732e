"""Regenerate `endings.tsv` and `end_pairs.tsv`: the words, and the word pairs, after which a caption may not stop.

    python -m captioning.lexicon.derive_endings --flickr30k results_20130124.token \
        --karpathy dataset_flickr8k.json --out captioning/lexicon/endings.tsv \
        --pairs-out captioning/lexicon/end_pairs.tsv

Two sources. The closed classes below (articles, prepositions, conjunctions, determiners and numbers)
never end an English description. Every other word is judged by how human caption writers use it: a
word seen at least MIN_COUNT times in the captions that ends fewer than MAX_END_RATE of them is one
that needs something after it (a verb's object: "holding", "wearing"; an adjective's noun: "young",
"little"; an auxiliary: "is"). Pairs: a word that may end a caption ("the car is red") may not end it
right after an article or determiner ("holding a red"), when it describes (people write "is red", "is
running" MIN_PREDICATIVE times or more; not "is boy", so "holding a boy" may end) and human captions end
fewer than MAX_END_RATE of that pair's uses (at least MIN_COUNT of them). Only the tables are committed, never the caption text."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from ..vocab import tokenize

ARTICLES = ("a", "an", "the")
PREPOSITIONS = ("about", "above", "across", "against", "along", "amid", "amidst", "among", "amongst", "around",
                "at", "atop", "beneath", "beside", "besides", "between", "beyond", "by", "despite", "during",
                "for", "from", "in", "into", "like", "near", "of", "on", "onto", "through", "throughout", "to",
                "toward", "towards", "under", "underneath", "upon", "via", "with", "within", "without")
CONJUNCTIONS = ("and", "as", "because", "but", "if", "nor", "or", "since", "so", "than", "that", "though",
                "unless", "until", "whereas", "whether", "which", "while", "whilst", "who", "whom", "whose")
DETERMINERS = ("another", "both", "each", "either", "every", "few", "her", "his", "its", "many", "my", "neither",
               "no", "our", "several", "some", "their", "these", "this", "those", "your",
               "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty")
CLOSED = {"article": ARTICLES, "preposition": PREPOSITIONS, "conjunction": CONJUNCTIONS, "determiner": DETERMINERS}
MIN_COUNT = 40        # enough uses to judge a word by
MAX_END_RATE = 0.005  # human captions end on it in under 0.5% of its uses
MIN_PREDICATIVE = 5   # a pair's word is an adjective or participle: seen this often right after "is"


def caption_texts(flickr30k: Path | None, karpathy: Path | None) -> list[list[str]]:
    """Tokenized captions: Flickr30k's token file (`photo#n<TAB>caption`) and a Karpathy file's train split."""
    captions = []
    if flickr30k is not None:
        for line in flickr30k.read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                captions.append(tokenize(line.split("\t", 1)[1]))
    if karpathy is not None:
        data = json.loads(karpathy.read_text(encoding="utf-8"))
        captions += [tokenize(s["raw"]) for image in data["images"] if image.get("split") == "train"
                     for s in image["sentences"]]
    return [c for c in captions if c]


def derive(captions: list[list[str]]) -> list[tuple[str, str, int, float]]:
    """(word, category, uses, share of uses that end a caption), closed classes first."""
    uses, endings = Counter(), Counter()
    for words in captions:
        uses.update(words)
        endings[words[-1]] += 1
    rows = []
    closed = {w: category for category, words in CLOSED.items() for w in words}
    for word in sorted(closed):
        rows.append((word, closed[word], uses[word], endings[word] / uses[word] if uses[word] else 0.0))
    for word in sorted(w for w, n in uses.items() if n >= MIN_COUNT and w not in closed):
        rate = endings[word] / uses[word]
        if rate < MAX_END_RATE:
            rows.append((word, "rarely final", uses[word], rate))
    return rows


def derive_pairs(captions: list[list[str]], no_end: set[str]) -> list[tuple[str, str, int, float]]:
    """(opener, word, uses, share of uses that end a caption): noun phrases left without their noun."""
    openers = set(ARTICLES) | set(DETERMINERS)
    uses, endings, predicative = Counter(), Counter(), Counter()
    for words in captions:
        predicative.update(b for a, b in zip(words, words[1:]) if a == "is")
        uses.update((a, b) for a, b in zip(words, words[1:]) if a in openers and b not in no_end)
        if len(words) > 1 and words[-2] in openers:
            endings[words[-2], words[-1]] += 1
    return [(a, b, n, endings[a, b] / n) for (a, b), n in sorted(uses.items())
            if n >= MIN_COUNT and endings[a, b] / n < MAX_END_RATE and predicative[b] >= MIN_PREDICATIVE]


def write_table(path: Path, rows: list[tuple[str, str, int, float]], title: str, flags: str, columns: str,
                captions: int) -> None:
    """One derived table: a commented header saying how it was made, then (key, key, uses, end share) rows."""
    header = [f"# {title}, derived from {captions} human captions by",
              f"# python -m captioning.lexicon.derive_endings{flags} (see its docstring for the rule).",
              f"# {columns}\tuses\tshare of uses that end a caption"]
    lines = [f"{a}\t{b}\t{n}\t{r:.4f}" for a, b, n, r in rows]
    path.write_text("\n".join(header + lines) + "\n", encoding="utf-8")
    print(f"{path}: {len(rows)} rows from {captions} captions")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flickr30k", type=Path, help="Flickr30k's results_20130124.token")
    parser.add_argument("--karpathy", type=Path, help="a Karpathy split file; its train captions are read")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pairs-out", type=Path, help="also write the word pairs a caption may not end on")
    args = parser.parse_args(argv)
    captions = caption_texts(args.flickr30k, args.karpathy)
    rows = derive(captions)
    write_table(args.out, rows, f"Words a caption may not end on ({len(rows)})", "", "word\tcategory", len(captions))
    if args.pairs_out is not None:
        pairs = derive_pairs(captions, {w for w, *_ in rows})
        write_table(args.pairs_out, pairs, f"Word pairs a caption may not end on ({len(pairs)})", " --pairs-out",
                    "opener\tword", len(captions))

if __name__ == "__main__":
    main()
