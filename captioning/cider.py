"""CIDEr-D (Vedantam et al. 2015) as pycocoevalcap's `Cider` computes it, with the document
frequencies as an argument: self-critical training rewards a caption against its image's references
with the n-gram statistics of the whole training split, while evaluation takes them from the scored
references themselves (`CiderD.from_references`, exactly `pycocoevalcap.cider.cider.Cider`).

Per n (1..4): tf-idf vectors g_n(s)[w] = tf(w, s) * (log N - log max(1, df(w))); the clipped cosine
sum_w min(g(c)[w], g(r)[w]) g(r)[w] / (|g(c)| |g(r)|), times exp(-delta^2 / (2 sigma^2)); averaged over
n and over the references, times 10. delta is the difference in *bigram* counts (words - 1), as in
pycocoevalcap's code (its `length` counts 2-grams); kept so the scores agree to 1e-6."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from . import checkpoint as ckpt
from .vocab import tokenize

FORMAT = "showtell-cider-df/1"
Ngram = tuple[str, ...]


def ngram_counts(words: Sequence[str], n: int = 4) -> Counter:
    """Every 1..n-gram of `words` with its count."""
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def caption_words(text: str) -> list[str]:
    """The words CIDEr compares: `captioning.vocab.tokenize` (as `metrics.regex_tokenized` scores)."""
    return tokenize(text)


class Vector:
    """A sentence's tf-idf vectors, one dict per n-gram order, their norms and its bigram count."""

    __slots__ = ("grams", "norms", "length")

    def __init__(self, counts: Mapping[Ngram, int], idf: Mapping[Ngram, float] | None, log_n: float, n: int):
        self.grams: list[dict[Ngram, float]] = [{} for _ in range(n)]
        squares = [0.0] * n
        self.length = 0
        for gram, tf in counts.items():
            order = len(gram) - 1
            weight = float(tf) * (log_n - (idf.get(gram, 0.0) if idf is not None else 0.0))
            self.grams[order][gram] = weight
            squares[order] += weight * weight
            if order == 1:  # pycocoevalcap's length: the number of bigrams
                self.length += tf
        self.norms = [math.sqrt(s) for s in squares]


class CiderD:
    """CIDEr-D with given document frequencies: `df[ngram]` = in how many images' reference sets it
    occurs, out of `num_documents` images."""

    def __init__(self, document_frequency: Mapping[Ngram, float], num_documents: int, *, n: int = 4,
                 sigma: float = 6.0):
        if num_documents < 1:
            raise ValueError(f"CIDEr-D needs at least one reference set, got {num_documents}")
        self.n, self.sigma, self.num_documents = n, sigma, num_documents
        self.document_frequency = dict(document_frequency)
        self.log_n = math.log(float(num_documents))
        self.log_df = {g: math.log(max(1.0, f)) for g, f in self.document_frequency.items()}
        self._refs: dict[object, list[Vector]] = {}  # cached reference vectors by image key

    # ---- document frequencies ------------------------------------------------------------------
    @classmethod
    def from_references(cls, references: Iterable[Sequence[str]], *, n: int = 4, sigma: float = 6.0) -> CiderD:
        """Document frequencies of these reference sets (one per image, captions as text)."""
        df: Counter = Counter()
        count = 0
        for refs in references:
            grams: set[Ngram] = set()
            for ref in refs:
                grams.update(ngram_counts(caption_words(ref), n))
            df.update(grams)
            count += 1
        return cls(df, count, n=n, sigma=sigma)

    def save(self, path: str | os.PathLike) -> Path:
        """The document frequencies as JSON (n-grams joined by spaces), written atomically."""
        data = {"format": FORMAT, "n": self.n, "sigma": self.sigma, "num_documents": self.num_documents,
                "df": {" ".join(g): f for g, f in self.document_frequency.items()}}
        ckpt.write_json_atomic(Path(path), data)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CiderD:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise ValueError(f"{path}: unreadable document-frequency file ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} document-frequency file")
        df = {tuple(g.split(" ")): float(f) for g, f in data["df"].items()}
        return cls(df, int(data["num_documents"]), n=int(data["n"]), sigma=float(data["sigma"]))

    # ---- scores ---------------------------------------------------------------------------------
    def vector(self, text: str) -> Vector:
        return Vector(ngram_counts(caption_words(text), self.n), self.log_df, self.log_n, self.n)

    def references(self, key: object, refs: Sequence[str]) -> list[Vector]:
        """The reference vectors of image `key`, computed once."""
        vectors = self._refs.get(key)
        if vectors is None:
            vectors = self._refs[key] = [self.vector(r) for r in refs]
        return vectors

    def similarity(self, hyp: Vector, ref: Vector) -> float:
        """sum over n of the clipped, length-penalised cosine (pycocoevalcap's `sim`)."""
        penalty = math.exp(-float(hyp.length - ref.length) ** 2 / (2 * self.sigma ** 2))
        total = 0.0
        for order in range(self.n):
            h, r = hyp.grams[order], ref.grams[order]
            value = sum(min(w, r.get(g, 0.0)) * r.get(g, 0.0) for g, w in h.items())
            if hyp.norms[order] != 0 and ref.norms[order] != 0:
                value /= hyp.norms[order] * ref.norms[order]
            total += value * penalty
        return total

    def score(self, hypothesis: str, refs: Sequence[str], key: object | None = None) -> float:
        """CIDEr-D of one caption against its image's references (`key`: cache them under it)."""
        ref_vectors = self.references(key, refs) if key is not None else [self.vector(r) for r in refs]
        hyp = self.vector(hypothesis)
        return sum(self.similarity(hyp, r) for r in ref_vectors) / self.n / len(ref_vectors) * 10.0

    def corpus_score(self, references: Mapping[object, Sequence[str]],
                     hypotheses: Mapping[object, str]) -> tuple[float, list[float]]:
        """(mean, per-image scores) over the hypotheses' images, like `Cider().compute_score`."""
        scores = [self.score(hypotheses[i], references[i]) for i in hypotheses]
        return (sum(scores) / len(scores) if scores else 0.0), scores


def cider_d(references: Mapping[object, Sequence[str]], hypotheses: Mapping[object, str]) -> float:
    """Corpus CIDEr-D with the references' own document frequencies (what `captioning evaluate` reports)."""
    ids = list(hypotheses)
    scorer = CiderD.from_references(references[i] for i in ids)
    return scorer.corpus_score({i: references[i] for i in ids}, hypotheses)[0]

