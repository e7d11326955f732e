"""Caption metrics as the COCO toolkit computes them (pycocoevalcap), with offline fallbacks.

BLEU-1..4, METEOR, ROUGE-L, CIDEr and (when its Stanford models are installed) SPICE are scored
on PTB-tokenized text like the official coco-caption code; the PTB tokenizer and METEOR run on
Java, so without Java the regex tokenizer of `captioning.vocab` stands in and METEOR is skipped,
each with a note. nltk's corpus BLEU-4 is reported beside pycocoevalcap's for comparison (the
two differ slightly: nltk uses the closest reference length per corpus, coco-caption per image)."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data.annotations import list_field, read_json, regular_file
from .vocab import tokenize

Refs = Mapping[Any, Sequence[str]]
Hyps = Mapping[Any, str]
METRIC_ORDER = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE", "nltk_BLEU_4")


@dataclass
class Scores:
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    tokenizer: str = "ptb"

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "tokenizer": self.tokenizer, "notes": self.notes}

    def lines(self) -> list[str]:
        width = max(len(k) for k in METRIC_ORDER)
        out = [f"{k:<{width}}  {self.metrics[k]:.4f}" for k in METRIC_ORDER if k in self.metrics]
        return out + [f"note: {n}" for n in self.notes]


def java_available() -> bool:
    return shutil.which("java") is not None


def _check(references: Refs, hypotheses: Hyps) -> list:
    ids = sorted(hypotheses, key=str)
    if not ids:
        raise ValueError("no captions to score")
    missing = [i for i in ids if not any(tokenize(str(r)) for r in references.get(i) or [])]
    if missing:
        raise ValueError(f"{len(missing)} captioned images have no reference captions with words "
                         f"(e.g. {missing[0]!r})")
    return ids


def regex_tokenized(references: Refs, hypotheses: Hyps, ids: list) -> tuple[dict, dict]:
    gts = {i: [" ".join(tokenize(r)) for r in references[i]] for i in ids}
    res = {i: [" ".join(tokenize(hypotheses[i]))] for i in ids}
    return gts, res


def one_line(text: str) -> str:
    """`text` with every line or paragraph separator (\\r, U+2028, U+0085, ...) made a space: the PTB
    tokenizer passes captions to Java one per line, so one "\\r" inside a caption would shift every later
    caption onto another image's references."""
    return " ".join(str(text).splitlines())


def ptb_tokenized(references: Refs, hypotheses: Hyps, ids: list) -> tuple[dict, dict]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": one_line(r)} for r in references[i]] for i in ids})
    res = tokenizer.tokenize({i: [{"caption": one_line(hypotheses[i])}] for i in ids})
    if any(len(gts[i]) != len(references[i]) or len(res[i]) != 1 for i in ids):  # never silently misaligned
        raise ValueError("the PTB tokenizer returned another number of captions than it was given")
    return gts, res


def bleu4(references: Refs, hypotheses: Hyps) -> float:
    """pycocoevalcap BLEU-4 on regex-tokenized text: the fast validation score used while training."""
    from pycocoevalcap.bleu.bleu import Bleu

    ids = _check(references, hypotheses)
    gts, res = regex_tokenized(references, hypotheses, ids)
    score, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return float(score[3])


def nltk_bleu4(gts: dict, res: dict) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    ids = list(res)
    refs = [[r.split() for r in gts[i]] for i in ids]
    hyps = [res[i][0].split() for i in ids]
    with warnings.catch_warnings():  # "0 counts of 4-gram overlaps": the score is then 0, as it should be
        warnings.simplefilter("ignore", UserWarning)
        return float(corpus_bleu(refs, hyps, smoothing_function=SmoothingFunction().method0))


def spice_available() -> bool:
    try:
        import pycocoevalcap.spice.spice as spice_module
    except ImportError:
        return False
    lib = Path(spice_module.__file__).parent / "lib"
    return java_available() and (lib / "stanford-corenlp-3.6.0.jar").is_file() \
        and (lib / "stanford-corenlp-3.6.0-models.jar").is_file()


