"""The bundled Flickr8k captioners on the app's example photos (public domain / CC0, app/examples/SOURCES.md):
each caption names what the photo shows with a word a person would use, no caption ends on a word that
cannot end one, and the strongest tag of a thing the captioner rarely saw comes with a notice. Nothing is
trained here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from captioning import load_captioner
from captioning.guidance import PEOPLE
from captioning.images import open_image
from captioning.lexicon.endings import bad_ending

EXAMPLES = Path(__file__).resolve().parent.parent / "app" / "examples"
ADULT = {"man", "woman", "person", "astronaut"}
# photo -> words any of which names what it shows (the words: a child is not an astronaut)
EXPECTED = {
    "astronaut-eileen-collins.jpg": ADULT,
    "photographer-camera.jpg": ADULT | {"photographer", "camera"},
    "cat-chelsea.jpg": {"cat", "cats", "kitten"},
    "coffee-cup.jpg": {"coffee", "cup", "mug", "espresso"},
    "rocket-launch.jpg": {"rocket", "rockets"},
}


@pytest.fixture(scope="module", params=["flickr8k", "flickr8k-hard"])
def captioner(request):
    torch.set_num_threads(1)
    return request.param, load_captioner(request.param)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_every_photo_example_is_listed_with_its_licence():
    sources = (EXAMPLES / "SOURCES.md").read_text()
    photos = sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    assert photos == sorted(EXPECTED)
    for name in photos:
        row = next(line for line in sources.splitlines() if name in line)
        assert "CC0" in row or "public domain" in row


# Known miss of the second model, kept visible: ImageNet has no person class, and the hard-attention Lite0
# captioner calls a young face in a red suit "a boy" with 29% probability, too sure of it to hedge. The
# default captioner is unsure (9%) and says "a person" (`GuideSettings.hedge_people`).
ADULT_MISS = pytest.mark.xfail(strict=True, reason="flickr8k-hard captions the astronaut 'a boy in a red shirt'")


@pytest.mark.parametrize("photo", sorted(EXPECTED))
def test_caption_names_the_photo(captioner, photo, request):
    name, model = captioner
    if name == "flickr8k-hard" and photo.startswith("astronaut"):
        request.applymarker(ADULT_MISS)
    result = model.caption([open_image(EXAMPLES / photo)], beam_size=3)[0]
    assert words(result.text) & EXPECTED[photo], f"{name} on {photo}: {result.text!r}"
    assert "<unk>" not in result.tokens, f"{name} on {photo}: {result.text!r}"
    assert bad_ending(result.tokens) is None, f"{name} on {photo}: {result.text!r}"


def test_the_default_captioner_hedges_the_person_it_is_unsure_of():
    """The astronaut: the default captioner gives its word for who she is under 12% probability ("man" or,
    on another beam, "boy"), so the caption says "a person"; unhedged (guide=False) it names the guess."""
    model = load_captioner()
    image = open_image(EXAMPLES / "astronaut-eileen-collins.jpg")
    hedged = model.caption([image], beam_size=3)[0]
    assert hedged.tokens[:2] == ["a", "person"], hedged.text
    assert any("unsure who is in the photo" in n for n in hedged.notices), hedged.notices
    plain = model.caption([image], beam_size=3, guide=False)[0]
    assert plain.tokens[1] in PEOPLE and plain.tokens[1] != "person", plain.text


def test_the_default_captioner_tags_and_warns():
    """The default captioner's tags name the cat, the coffee and the rocket, and the things its training
    captions rarely mention come with a notice; unguided, it would not have named them."""
    model = load_captioner()
    for photo, word in (("cat-chelsea.jpg", "cat"), ("coffee-cup.jpg", "coffee"), ("rocket-launch.jpg", "rocket")):
        image = open_image(EXAMPLES / photo)
        result = model.caption([image], beam_size=3)[0]
        assert result.tags[0][0] == word and result.guided_by == [word], (photo, result.tags)
        assert any(word in n and "may be wrong" in n for n in result.notices), (photo, result.notices)
        unguided = model.caption([image], beam_size=3, guide=False)[0]
        assert not words(unguided.text) & EXPECTED[photo], (photo, unguided.text)
    person = model.caption([open_image(EXAMPLES / "astronaut-eileen-collins.jpg")], beam_size=3)[0]
    assert not [n for n in person.notices if "may be wrong" in n], person.notices  # people: not out of its depth


def test_photo_captions_differ_between_photos(captioner):
    name, model = captioner
    texts = [model.caption([open_image(EXAMPLES / p)], beam_size=3)[0].text for p in sorted(EXPECTED)]
    assert len(set(texts)) == len(texts), texts


def test_the_app_opens_on_the_photo_models():
    from app import backend as be

    assert be.bundled_captioners()[0] == "flickr8k" and be.bundled_answerers()[0] == "flickr8k-qa"
    assert "real photos" in be.model_about("flickr8k") and "shapes" in be.model_about("shapes-soft")
