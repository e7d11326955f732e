"""Questions generated from captions (COCO-QA style): each question type on hand-written captions,
captions that yield nothing, wrong choices that would also be right (rejected), determinism, and
the Visual7W telling layout that `vqa train --format visual7w` reads."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from captioning.vocab import tokenize
from vqa import cli
from vqa.caption_qa import (
    Question,
    caption_questions,
    could_be_right,
    generate,
    image_questions,
    wrong_choices,
)
from vqa.data import load_visual7w

from .test_vqa_helpers import TINY, TINY_MODEL, tiny_encoder, write_visual7w  # noqa: F401  (the fixture)


def asked(caption: str) -> dict[str, tuple[str, str]]:
    return {q.type: (q.question, q.answer) for q in caption_questions(caption)}


@pytest.mark.parametrize("caption, kind, question, answer", [
    ("A brown dog is running on the grass .", "colour", "What colour is the dog?", "brown"),
    ("A man in grey shorts stands by a wall", "colour", "What colour are the shorts?", "gray"),
    ("Two dogs play in the snow .", "how many", "How many dogs are there?", "two"),
    ("A man is riding a bike down the road .", "who", "Who is riding a bike?", "man"),
    ("A man is riding a bike down the road .", "what", "What is the man riding?", "bike"),
    ("A brown dog is running on the grass .", "where", "Where is the dog running?", "grass"),
    ("Two dogs running along the beach", "where", "Where are the dogs running?", "beach"),
    ("A little girl is swimming in a pool .", "doing", "What is the girl doing?", "swimming"),
    ("A man in a red shirt is climbing a rock .", "doing", "What is the man doing?", "climbing"),
    ("A black dog is playing with a ball in the water", "what", "What is the dog playing with?", "ball"),
])
def test_each_question_type(caption, kind, question, answer):
    assert asked(caption)[kind] == (question, answer)


@pytest.mark.parametrize("caption", ["Sunset over the hills .", "A picture of something", "", "!!!",
                                     "A black and white photo of a street ."])
def test_captions_without_questions(caption):
    assert caption_questions(caption) == []


def test_answers_are_one_word_and_never_a_non_activity():
    for q in caption_questions("A man wearing a hat is holding a camera ."):
        assert len(q.answer.split()) == 1
        assert q.type != "doing"              # "What is the man doing?" -> "holding" reads wrong


def test_image_keeps_only_answers_its_captions_agree_on():
    qs = image_questions(["A black dog runs on the grass .", "A brown dog runs on the grass .",
                          "A dog is running on the grass ."])
    kinds = {q.type: q.answer for q in qs}
    assert "colour" not in kinds              # black or brown: two dogs, or a disagreement
    assert kinds["where"] == "grass" and kinds["doing"] == "running"


@pytest.mark.parametrize("kind, choice, caption", [
    ("colour", "tan", "A tan dog runs ."),                   # named in another caption
    ("colour", "brown", "A tan dog runs ."),                 # tan ~ brown
    ("colour", "gray", "A dog in a grey coat ."),            # grey == gray
    ("where", "field", "A dog runs across a grassy field ."),
    ("where", "lawn", "A dog runs on the grass ."),          # grass ~ lawn
    ("who", "boy", "A child rides a bike ."),                # a child may be a boy
    ("who", "woman", "A person rides a bike ."),             # a person may be anyone
    ("doing", "running", "Two dogs are playing ."),          # playing dogs may be running
    ("what", "bicycle", "A man rides a bike ."),
    ("how many", "three", "Three dogs and a cat ."),
])
def test_choice_that_would_also_be_right(kind, choice, caption):
    assert could_be_right(kind, choice, set(tokenize(caption)))


@pytest.mark.parametrize("kind, choice, caption", [
    ("colour", "blue", "A tan dog runs ."), ("who", "woman", "A boy rides a bike ."),
    ("where", "snow", "A dog runs on the grass ."), ("what", "horse", "A man rides a bike ."),
])
def test_choice_that_is_wrong(kind, choice, caption):
    assert not could_be_right(kind, choice, set(tokenize(caption)))


def test_wrong_choices_reject_what_any_caption_makes_right():
    captions = ["A brown dog is running on the grass .", "A tan dog runs in a field .", "A dog with a red collar ."]
    words = {w for c in captions for w in tokenize(c)}
    q = Question("colour", "What colour is the dog?", "brown", "colour")
    pool = Counter({"tan": 1000, "red": 1000, "golden": 500, "black": 1, "white": 1, "blue": 1, "green": 1})
    for seed in range(20):
        wrong = wrong_choices(q, words, pool, pool, random.Random(seed))
        assert len(wrong) == 3 and len(set(wrong)) == 3
        assert not {"tan", "red", "golden", "brown"} & set(wrong)
    where = Question("where", "Where is the dog running?", "grass", "where running")
    assert "field" not in wrong_choices(where, words, Counter(field=99, beach=1, snow=1, street=1), Counter(),
                                        random.Random(0))
    # too few safe answers: fewer than 3 come back (generate then drops the question)
    assert len(wrong_choices(q, words, Counter(tan=5, black=1), Counter(tan=5, black=1), random.Random(0))) == 1


IMAGES = [
    {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "A brown dog is running on the grass ."},
                                                          {"raw": "A man is riding a bike on the street ."}]},
    {"filename": "b.jpg", "split": "train", "sentences": [{"raw": "A black dog is swimming in the water ."},
                                                          {"raw": "Two dogs play in the snow ."}]},
    {"filename": "c.jpg", "split": "val", "sentences": [{"raw": "A white dog is jumping on the beach ."},
                                                        {"raw": "A woman is riding a horse on the beach ."}]},
    {"filename": "d.jpg", "split": "val", "sentences": [{"raw": "A red car is parked on the road ."},
                                                        {"raw": "Four girls are walking in the park ."},
                                                        {"raw": "A boy is sitting on a bench ."}]},
    {"filename": "e.jpg", "split": "train", "sentences": [{"raw": "A yellow dog is digging in the sand ."},
                                                          {"raw": "Three boys are running on the road ."},
                                                          {"raw": "A girl is holding a ball on the grass ."}]},
    {"filename": "f.jpg", "split": "train", "sentences": [{"raw": "Sunset over the hills ."}]},
]


def test_generate_is_deterministic_for_a_seed_and_follows_image_splits():
    first, again = generate(IMAGES, seed=3), generate(IMAGES, seed=3)
    assert json.dumps(first) == json.dumps(again)
    assert "f" not in {image["image_id"] for image in first["images"]}   # no questions: no entry
    for image in first["images"]:
        source = next(e for e in IMAGES if e["filename"] == image["filename"])
        assert image["split"] == source["split"]
        words = {w for s in source["sentences"] for w in tokenize(s["raw"])}
        for qa in image["qa_pairs"]:
            assert len(qa["multiple_choices"]) == 3 and qa["answer"] not in qa["multiple_choices"]
            assert not any(could_be_right(qa["type"], w, words) for w in qa["multiple_choices"])
    types = {qa["type"] for image in first["images"] for qa in image["qa_pairs"]}
    assert {"colour", "doing", "where"} <= types
    choices = {seed: [qa["multiple_choices"] for i in generate(IMAGES, seed=seed)["images"] for qa in i["qa_pairs"]]
               for seed in range(6)}
    assert len({json.dumps(c) for c in choices.values()}) > 1     # the seed matters


def test_prepare_command_writes_what_visual7w_loading_reads(tmp_path, capsys):
    captions = tmp_path / "dataset_flickr8k.json"
    captions.write_text(json.dumps({"images": IMAGES}))
    out = tmp_path / "qa.json"
    assert cli.main(["prepare", "caption-qa", "--captions", str(captions), "--out", str(out), "--seed", "1"]) == 0
    assert "questions about" in capsys.readouterr().out
    data = load_visual7w(out, tmp_path, "telling", check_files=False)
    assert {q.split for q in data.questions} <= {"train", "val"} and data.questions
    assert all(len(q.candidates) == 4 and q.candidates[q.answer_index] == q.answer for q in data.questions)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"sentences": []}]}))
    assert cli.main(["prepare", "caption-qa", "--captions", str(bad), "--out", str(out)]) == 1


def test_question_only_baseline_uses_answer_priors_per_question(tmp_path, capsys):
    from vqa.baseline import AnswerPriors

    annotations = tmp_path / "qa.json"
    annotations.write_text(json.dumps(generate(IMAGES * 1, seed=0)))
    data = load_visual7w(annotations, tmp_path, "telling", check_files=False)
    priors = AnswerPriors(data.split("train"))
    q = next(q for q in data.split("train") if q.type == "doing")
    assert priors.open_ended(q) in {"running", "swimming", "digging"}
    assert q.candidates[priors.choose(q)] == priors.open_ended(q) or priors.choose(q) in range(4)
    out = tmp_path / "baseline.json"
    assert cli.main(["baseline", "--annotations", str(annotations), "--split", "val", "--json", str(out)]) == 0
    assert "question-only" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert 0 <= report["multiple_choice"]["overall"] <= 1 and report["multiple_choice"]["per_type"]


@pytest.mark.usefixtures("tiny_encoder")
def test_a_captioning_cache_keyed_by_file_stem_is_reused(tmp_path, monkeypatch):
    import torch

    from captioning.data.cache import FeatureCache
    from captioning.data.records import ImageRecord
    from captioning.encoders import create_encoder
    from vqa import evaluate, features

    annotations, images = write_visual7w(tmp_path / "data", "telling")
    data = load_visual7w(annotations, images, "telling")
    encoder = create_encoder(TINY, pretrained=True)
    records = [ImageRecord(p.stem, p, "train", []) for p in sorted(images.iterdir())]   # captioning's ids
    cache = FeatureCache.build(encoder, records, tmp_path / "cache", num_workers=0, progress=False)
    monkeypatch.setattr(features, "grid_cache", lambda *a, **k: pytest.fail("encoded again"))
    grids = evaluate.dataset_grids(encoder, data, tmp_path / "cache")
    key = data.questions[0].image
    assert torch.equal(grids([key])[0], cache[data.images[key].stem].float())


def test_wrong_choices_hold_no_two_of_one_group():
    q = Question("what", "What is the man riding?", "horse", "what riding")
    pool = Counter({"bike": 50, "bicycle": 50, "motorcycle": 50, "skateboard": 1, "wave": 1, "surfboard": 1})
    for seed in range(20):
        wrong = wrong_choices(q, {"a", "man", "rides", "horse"}, pool, pool, random.Random(seed))
        assert len(wrong) == 3 and len(set(wrong) & {"bike", "bicycle", "motorcycle"}) <= 1
    who = Question("who", "Who is riding a bike?", "man", "who")
    people = Counter(woman=9, girl=9, child=9, boy=9, baby=9)
    for seed in range(20):
        wrong = wrong_choices(who, {"a", "man", "rides", "bike"}, people, people, random.Random(seed))
        assert not ({"child", "baby"} & set(wrong) and {"boy", "girl"} & set(wrong))


def test_no_where_question_about_an_unknown_object():
    assert "where" not in asked("A woman is carrying a canoe across the river .")    # "Where is the woman carrying?"
    assert "where" not in asked("A dog is chasing a ball on the grass .")
    assert asked("A man is riding a bike on the road .")["where"] == ("Where is the man riding?", "road")


@pytest.mark.usefixtures("tiny_encoder")
def test_zero_image_ablation_trains_and_evaluates_without_images(tmp_path, capsys, monkeypatch):
    from vqa import evaluate

    annotations, images = write_visual7w(tmp_path / "data", "telling")
    run = tmp_path / "run"
    assert cli.main(["train", "--annotations", str(annotations), "--images", str(images), "--out", str(run),
                     "--epochs", "1", "--zero-image", *TINY_MODEL]) == 0
    assert not (run / "features").exists()                       # no image was encoded
    monkeypatch.setattr(evaluate, "dataset_grids", lambda *a, **k: pytest.fail("read the images"))
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", str(run), "--split", "val", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["multiple_choice"]["total"] == 3 * 6


def test_bundled_flickr8k_answerer_loads_and_answers():
    from pathlib import Path

    from PIL import Image

    from vqa import load_answerer
    from vqa.model import BUNDLED_DIR

    assert sum(p.stat().st_size for p in (Path(BUNDLED_DIR) / "flickr8k-qa").iterdir()) < 10_000_000
    model = load_answerer("flickr8k-qa", device="cpu")
    assert {"colour", "how", "many", "where", "who", "doing"} <= set(model.vocab.words)
    r = model.answer(Image.new("RGB", (224, 224), (200, 120, 40)), "What colour is the dog?",
                     choices=["brown", "black", "white", "blue"])
    assert r.text in r.choices and len(r.scores) == 4 and not r.truncated
