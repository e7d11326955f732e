"""Question-answer records from Visual7W (official JSON), easy-VQA (its PyPI package) and the
built-in shapes scenes (`captioning.data.shapes`). Every problem is one line naming file and entry.

Visual7W telling: {"images": [{"image_id", "filename", "split", "qa_pairs": [{"qa_id", "image_id",
"question", "answer", "multiple_choices": [3 wrong answers], "type"}]}]}. Pointing is the same with
box ids as "answer" and "multiple_choices", and a top-level "boxes": [{"box_id", "image_id", "x",
"y", "width", "height", "name"}] list."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captioning.config import shown
from captioning.data.annotations import (
    DatasetError,
    EntryError,
    Skips,
    file_and_split,
    inside,
    list_field,
    read_json,
    require,
)
from captioning.data.records import load_karpathy
from captioning.vocab import tokenize

from .config import SPLITS, QATask
from .shapes_questions import shapes_questions

VISUAL7W_TYPES = ("what", "where", "when", "who", "why", "how")
POINTING_TYPES = ("which",)
EASY_VQA_GROUPS = {"yes/no": ("yes", "no"), "shape": ("circle", "rectangle", "triangle"),
                   "color": ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")}


@dataclass(frozen=True)
class Box:
    box_id: int
    x: float
    y: float
    width: float
    height: float
    name: str = ""

    def corners(self, image_width: int, image_height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) clipped to the image, at least one pixel each way."""
        x0 = min(max(0, int(self.x)), image_width - 1)
        y0 = min(max(0, int(self.y)), image_height - 1)
        x1 = max(x0 + 1, round(min(max(self.x + self.width, 0), image_width)))  # clipped first: x + w may be inf
        y1 = max(y0 + 1, round(min(max(self.y + self.height, 0), image_height)))
        return x0, y0, x1, y1


@dataclass
class QA:
    qa_id: int | str
    image: str                  # key of `QADataset.images`
    split: str
    type: str                   # what | where | ... | which (Visual7W); color | shape | yes/no (easy-VQA) ...;
                                # VQA v2: its answer_type (yes/no | number | other)
    question: str
    answer: str | int | None    # text (telling) or box id (pointing); None: unknown (a VQA v2 test question)
    candidates: list            # the answer and the wrong choices in a fixed shuffled order (VQA v2: [answer])
    answers: tuple[str, ...] = ()  # every human answer where the data hold several (VQA v2: 10), scored with
                                   # the official VQA accuracy; () where one answer is right (exact match)
    question_type: str = ""     # VQA v2's question_type ("what color is the", "how many"); "" elsewhere
    answer_type: str = ""       # VQA's answer type (yes/no | number | other) where the data give it

    @property
    def answer_index(self) -> int:
        return self.candidates.index(self.answer)


@dataclass
class QADataset:
    task: QATask
    questions: list[QA]
    images: dict[str, Path]                              # image key -> file
    boxes: dict[int, Box] = field(default_factory=dict)  # pointing only
    types: list[str] = field(default_factory=list)       # question types in table order

    def split(self, name: str) -> list[QA]:
        return [q for q in self.questions if q.split == name]

    def merge(self, other: QADataset) -> QADataset:
        if other.task != self.task:
            raise DatasetError(f"cannot mix {self.task.value} and {other.task.value} questions")
        types = self.types + [t for t in other.types if t not in self.types]
        return QADataset(self.task, self.questions + other.questions, {**self.images, **other.images},
                         {**self.boxes, **other.boxes}, types)


def normalize(answer: str) -> str:
    """What exact match compares: lower-case words, punctuation dropped ("On a bench." -> "on a bench")."""
    return " ".join(tokenize(answer))


def shuffled(items: list, key: str) -> list:
    """`items` in an order fixed by `key` (the same on every machine and run)."""
    items = list(items)
    random.Random(key).shuffle(items)
    return items


