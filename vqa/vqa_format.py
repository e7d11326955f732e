"""VQA v2 in its official layout (visualqa.org): a questions file, an annotations file (none for the test
splits, whose answers are not public) and COCO images. Every problem is one line naming file and entry.

Questions (v2_OpenEnded_mscoco_val2014_questions.json): {"info", "task_type", "data_type",
"data_subtype": "val2014", "license", "questions": [{"image_id", "question", "question_id"}]}.
Annotations (v2_mscoco_val2014_annotations.json): {"info", "data_type", "data_subtype", "license",
"annotations": [{"question_id", "image_id", "question_type", "answer_type", "multiple_choice_answer",
"answers": [{"answer", "answer_confidence", "answer_id"}, ... (10)]}]}.
Images: `images / "COCO_val2014_000000000042.jpg"`, or any `image_pattern` over {image_id} and {data_subtype}
(test-dev2015 asks about test2015 images: its {data_subtype} is theirs, "COCO_test2015_...").

Each question becomes a `QA` whose answer is the multiple_choice_answer (what training teaches), whose
`answers` are the 10 human answers (what the official accuracy scores against), typed by its
answer_type; VQA v2 has no wrong choices, so there is no multiple choice."""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

from captioning.config import shown
from captioning.data.annotations import DatasetError, EntryError, Skips, inside, read_json, require
from captioning.vocab import tokenize

from .config import QATask
from .data import QA, SPLITS, QADataset

DEFAULT_IMAGE_PATTERN = "COCO_{data_subtype}_{image_id:012d}.jpg"
ANSWER_TYPES = ("yes/no", "number", "other")


def subtype_split(data_subtype: Any) -> str | None:
    """The split a data_subtype names: train2014 -> train, val2014 -> val, test2015 / test-dev2015 -> test."""
    if isinstance(data_subtype, str):
        for split in SPLITS:
            if data_subtype.lower().startswith(split):
                return split
    return None


def image_subtype(data_subtype: Any) -> Any:
    """The data_subtype the images are named by: test-dev2015's questions are about test2015 images."""
    return data_subtype.replace("test-dev", "test") if isinstance(data_subtype, str) else data_subtype


def check_image_pattern(pattern: str) -> str:
    """`pattern` if it formats an image id (and optionally the data_subtype) into a file name."""
    fields = {name.split(".")[0].split("[")[0] for _, name, _, _ in _parse(pattern) if name is not None}
    if "image_id" not in fields:
        raise DatasetError(f"--image-pattern {shown(pattern)} names no {{image_id}} "
                           f"(e.g. {DEFAULT_IMAGE_PATTERN!r} or '{{image_id}}.jpg')")
    unknown = sorted(fields - {"image_id", "data_subtype"})
    if unknown:
        raise DatasetError(f"--image-pattern {shown(pattern)}: unknown field {{{unknown[0]}}} "
                           "(it may use {image_id} and {data_subtype})")
    try:
        pattern.format(image_id=42, data_subtype="val2014")
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise DatasetError(f"--image-pattern {shown(pattern)}: not a format pattern ({exc})") from None
    return pattern


def _parse(pattern: str) -> list:
    try:
        return list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise DatasetError(f"--image-pattern {shown(pattern)}: not a format pattern ({exc})") from None


def _records(path: Path, key: str, other: str, other_flag: str) -> tuple[dict, list]:
    """(the file's top-level object, its `key` list); the other file of the pair given here is named as such."""
    data = read_json(path)
    if isinstance(data, dict) and not isinstance(data.get(key), list) and isinstance(data.get(other), list):
        raise DatasetError(f"{path}: a VQA {other} file, not a {key} file (pass it as {other_flag})")
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DatasetError(f'{path}: expected a JSON object with a "{key}" list (a VQA v2 {key} file)')
    return data, data[key]


def _question(entry: Any, where: str) -> tuple[int, int, str]:
    question_id = require(entry, "question_id", int, where)
    image_id = require(entry, "image_id", int, where)
    question = require(entry, "question", str, where)
    if not tokenize(question):
        raise EntryError(where, f"the question has no words: {shown(question)}", "malformed entries")
    return question_id, image_id, question


def _annotation(entry: Any, where: str) -> tuple[int, int, str, str, str, tuple[str, ...]]:
    question_id = require(entry, "question_id", int, where)
    image_id = require(entry, "image_id", int, where)
    question_type = require(entry, "question_type", str, where)
    answer_type = require(entry, "answer_type", str, where)
    answer = require(entry, "multiple_choice_answer", str, where)
    given = require(entry, "answers", list, where)
    if not given:
        raise EntryError(where, '"answers" is empty', "malformed entries")
    answers = tuple(require(a, "answer", str, f"{where}.answers[{k}]") for k, a in enumerate(given))
    return question_id, image_id, question_type, answer_type, answer, answers


