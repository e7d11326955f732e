"""Telling questions from image captions, the way COCO-QA was built (Ren, Kiros and Zemel 2015):
each caption is parsed, a question is asked about one of its parts, and the answer is one word.

nltk's tagger data cannot be downloaded here, so the parse is a small set of rules (`caption_qa_rules.py`)
over hand-written lexicons (colours, numbers, people, animals, objects, places, activity verbs:
`caption_qa_lexicon.py`):

    "A brown dog is running on the grass ."  ->  What colour is the dog?     brown     (colour)
                                                 What is the dog doing?      running   (doing)
                                                 Where is the dog running?   grass     (where)
    "Two dogs play in the snow ."            ->  How many dogs are there?    two       (how many)
    "A man is riding a bike ."               ->  Who is riding a bike?       man       (who)
                                                 What is the man riding?     bike      (what)

(the canonical texts: each question is then worded in one of its type's paraphrases, "Wordings" below).
An answer must agree across the image's captions (colour and how many: every caption that asks the
same question gives the same answer; the others: the most frequent one, ties dropped). The 3 wrong
choices are answers of the same type from elsewhere in the set (frequency-weighted, so an answer
is about as often wrong as right), first of the same question form ("What is the man riding?"
gets other things ridden), and a choice is rejected when it could also be right for this image:
it, or a word of its group (tan ~ brown, field ~ grass, child ~ boy), appears in any of its captions.

Broader questions (asked after those above, which they leave unchanged; `generate(..., broader=False)`
writes the COCO-QA-style set alone):

* **how many** people: "How many people are there?" when every caption that gives a number of people
  agrees on it. A caption gives one when a number word is followed (within 3 words) by a plural person
  word and names no other person ("two young men" -> two; "two men and a woman" gives no number, and
  makes the question unsafe: it is dropped). Asked only where the rules above did not ask it already.
* **what is this** / **what animal**: "What is this?" -> the photo's main subject: each caption's first
  person or animal word (its subject), named canonically (men -> man, puppy -> dog, kids -> child,
  people stays people), the most frequent across the captions, ties dropped. "What animal is this?"
  only when that subject is an animal. Wrong choices as above (a person word compatible with the
  answer, or with any person the captions name, is never wrong: "person" for "man").
* **yes/no** (answer type yes/no), always in pairs: for each yes/no type an image gets as many
  questions answered "no" as "yes" (`yes_no_per_image` pairs; a "yes" without a safe "no" is
  dropped), so every type is exactly balanced in every split.
  - **is there**: "Is there a dog?" or "Are there any dogs?" (or another wording, below). *Yes* when more than half of the photo's captions (3 of Flickr8k's 5) name the object
    (a word of its group in `caption_qa_lexicon.PRESENCE`: dog, dogs, puppy, puppies). *No* with an
    object of `PRESENCE` that no caption names, and that no caption's word suggests: its hand-written
    related words (`PRESENCE_RELATED`: soccer -> ball, cyclist -> bike), the evidence words derived from
    Flickr30k's captions (`caption_qa_words.EVIDENCE`: leash -> dog, saddle -> horse), any word for an
    animal (animal, pet) for an animal, and for a person any person word it could be (`PERSON_WORDS`:
    a "child" could be a boy, "someone" anyone, "he" a man or a boy).
  - **is colour**: "Is the dog brown?" *Yes* from a colour question above (every caption that gives
    the dog a colour gives this one). *No* about the same noun with a colour that appears in no caption
    of the photo at all, nor a word of its group (tan ~ brown, grey = gray).
  - **is action**: "Is the man riding a bike?" *Yes* from a "what" question above whose captions all
    give the same object. *No* about the same subject and verb with an object that no caption names
    (nor a word of its group, nor, for an object of `PRESENCE`, a word that suggests it).
  - **Balance of the wording.** The "yes" is drawn uniformly from the image's candidates. The "no" is
    drawn from the "yes" answers of the same split and type: any object for "is there", a colour of
    the same colour question ("Is the dog ...?"), an object of the same "what" question ("Is the man
    riding ...?"), with weights fitted by iterative proportional fitting (`balancing_weights`) so that
    each is about as often a "no" as it is a "yes": "Is there a dog?", "Is the dog black?" and "Is the
    man riding a horse?" are each answered no about as often as yes, so the question alone says little.
  - The wrong choices are "yes" or "no" (the other one) and two of the set's 20 most frequent answers
    of the COCO-QA-style types that no caption of the photo uses (VQA's "popular" candidates; number
    words where too few are left), because the Visual7W telling layout needs exactly 3 wrong choices.

**Wordings** (`caption_qa_wording`): the rules make one canonical text per question; each question is
then asked in one of several common paraphrases of its type (`WORDINGS`, drawn with weights: "What color
is the dog?" 3 times in 4, "How many dogs are in the picture?", "Do you see a dog?", "What is shown?", ...),
its answer and premises unchanged. The draw is the question's own (seed, image, type, canonical text), so
no other draw moves; a yes/no pair shares one wording, drawn apart from the answers, so that each wording
is answered yes exactly as often as no. "Where is the dog?" only where every caption puts the dog at a
place the answer could name (`caption_qa_wording.placed`). `paraphrase=False` keeps the canonical texts.

Every question's record holds its type (`type`) and its VQA answer type (`answer_type`: yes/no,
number or other). Random draws come from `random.Random` seeded with the seed and the image id (and
the draw's purpose), and the fitted weights from fixed-order sums: the same seed gives the same file."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from captioning.vocab import tokenize

from .caption_qa_broader import (
    YesOption,
    balancing_weights,
    derive_evidence,
    main_subject,
    people_count,
    safe_no,
    yes_no_text,
    yes_options,
)
from .caption_qa_lexicon import ANIMAL_OBJECTS, NUMBERS
from .caption_qa_rules import (
    ALL_TYPES,
    ANSWER_TYPES,
    NO,
    SUBJECT_TYPES,
    TYPES,
    YES,
    YES_NO_TYPES,
    Question,
    agreement,
    caption_questions,
    could_be_right,
    image_questions,
    weighted_sample,
    wrong_choices,
)
from .caption_qa_wording import WORDINGS, choose, placed, reword, template_of

__all__ = ["ALL_TYPES", "ANSWER_TYPES", "SUBJECT_TYPES", "TYPES", "WORDINGS", "YES_NO_TYPES", "Question",
           "caption_questions", "could_be_right", "counts", "derive_evidence", "generate", "image_questions",
           "wordings", "wrong_choices", "yes_no_balance"]


# ---- generation --------------------------------------------------------------------------------------
@dataclass
class _Image:
    entry: dict
    image_id: str
    captions: list[str]
    words: set[str]
    questions: list[Question]
    pairs: list[dict] = field(default_factory=list)
    more: list[tuple[Question, list[str]]] = field(default_factory=list)   # broader questions, wrong choices
    yes: list[YesOption] = field(default_factory=list)
    no: list[tuple[str, ...]] = field(default_factory=list)
    asked: set[str] = field(default_factory=set)      # canonical texts of the questions asked
    texts: set[str] = field(default_factory=set)      # their worded texts

    @property
    def split(self) -> str:
        return self.entry["split"]


def _record(qa_id: int, image_id: str, q: Question, wrong: list[str]) -> dict:
    return {"qa_id": qa_id, "image_id": image_id, "question": q.question, "answer": q.answer,
            "multiple_choices": wrong, "type": q.type, "answer_type": ANSWER_TYPES[q.type]}


def _worded(image: _Image, q: Question, seed: int, paraphrase: bool) -> Question:
    """`q` in a wording drawn for it alone (its seed, image, type and canonical text: no other draw moves);
    the canonical text where the wording is already asked about the image ("Where is the dog?" twice)."""
    rng = random.Random(f"caption-qa-wording-{seed}-{image.image_id}-{q.type}-{q.question}")
    at_place = paraphrase and q.type == "where" and placed(image.captions, q.question, q.answer)
    text = reword(q.type, q.question, rng, placed=at_place, paraphrase=paraphrase)
    text = q.question if text in image.texts else text
    image.asked.add(q.question)
    image.texts.add(text)
    return dataclasses.replace(q, question=text)


def generate(images: Sequence[dict], *, seed: int = 0, per_type: int = 2, choices: int = 3, broader: bool = True,
             yes_no_per_image: int = 1, paraphrase: bool = True) -> dict:
    """Visual7W telling JSON from Karpathy-layout image entries (`filename`, `split`, `sentences[].raw`).

    At most `per_type` questions of each COCO-QA-style type per image (chosen with `seed`); questions for
    which fewer than `choices` wrong answers can be found are dropped. With `broader`, then the broader
    questions (module notes): one people count, "what is this" and "what animal" each at most, and
    `yes_no_per_image` yes/no pairs of each yes/no type; their ids follow every COCO-QA-style question's,
    so that set is the same with or without them. Each question is worded in one of its type's `WORDINGS`
    (`caption_qa_wording`), or, without `paraphrase`, in its canonical wording alone."""
    asked: list[_Image] = []
    by_form: dict[str, Counter] = {}
    by_type: dict[str, Counter] = {}
    for entry in images:
        captions = [s["raw"] if isinstance(s, dict) else str(s) for s in entry.get("sentences", [])]
        words = {w for c in captions for w in tokenize(c)}
        image_id = entry.get("image_id") or entry["filename"].rsplit(".", 1)[0]
        image = _Image(entry, image_id, captions, words, image_questions(captions))
        asked.append(image)
        for q in image.questions:
            by_form.setdefault(q.form, Counter())[q.answer] += 1
            by_type.setdefault(q.type, Counter())[q.answer] += 1
    qa_id = 0
    for image in asked:
        rng = random.Random(f"caption-qa-{seed}-{image.image_id}")
        for kind in TYPES:
            of_kind = [q for q in image.questions if q.type == kind]
            for q in rng.sample(of_kind, min(per_type, len(of_kind))):
                wrong = wrong_choices(q, image.words, by_form[q.form], by_type[q.type], rng, choices)
                if len(wrong) < choices:
                    continue
                qa_id += 1
                image.pairs.append(_record(qa_id, image.image_id, _worded(image, q, seed, paraphrase), wrong))
    if broader:
        _broader_questions(asked, seed, choices, yes_no_per_image, by_form, by_type, paraphrase)
        for image in asked:
            for q, wrong in image.more:
                qa_id += 1
                image.pairs.append(_record(qa_id, image.image_id, q, wrong))
    out_images = [{"image_id": image.image_id, "filename": image.entry["filename"], "split": image.split,
                   "qa_pairs": image.pairs} for image in asked if image.pairs]
    return {"images": out_images, "source": "captions (COCO-QA-style rules and broader questions, "
            "showtell vqa.caption_qa)" if broader else "captions (COCO-QA-style rules, showtell vqa.caption_qa)",
            "seed": seed}


def _broader_questions(asked: list[_Image], seed: int, choices: int, pairs: int, by_form: dict[str, Counter],
                       by_type: dict[str, Counter], paraphrase: bool = True) -> None:
    """Fill each image's `more` with its broader questions and their wrong choices (module notes)."""
    subjects = [main_subject(image.captions) for image in asked]
    pools = {"what is this": Counter(s for s in subjects if s),
             "what animal": Counter(s for s in subjects if s in ANIMAL_OBJECTS)}
    popular = Counter(dict(sum(by_type.values(), Counter()).most_common(20)))   # pads of yes/no questions
    popular.update({n: 1e-6 for n in sorted(NUMBERS) if n not in popular})      # where too few are left
    # "yes" questions first (each image on its own), then the "no" keys, balanced per split and type
    slots: dict[tuple[str, str], list[list[tuple[str, ...]]]] = {}
    targets: dict[tuple[str, str], Counter] = {}
    for image in asked:
        options = yes_options(image.captions, agreement(image.captions))
        rng = random.Random(f"caption-qa-{seed}-{image.image_id}-yes")
        for kind in YES_NO_TYPES:
            of_kind = sorted((o for o in options if o.kind == kind), key=lambda o: o.key)
            image.yes += rng.sample(of_kind, min(pairs, len(of_kind)))
        for option in image.yes:
            targets.setdefault((image.split, option.kind), Counter())[option.key] += 1
    candidates = {where: sorted(keys) for where, keys in targets.items()}
    allowed: list[list[list[tuple[str, ...]]]] = []
    for image in asked:
        allowed.append([[k for k in candidates[image.split, o.kind] if (o.kind == "is there" or k[0] == o.group)
                         and safe_no(o.kind, k, image.words)] for o in image.yes])
        for option, keys in zip(image.yes, allowed[-1], strict=True):
            if keys:
                slots.setdefault((image.split, option.kind), []).append(keys)
    weights = {where: balancing_weights(targets[where], slots.get(where, [])) for where in targets}
    for image, subject, image_allowed in zip(asked, subjects, allowed, strict=True):
        rng = random.Random(f"caption-qa-{seed}-{image.image_id}-no")
        kept = []
        for option, keys in zip(image.yes, image_allowed, strict=True):
            w = weights[image.split, option.kind]
            pool = Counter({k: w[k] for k in keys if k in w and k not in image.no})
            no = weighted_sample(pool, 1, rng, lambda a, picked: False)
            if no:
                kept.append(option)
                image.no.append(no[0])
        image.yes = kept
        _image_broader(image, subject, random.Random(f"caption-qa-{seed}-{image.image_id}-more"), choices, pools,
                       by_form, by_type, popular, seed, paraphrase)


