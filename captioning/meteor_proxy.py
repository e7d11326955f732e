"""A METEOR-style sentence score in Python, fast enough to be an SCST reward (the official METEOR 1.5 is a
Java process: fine for evaluation, too slow to call 400 times a step).

It follows METEOR's formula (Denkowski & Lavie 2014, the English defaults): words are aligned exact first
(weight 1.0), then by Porter stem (0.6); content words count delta = 0.75 and function words 1 - delta;

    P, R = weighted matches / weighted length (of the caption, of the reference)
    Fmean = P R / (alpha P + (1 - alpha) R)          alpha = 0.85 (recall weighs most)
    score = Fmean (1 - gamma (chunks / matches)^beta)  gamma = 0.6, beta = 0.2 (no penalty for a caption
                                                       matched word for word, in order, to its whole reference)

and the best reference wins. What it leaves out: WordNet synonyms and the paraphrase table (not
installable offline), and METEOR's exhaustive search for the alignment with fewest chunks (a greedy
left-to-right alignment that prefers continuing the previous chunk). It is a reward, never a reported
figure: `captioning evaluate` reports the official METEOR."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from nltk.stem.porter import PorterStemmer

from .vocab import tokenize

ALPHA, BETA, GAMMA, DELTA = 0.85, 0.2, 0.6, 0.75
STEM_WEIGHT = 0.6

# English function words (articles, prepositions, pronouns, auxiliaries, conjunctions): they count 1 - delta
FUNCTION_WORDS = frozenset("""
a an the this that these those some any each another other such
of in on at to for from by with without into onto over under above below near next behind beside between
through across along around against up down out off about while as than then there here
and or but nor so if because
is are was were be been being am has have had do does did can could will would should may might must
it its he she they them his her their him we us our you your i me my who whom which what whose
""".split())


_STEMMER = PorterStemmer()  # needs no nltk data


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _STEMMER.stem(word)


def _weight(word: str) -> float:
    return 1.0 - DELTA if word in FUNCTION_WORDS else DELTA


def _align(hyp: Sequence[str], ref: Sequence[str]) -> list[tuple[int, int, float]]:
    """(hyp index, ref index, match weight) pairs, one-to-one: exact matches, then stems of the rest."""
    ref_used = [False] * len(ref)
    hyp_match: dict[int, int] = {}
    pairs = []
    for keys_h, keys_r, weight in ((hyp, ref, 1.0),
                                   ([_stem(w) for w in hyp], [_stem(w) for w in ref], STEM_WEIGHT)):
        for i, key in enumerate(keys_h):
            if i in hyp_match:
                continue
            free = [j for j, other in enumerate(keys_r) if not ref_used[j] and other == key]
            if not free:
                continue
            after = hyp_match.get(i - 1, -2) + 1  # continuing the previous word's chunk, if free
            j = after if after in free else min(free, key=lambda j: abs(j - i * len(ref) / len(hyp)))
            ref_used[j] = True
            hyp_match[i] = j
            pairs.append((i, j, weight))
    return sorted(pairs)


def sentence_score(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """The METEOR-style score of token lists `hyp` against one reference `ref` (module docstring)."""
    if not hyp or not ref:
        return 0.0
    pairs = _align(hyp, ref)
    if not pairs:
        return 0.0
    precision = sum(w * _weight(hyp[i]) for i, _, w in pairs) / sum(map(_weight, hyp))
    recall = sum(w * _weight(ref[j]) for _, j, w in pairs) / sum(map(_weight, ref))
    fmean = precision * recall / (ALPHA * precision + (1 - ALPHA) * recall)
    chunks = 1 + sum(1 for (i0, j0, _), (i1, j1, _) in zip(pairs, pairs[1:]) if i1 != i0 + 1 or j1 != j0 + 1)
    if chunks == 1 and len(pairs) == len(hyp) == len(ref):
        return fmean  # METEOR's rule: a caption matched word for word in order has no fragmentation
    return fmean * (1 - GAMMA * (chunks / len(pairs)) ** BETA)


def meteor_proxy(caption: str, references: Sequence[str]) -> float:
    """Best `sentence_score` of `caption` over `references` (regex tokens, as the vocabulary's)."""
    hyp = tokenize(caption)
    return max((sentence_score(hyp, tokenize(r)) for r in references), default=0.0)