def load_vqa_v2(questions: str | Path, annotations: str | Path | None, images: str | Path, *,
                image_pattern: str | None = None, split: str | None = None, val_holdout: float = 0.0,
                seed: int = 0, skip_invalid: bool = False, check_files: bool = True) -> QADataset:
    """Read a VQA v2 questions file and (except for a test split) its annotations.

    `split`: the split of every question; by default the one the file's data_subtype names, and for a
    train file a seeded `val_holdout` share of its images becomes the val split (as for easy-VQA). A bad
    entry stops with one line naming file and entry; with `skip_invalid` it is skipped and counted.
    Missing images are all counted first, so the one line says how many."""
    qpath, folder = Path(questions), Path(images).absolute()
    pattern = check_image_pattern(image_pattern or DEFAULT_IMAGE_PATTERN)
    if split is not None and split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    qdata, entries = _records(qpath, "questions", "annotations", "--annotations")
    subtype = qdata.get("data_subtype")
    own = subtype_split(subtype)
    if split is None and own is None:
        raise DatasetError(f"{qpath}: data_subtype {shown(subtype)} names no split (train2014, val2014, "
                           "test2015, test-dev2015): say which it is (vqa train --questions-split, "
                           "vqa evaluate --split)")
    if "{data_subtype" in pattern and not isinstance(subtype, str):
        raise DatasetError(f'{qpath}: no "data_subtype" to name the images by ({pattern!r}); '
                           "give --image-pattern, e.g. '{image_id}.jpg'")
    skips = Skips(str(qpath), skip_invalid)
    asked = _read_questions(entries, skips)
    known: dict[int, tuple[str, str, str, tuple[str, ...]]] = {}  # question_id -> annotation
    if annotations is not None:
        known = _read_annotations(Path(annotations), asked, subtype, qpath, skip_invalid)
        for question_id in [q for q in asked if q not in known]:
            skips(EntryError(f"questions[{asked[question_id][2]}]", f"question_id {question_id} has no "
                             f"annotation in {Path(annotations).name}", "questions without annotations"))
            del asked[question_id]
    files = _image_files(asked, folder, pattern, image_subtype(subtype), skips, check_files)

    held: set[int] = set()
    if split is None and own == "train" and val_holdout > 0:
        ordered = sorted(files)
        held = set(random.Random(f"vqa-v2-val-{seed}").sample(ordered, round(val_holdout * len(ordered))))
    label = image_subtype(subtype) if isinstance(subtype, str) else split  # an image's key: the same in every file
    out: list[QA] = []
    for question_id, (image_id, question, _) in asked.items():
        if image_id not in files:
            continue  # skipped: its image is missing
        in_split, key = split or ("val" if image_id in held else own), f"vqa:{label}/{image_id}"
        if question_id in known:
            question_type, answer_type, answer, answers = known[question_id]
            out.append(QA(question_id, key, in_split, answer_type, question, answer, [answer], answers, question_type,
                          answer_type))
        else:  # a test question: no answer to learn or score, only one to give
            out.append(QA(question_id, key, in_split, "", question, None, []))
    seen = {q.type for q in out if q.answer is not None}
    types = [t for t in ANSWER_TYPES if t in seen] + sorted(seen - set(ANSWER_TYPES))
    return QADataset(QATask.TELLING, out, {f"vqa:{label}/{i}": f for i, f in files.items()}, {}, types)


def _read_questions(entries: list, skips: Skips) -> dict[int, tuple[int, str, int]]:
    """question_id -> (image_id, question, entry index), each checked."""
    asked: dict[int, tuple[int, str, int]] = {}
    for i, entry in enumerate(entries):
        where = f"questions[{i}]"
        try:
            question_id, image_id, question = _question(entry, where)
            if question_id in asked:
                raise EntryError(where, f"duplicate question_id {question_id} (also questions[{asked[question_id][2]}])",
                                 "duplicate ids")
        except EntryError as error:
            skips(error)
            continue
        asked[question_id] = (image_id, question, i)
    return asked


def _image_files(asked: dict[int, tuple[int, str, int]], folder: Path, pattern: str, subtype: Any, skips: Skips,
                 check_files: bool) -> dict[int, Path]:
    """image_id -> file of every image the questions ask about; missing ones are counted, then reported in
    one line (or skipped, with their questions)."""
    files: dict[int, Path] = {}
    checked: set[int] = set()
    for image_id, _, i in asked.values():
        if image_id in checked:
            continue
        checked.add(image_id)
        where = f"questions[{i}]"
        try:
            file = inside(folder, folder / pattern.format(image_id=image_id, data_subtype=subtype), where)
            if check_files and not file.is_file():
                raise EntryError(where, f"image file not found: {file}", Skips.MISSING)
            files[image_id] = file
        except EntryError as error:
            skips(error)
    skips.report(len(checked))
    return files


def _read_annotations(path: Path, asked: dict[int, tuple[int, str, int]], subtype: Any, questions: Path,
                      skip_invalid: bool) -> dict[int, tuple[str, str, str, tuple[str, ...]]]:
    """question_id -> (question_type, answer_type, multiple_choice_answer, human answers), each checked
    against the question it annotates."""
    data, entries = _records(path, "annotations", "questions", "--questions")
    theirs = data.get("data_subtype")
    if isinstance(theirs, str) and isinstance(subtype, str) and theirs != subtype:
        raise DatasetError(f"{path}: annotations of {shown(theirs)}, but {questions.name} holds {shown(subtype)} "
                           "questions")
    skips = Skips(str(path), skip_invalid)
    known: dict[int, tuple[str, str, str, tuple[str, ...]]] = {}
    for i, entry in enumerate(entries):
        where = f"annotations[{i}]"
        try:
            question_id, image_id, question_type, answer_type, answer, answers = _annotation(entry, where)
            if question_id in known:
                raise EntryError(where, f"a second annotation of question_id {question_id}", "duplicate ids")
            if question_id not in asked:
                raise EntryError(where, f"question_id {question_id} is not in {questions.name}",
                                 "annotations of unknown questions")
            if image_id != asked[question_id][0]:
                raise EntryError(where, f"image_id {image_id}, but question {question_id} is about image "
                                 f"{asked[question_id][0]} in {questions.name}", "malformed entries")
        except EntryError as error:
            skips(error)
            continue
        known[question_id] = (question_type, answer_type, answer, answers)
    skips.report()
    return known
