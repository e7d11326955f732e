"""Tokenizer and vocabulary: offline, deterministic, saved as plain JSON."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from .small_files import MAX_VOCAB_BYTES, read_small_text

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

# Words are runs of letters/digits, keeping inner apostrophes and hyphens ("don't", "t-shirt").
# nltk's punkt tokenizer needs data that cannot be downloaded offline, so a regex does the job;
# it matches how COCO references are usually tokenized (lower case, punctuation dropped).
_WORD = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-case words of `text`, punctuation removed."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Maps words to ids; ids 0-3 are always <pad>, <start>, <end>, <unk>.

    counts (optional): how often each word occurs in the training captions, so a model can tell what it
    has rarely seen; 0 marks a word added after training (`captioning.new_words`), said only when guided."""

    def __init__(self, words: Sequence[str], counts: Sequence[int] | None = None):
        words = list(words)
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}, got {words[:4]}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary contains duplicate words")
        if counts is not None:
            counts = list(counts)
            if len(counts) != len(words) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                    for n in counts):
                raise ValueError("vocabulary counts must be one non-negative integer per word")
        self.words = words
        self.counts = counts
        self.index = {w: i for i, w in enumerate(words)}

    def count(self, word: str) -> int | None:
        """Training occurrences of `word` (0 when it is not in the vocabulary), None when not recorded."""
        if self.counts is None:
            return None
        return self.counts[self.index[word]] if word in self.index else 0

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, texts: Iterable[str | Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> Vocabulary:
        """Words seen at least `min_freq` times, most frequent first (ties alphabetical)."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text) if isinstance(text, str) else text)
        for special in SPECIALS:
            counts.pop(special, None)
        kept = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *kept], [0] * len(SPECIALS) + [counts[w] for w in kept])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def encode(self, text: str | Sequence[str], add_start_end: bool = True) -> list[int]:
        """Token ids, unknown words mapped to <unk>."""
        tokens = tokenize(text) if isinstance(text, str) else list(text)
        ids = [self.index.get(t, self.unk_id) for t in tokens]
        return [self.start_id, *ids, self.end_id] if add_start_end else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first <end>, without <start>/<pad>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.pad_id, self.start_id):
                continue
            out.append(self.words[i] if 0 <= i < len(self.words) else UNK)
        return out

    @property
    def fingerprint(self) -> str:
        """sha256 of the words in order: saved in the weights' metadata, so a vocab.json whose words were
        reordered or swapped is caught at load (the weights' rows belong to the words by position)."""
        return hashlib.sha256(json.dumps(self.words, ensure_ascii=False).encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        data: dict = {"words": self.words}
        if self.counts is not None:
            data["counts"] = self.counts
        return json.dumps(data, ensure_ascii=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("words"), list):
            raise ValueError('vocabulary JSON must be an object with a "words" list')
        if not all(isinstance(w, str) for w in data["words"]):
            raise ValueError("vocabulary words must all be strings")
        counts = data.get("counts")
        if counts is not None and not isinstance(counts, list):
            raise ValueError('vocabulary "counts" must be a list')
        return cls(data["words"], counts)

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        try:
            text = read_small_text(path, "vocabulary file", MAX_VOCAB_BYTES)
        except ValueError as exc:  # too large, a pipe or a device (UnicodeDecodeError below)
            if isinstance(exc, UnicodeDecodeError):
                raise ValueError(f"{path}: invalid vocabulary file: not UTF-8") from None
            raise
        try:
            return cls.from_json(text)
        except (json.JSONDecodeError, ValueError, RecursionError) as exc:
            raise ValueError(f"{path}: invalid vocabulary file: {str(exc)[:200]}") from None