# ---- Visual7W ------------------------------------------------------------------------------------
def load_visual7w(annotations: str | Path, images: str | Path, task: QATask | str, *, skip_invalid: bool = False,
                  check_files: bool = True) -> QADataset:
    """Read `dataset_v7w_telling.json` or `dataset_v7w_pointing.json`; images are `images / filename`.

    A bad entry stops with one line naming file and entry; with `skip_invalid` it is skipped (with the
    questions it holds) and the skips are summarised in one log line, as `captioning train` does."""
    path, folder, task = Path(annotations), Path(images).absolute(), QATask(task)
    data = read_json(path)
    entries = list_field(data, "images", path)
    skips = Skips(str(path), skip_invalid)
    _check_file_kind(entries, task, path)
    boxes: dict[int, Box] = {}
    if task == QATask.POINTING:
        if not isinstance(data.get("boxes"), list):
            raise DatasetError(f'{path}: a pointing file needs a top-level "boxes" list '
                               "(is this dataset_v7w_telling.json? then use --task telling)")
        for i, b in enumerate(data["boxes"]):
            try:
                box = _box(b, f"boxes[{i}]")
                if box.box_id in boxes:
                    raise EntryError(f"boxes[{i}]", f"duplicate box_id {box.box_id}", "duplicate ids")
                boxes[box.box_id] = box
            except EntryError as error:
                skips(error)
    questions: list[QA] = []
    files: dict[str, Path] = {}
    seen_images: dict[int | str, int] = {}
    seen_questions: dict[int | str, str] = {}
    missing: list[tuple[str, Path]] = []
    for i, entry in enumerate(entries):
        where = f"images[{i}]"
        try:
            filename, split = file_and_split(entry, where, SPLITS)
            image_id = require(entry, "image_id", (int, str), where)
            pairs = require(entry, "qa_pairs", list, where)
            if image_id in seen_images:
                raise EntryError(where, f"duplicate image_id {image_id!r} (also images[{seen_images[image_id]}])",
                             "duplicate ids")
            file = inside(folder, folder / filename, where)
            if check_files and not file.is_file():
                if not skip_invalid:  # gather them all: one message says how many are missing
                    missing.append((where, file))
                    continue
                raise EntryError(where, f"image file not found: {file}", "missing image files")
        except EntryError as error:
            skips(error)
            continue
        seen_images[image_id] = i
        key = f"v7w:{image_id}"
        files[key] = file
        for j, qa in enumerate(pairs):
            at = f"{where}.qa_pairs[{j}]"
            try:
                item = _qa(qa, at, task, boxes, seen_questions)
            except EntryError as error:
                skips(error)
                continue
            seen_questions[item.qa_id] = at
            questions.append(QA(item.qa_id, key, split, item.type, item.question, item.answer, item.candidates,
                                answer_type=item.answer_type))
    if missing:
        where, file = missing[0]
        raise DatasetError(f"{path}: {where}: image file not found: {file} ({len(missing)} of {len(entries)} "
                           f"images missing under {folder})")
    skips.report()
    order = POINTING_TYPES if task == QATask.POINTING else VISUAL7W_TYPES
    seen = {q.type for q in questions}
    types = [t for t in order if t in seen] + sorted(seen - set(order))
    return QADataset(task, questions, files, boxes, types)


def _check_file_kind(entries: list, task: QATask, path: Path) -> None:
    """A telling file read as pointing (or the reverse) is the wrong file, said once; one odd answer among
    many is a bad entry (named, and skippable), not a verdict on the file."""
    answers = [qa.get("answer") for e in entries if isinstance(e, dict) and isinstance(e.get("qa_pairs"), list)
               for qa in e["qa_pairs"] if isinstance(qa, dict)]
    text = sum(isinstance(a, str) for a in answers)
    boxes = sum(isinstance(a, int) and not isinstance(a, bool) for a in answers)
    wrong = boxes if task == QATask.TELLING else text
    if answers and wrong > len(answers) / 2:
        other = (QATask.TELLING if task == QATask.POINTING else QATask.POINTING).value
        raise DatasetError(f"{path}: the answers are {'box ids' if task == QATask.TELLING else 'text'}: "
                           f"this is a {other} file; use --task {other}")


def _box(entry: Any, where: str) -> Box:
    number = (int, float)
    return Box(require(entry, "box_id", int, where), require(entry, "x", number, where),
               require(entry, "y", number, where), require(entry, "width", number, where),
               require(entry, "height", number, where), str(entry.get("name", "")))


def _qa(qa: Any, at: str, task: QATask, boxes: dict[int, Box], seen: dict[int | str, str]) -> QA:
    """One qa_pair, checked (its image fields are filled in by the caller)."""
    kind = int if task == QATask.POINTING else str
    qa_id = require(qa, "qa_id", (int, str), at)
    question = require(qa, "question", str, at)
    answer = require(qa, "answer", kind, at)
    wrong = require(qa, "multiple_choices", list, at)
    qtype = require(qa, "type", str, at).lower()
    if not all(isinstance(w, kind) and not isinstance(w, bool) for w in wrong):
        raise EntryError(at, f'"multiple_choices" must all be {kind.__name__}', "malformed entries")
    if not tokenize(question):
        raise EntryError(at, f"the question has no words: {shown(question)}", "malformed entries")
    _check_choices(answer, wrong, task, at)
    if qa_id in seen:
        raise EntryError(at, f"duplicate qa_id {qa_id!r} (also {seen[qa_id]})", "duplicate ids")
    unknown = [b for b in [answer, *wrong] if task == QATask.POINTING and b not in boxes]
    if unknown:
        raise EntryError(at, f"box id {unknown[0]} is not in the boxes list", "malformed entries")
    answer_type = qa.get("answer_type") if isinstance(qa.get("answer_type"), str) else ""  # generated sets give it
    return QA(qa_id, "", "", qtype, question, answer, shuffled([answer, *wrong], f"v7w-{qa_id}"),
              answer_type=answer_type)



