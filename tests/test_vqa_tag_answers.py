"""Question kinds, and the answers the encoder's classifier gives ("What is this?" -> cat)."""

from __future__ import annotations

import pytest
import torch

from captioning.encoders import IMAGENET_1K
from captioning.lexicon.tags import tag_table
from vqa.caption_qa_wording import WORDINGS, fill
from vqa.question_kinds import answer_type, asked_thing, question_kind
from vqa.tag_answers import tag_answer


@pytest.mark.parametrize("question,kind", [
    ("Is there a cat?", "yes/no"), ("Are the dogs running?", "yes/no"), ("Does he wear a hat?", "yes/no"),
    ("How many people are there?", "how many"), ("What colour is the dog?", "colour"),
    ("what color are his shoes", "colour"), ("What is this?", "what is this"),
    ("What animal is this?", "what is this"), ("What kind of animal is that?", "what is this"),
    ("What is in the picture?", "what is this"), ("What is the man holding?", "what"),
    ("What is the girl doing?", "doing"), ("Who is riding a bike?", "who"), ("Where is the dog?", "where"),
    ("Why is he smiling?", "why"), ("How old is she?", "how"), ("", "other"), ("Dog?", "other"),
    # the generated questions' wordings (vqa.caption_qa_wording)
    ("Do you see a dog?", "yes/no"), ("Is a dog in the picture?", "yes/no"), ("Is this dog brown?", "yes/no"),
    ("What is shown?", "what is this"), ("What is in this photo?", "what is this"),
    ("What animal is shown?", "what is this"), ("What animal is in the picture?", "what is this"),
    ("How many dogs can you see?", "how many"), ("How many dogs are shown?", "how many"),
    ("What color is the dog?", "colour"), ("What is the dog doing in the picture?", "doing"),
    ("What is this man holding?", "what"), ("Who is riding a bike in the picture?", "who")])
def test_question_kinds(question, kind):
    assert question_kind(question) == kind


def test_answer_types_and_asked_things():
    assert [answer_type(k) for k in ("yes/no", "how many", "colour", "what")] == ["yes/no", "number", "other", "other"]
    assert asked_thing("What animal is this?") == "animal" and asked_thing("What kind of vehicle is that?") == "vehicle"
    assert asked_thing("What is this?") is None and asked_thing("Is this a cat?") is None
    assert asked_thing("What animal is shown?") == asked_thing("What animal is in the picture?") == "animal"
    assert asked_thing("What is in this photo?") is None and asked_thing("What is shown?") is None


def probs_with(**words: float) -> torch.Tensor:
    table = tag_table(IMAGENET_1K)
    probs = torch.zeros(len(table.words))
    for word, p in words.items():
        probs[table.words.index(word)] = p
    return probs


@pytest.mark.parametrize("question,probs,expected", [
    ("What is this?", dict(cat=0.9), "cat"),
    ("What animal is this?", dict(coffee=0.7, dog=0.65), "dog"),
    ("What is this?", dict(cat=0.3, dog=0.3), None),                    # not confident: the model answers
    ("What breed is this?", dict(dog=0.99), None),                       # not a question the tags answer
    ("Is there a cat?", dict(cat=0.8), "yes"),
    ("Are there any cats?", dict(cat=0.8), "yes"),
    ("Is this a kitten?", dict(cat=0.8), "yes"),
    ("Is there a dog in the picture?", dict(cat=0.9, dog=0.02), "no"),  # a confident cat rules out a dog
    ("Is there a dog?", dict(coffee=0.9), None),                         # no rival animal: the model answers
    ("Is there a man?", dict(cat=0.9), None),                            # not a tag word
    ("Is the dog brown?", dict(dog=0.9), None),                          # not a presence question
    ("How many dogs are there?", dict(dog=0.9), None),
    # presence in the generated questions' other wordings
    ("Do you see a dog?", dict(dog=0.8), "yes"),
    ("Do you see a dog?", dict(cat=0.9, dog=0.02), "no"),
    ("Is a dog in the picture?", dict(dog=0.8), "yes"),
    ("Is a dog in the picture?", dict(cat=0.9, dog=0.02), "no"),
    ("Are there dogs in the picture?", dict(dog=0.8), "yes"),
    ("Are there dogs in the picture?", dict(cat=0.9, dog=0.02), "no"),
    ("Is there a dog in this photo?", dict(dog=0.8), "yes"),
    ("Is there a dog in this photo?", dict(cat=0.9, dog=0.02), "no"),
    ("Do you see any cats?", dict(cat=0.8), "yes"),
    ("Is this dog brown?", dict(dog=0.9), None),                         # about the dog, not whether there is one
    ("Is the dog in the picture running?", dict(dog=0.9), None),
    ("What animal is shown?", dict(coffee=0.7, dog=0.65), "dog"),
    ("What is in this photo?", dict(cat=0.9), "cat"),
])
def test_tag_answers(question, probs, expected):
    found = tag_answer(question, probs_with(**probs), tag_table(IMAGENET_1K))
    assert (found[0] if found else None) == expected


@pytest.mark.parametrize("template", [t for t, _ in WORDINGS["is there"]])
def test_tags_answer_every_generated_presence_wording(template):
    question = fill(template, {"a_thing": "a cat", "things": "cats"})
    found = tag_answer(question, probs_with(cat=0.8), tag_table(IMAGENET_1K))
    assert found and found[0] == "yes", question


def test_answerer_uses_tags_and_keeps_yes_no_answers_yes_or_no():
    """On the bundled answerer and the app's cat photo: tags answer "what is this" and "is there a ...";
    any other yes/no question is still answered yes or no."""
    from app import backend as be
    from captioning.images import open_image
    from vqa import load_answerer

    model = load_answerer()
    cat = open_image(be.EXAMPLES_DIR / "cat-chelsea.jpg")
    what = model.answer(cat, "What is this?")
    assert (what.text, what.source) == ("cat", "tags") and any("classifier" in n for n in what.notices)
    assert model.answer(cat, "Is there a cat?").text == "yes"
    assert model.answer(cat, "Is there a dog?").text == "no"
    other = model.answer(cat, "Is the cat sleeping?")
    assert other.source == "model" and other.text in ("yes", "no") or "yes" not in model.vocab.index
    chosen = model.answer(cat, "What is this?", choices=["dog", "cat", "horse"])
    assert chosen.text == "cat" and chosen.scores == [float("-inf"), 0.0, float("-inf")]