def _image_broader(image: _Image, subject: str | None, rng: random.Random, choices: int, pools: dict[str, Counter],
                   by_form: dict[str, Counter], by_type: dict[str, Counter], popular: Counter, seed: int,
                   paraphrase: bool) -> None:
    more: list[Question] = []
    count = people_count(image.captions)
    if count and "How many people are there?" not in image.asked:
        more.append(Question("how many", "How many people are there?", count, "how many"))
    if subject:
        more.append(Question("what is this", "What is this?", subject, "what is this"))
        if subject in ANIMAL_OBJECTS:
            more.append(Question("what animal", "What animal is this?", subject, "what animal"))
    for q in more:
        if q.type == "how many":
            form_pool, type_pool = by_form.get(q.form, Counter()), by_type.get(q.type, Counter())
        else:
            form_pool = type_pool = pools[q.type]
        wrong = wrong_choices(q, image.words, form_pool, type_pool, rng, choices)
        if len(wrong) == choices:
            image.more.append((_worded(image, q, seed, paraphrase), wrong))
    yes_no = []
    for i, (option, no) in enumerate(zip(image.yes, image.no, strict=True)):
        # one wording for the pair, drawn apart from the answer: each wording is answered yes as often as no
        wording = random.Random(f"caption-qa-wording-{seed}-{image.image_id}-{option.kind}-{i}")
        template = choose(option.kind, wording, paraphrase=paraphrase)
        pair = []
        for key, answer in ((option.key, YES), (no, NO)):
            q = Question(option.kind, yes_no_text(option, key, template), answer, option.kind)
            used = image.words | set(tokenize(q.question)) | {YES, NO}   # pads no caption (nor the question) uses
            pads = weighted_sample(popular, choices - 1, rng, lambda a, picked, used=used: a in used or a in picked)
            pair.append((q, [NO if answer == YES else YES, *pads]))
        if all(len(wrong) == choices for _, wrong in pair):
            yes_no += pair      # both or neither: the balance stays exact
    rng.shuffle(yes_no)
    image.more += yes_no


# ---- tables -----------------------------------------------------------------------------------------
def counts(data: dict) -> dict[str, Counter]:
    """Questions per type in each split."""
    out: dict[str, Counter] = {}
    for image in data["images"]:
        for qa in image["qa_pairs"]:
            out.setdefault(image["split"], Counter())[qa["type"]] += 1
    return out


def wordings(data: dict) -> dict[str, Counter]:
    """type -> how many questions are asked in each of its `WORDINGS` (None: in none of them)."""
    out: dict[str, Counter] = {}
    for image in data["images"]:
        for qa in image["qa_pairs"]:
            out.setdefault(qa["type"], Counter())[template_of(qa["type"], qa["question"])] += 1
    return out


def yes_no_balance(data: dict) -> dict[str, dict[str, Counter]]:
    """split -> yes/no type -> how many questions are answered yes and no."""
    out: dict[str, dict[str, Counter]] = {}
    for image in data["images"]:
        for qa in image["qa_pairs"]:
            if qa.get("answer_type") == "yes/no":
                out.setdefault(image["split"], {}).setdefault(qa["type"], Counter())[qa["answer"]] += 1
    return out