def _check_choices(answer: Any, wrong: list, task: QATask, at: str) -> None:
    """Telling and pointing alike: exactly 3 wrong choices, none equal to the answer (or to each other), and
    a telling answer with words. Otherwise multiple-choice accuracy means nothing (it read 1.000)."""
    if len(wrong) != 3:
        raise EntryError(at, f'"multiple_choices" holds {len(wrong)} wrong answers, not 3', "malformed entries")
    same = normalize if task == QATask.TELLING else (lambda box: box)
    if task == QATask.TELLING and not tokenize(answer):
        raise EntryError(at, f"the answer has no words: {shown(answer)}", "malformed entries")
    if any(same(w) == same(answer) for w in wrong):
        raise EntryError(at, f"a wrong choice equals the answer {shown(str(answer))}", "malformed entries")
    if len({same(w) for w in wrong}) < len(wrong):
        raise EntryError(at, "two wrong choices are the same", "malformed entries")


# ---- easy-VQA ------------------------------------------------------------------------------------
def _easy_vqa_type(answer: str) -> str:
    return next((group for group, names in EASY_VQA_GROUPS.items() if answer in names), "other")


def wrong_choices(answer: str, answers: list[str], group_of: dict[str, str], rng: random.Random, k: int = 3) -> list:
    """`k` wrong answers, from the answer's own group first (other colours for a colour), then the rest."""
    same = [a for a in answers if a != answer and group_of.get(a) == group_of.get(answer)]
    other = [a for a in answers if a != answer and a not in same]
    picked = rng.sample(same, min(k, len(same)))
    return picked + rng.sample(other, min(k - len(picked), len(other)))


def load_easy_vqa(val_holdout: float = 0.1, seed: int = 0, choices_seed: int = 0) -> QADataset:
    """easy-VQA from its package: 4,000 train / 1,000 test images (64x64), 13 answers. A seeded
    `val_holdout` of the training images becomes the val split; multiple choice adds 3 wrong answers
    sampled (seeded by `choices_seed` and the question) from the same answer group first."""
    try:
        import easy_vqa
    except ImportError:
        raise DatasetError("easy-VQA needs its package: pip install easy-vqa") from None
    answers = easy_vqa.get_answers()
    group_of = {a: _easy_vqa_type(a) for a in answers}
    images: dict[str, Path] = {}
    questions: list[QA] = []
    for source, (texts, truths, ids), paths in (
            ("train", easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths()),
            ("test", easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths())):
        images.update({f"easy-vqa:{source}/{i}": Path(p) for i, p in paths.items()})
        held: set[int] = set()
        if source == "train" and val_holdout > 0:
            ordered = sorted(paths)
            held = set(random.Random(f"easy-vqa-val-{seed}").sample(ordered, round(val_holdout * len(ordered))))
        for n, (text, answer, image_id) in enumerate(zip(texts, truths, ids, strict=True)):
            qa_id = f"easy-vqa:{source}/{n}"
            rng = random.Random(f"{qa_id}-{choices_seed}")
            wrong = wrong_choices(answer, answers, group_of, rng)
            questions.append(QA(qa_id, f"easy-vqa:{source}/{image_id}", "val" if image_id in held else source,
                                group_of[answer], text, answer, shuffled([answer, *wrong], f"{qa_id}-{choices_seed}")))
    return QADataset(QATask.TELLING, questions, images, {}, ["color", "shape", "yes/no"])


# ---- shapes ----------------------------------------------------------------------------------------
def load_shapes(annotations: str | Path, images: str | Path, *, skip_invalid: bool = False) -> QADataset:
    """Questions about the built-in shapes scenes (a `dataset_shapes.json` written by
    `captioning.data.shapes.write_shapes_dataset`), made by `vqa.shapes_questions`."""
    records = load_karpathy(annotations, images, skip_invalid=skip_invalid)
    questions, files = [], {}
    for record in records:
        if not record.objects:
            raise DatasetError(f"{annotations}: image {record.image_id!r} has no \"objects\" list "
                               "(not a shapes dataset)")
        key = f"shapes:{record.image_id}"
        files[key] = record.path
        for n, item in enumerate(shapes_questions(record)):
            choices = list(item["choices"])
            questions.append(QA(f"{key}/{n}", key, record.split, item["type"], item["question"], item["answer"],
                                choices))
    types = list(dict.fromkeys(q.type for q in questions))
    return QADataset(QATask.TELLING, questions, files, {}, types)


def vocabulary_texts(questions: Iterable[QA], task: QATask | str) -> Iterable[str]:
    """Training text the vocabulary is built from: questions, and for telling every candidate answer."""
    for q in questions:
        yield q.question
        if task == QATask.TELLING:
            yield from q.candidates