def score_captions(references: Refs, hypotheses: Hyps, *, use_java: bool | None = None,
                   spice: bool = True) -> Scores:
    """All COCO metrics for `hypotheses` {image_id: caption} against `references` {image_id: [captions]}."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    ids = _check(references, hypotheses)
    notes: list[str] = []
    if use_java is None:
        use_java = java_available()
        why = "Java not found"
    else:
        why = "Java not used"
    tokenizer = "ptb"
    gts = res = None
    if use_java:
        try:
            gts, res = ptb_tokenized(references, hypotheses, ids)
        except Exception as exc:  # a broken Java install must not cost the other metrics
            notes.append(f"PTB tokenizer failed ({type(exc).__name__}: {exc}); used the regex tokenizer")
    else:
        notes.append(f"{why}: regex tokenizer instead of the PTB tokenizer, METEOR and SPICE skipped "
                     "(scores may differ slightly from the official toolkit)")
    if gts is None:
        tokenizer = "regex"
        gts, res = regex_tokenized(references, hypotheses, ids)

    metrics: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    metrics.update({f"Bleu_{n + 1}": float(b) for n, b in enumerate(bleu)})
    if use_java:
        try:
            from pycocoevalcap.meteor.meteor import Meteor

            meteor = Meteor()
            metrics["METEOR"] = float(meteor.compute_score(gts, res)[0])
            meteor.meteor_p.kill()
        except Exception as exc:
            notes.append(f"METEOR skipped ({type(exc).__name__}: {exc})")
    metrics["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    metrics["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if spice and use_java and spice_available():
        try:
            from pycocoevalcap.spice.spice import Spice

            metrics["SPICE"] = float(Spice().compute_score(gts, res)[0])
        except Exception as exc:
            notes.append(f"SPICE skipped ({type(exc).__name__}: {exc})")
    elif spice and use_java:
        notes.append("SPICE skipped: needs Java and the Stanford CoreNLP 3.6.0 jars in pycocoevalcap/spice/lib "
                     "(python -m pycocoevalcap.spice.get_stanford_models downloads them)")
    metrics["nltk_BLEU_4"] = nltk_bleu4(gts, res)
    return Scores(metrics, notes, tokenizer)


def caption_entry(entry: dict[str, Any], where: str) -> tuple[Any, str]:
    """(image_id, caption) of one results or annotations entry; a ValueError naming `where` when the caption is
    not text or the id neither a number nor a string."""
    image_id, caption = entry["image_id"], entry["caption"]
    if not isinstance(caption, str):
        raise ValueError(f"{where}: the caption must be text, got {type(caption).__name__}")
    if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
        raise ValueError(f"{where}: image_id must be a number or a string, got {image_id!r}")
    return image_id, caption


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """A COCO results file: a JSON list of {"image_id", "caption"}."""
    regular_file(Path(path), "results file")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such results file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) and "image_id" in r and "caption" in r
                                             for r in data):
        raise ValueError(f'{path}: expected a JSON list of {{"image_id": ..., "caption": ...}} objects')
    if not data:
        raise ValueError(f"{path}: the results list is empty")
    seen: dict[Any, int] = {}
    for i, entry in enumerate(data):
        image_id, _ = caption_entry(entry, f"{path}: entry {i} (image_id {entry['image_id']!r})")
        if image_id in seen:
            raise ValueError(f"{path}: entry {i}: image_id {image_id!r} already has a caption (entry "
                             f"{seen[image_id]}); a results file holds one caption per image")
        seen[image_id] = i
    return data


def coco_references(annotations: str | Path) -> dict[Any, list[str]]:
    """{image_id: [captions]} of a COCO captions file, each entry checked (pycocotools would assert, or fail
    inside the tokenizer on a caption that is a number)."""
    data = read_json(Path(annotations))
    entries = list_field(data, "annotations", Path(annotations))
    references: dict[Any, list[str]] = {}
    for i, entry in enumerate(entries):
        where = f"{annotations}: annotations[{i}]"
        if not isinstance(entry, dict) or "image_id" not in entry or "caption" not in entry:
            raise ValueError(f'{where}: expected an object with "image_id" and "caption"')
        image_id, caption = caption_entry(entry, where)
        references.setdefault(image_id, []).append(caption)
    if not references:
        raise ValueError(f"{annotations}: holds no captions")
    return references


def score_results_file(results: str | Path, annotations: str | Path, *, use_java: bool | None = None) -> Scores:
    """Score a COCO results file against COCO caption annotations as coco-caption's COCOEvalCap does: every
    image of the results is scored. A note says when the results cover only some of the annotated images."""
    entries = load_results(results)
    references = coco_references(annotations)
    unknown = [e["image_id"] for e in entries if e["image_id"] not in references]
    if unknown:
        raise ValueError(f"{results}: {len(unknown)} of its image ids are not in {annotations} "
                         f"(e.g. {unknown[0]!r})")
    hypotheses = {e["image_id"]: e["caption"] for e in entries}
    try:
        scores = score_captions(references, hypotheses, use_java=use_java)
    except ValueError as exc:  # images whose references have no words: name the file they came from
        raise ValueError(f"{annotations}: {exc}") from None
    if len(hypotheses) < len(references):
        scores.notes.insert(0, f"the results caption {len(hypotheses)} of the {len(references)} images in "
                               f"{annotations}; only those are scored")
    return scores
