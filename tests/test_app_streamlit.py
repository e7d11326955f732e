"""The Streamlit page driven headlessly with AppTest: captions, answers, bad uploads, missing models."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import pytest
import torch
from PIL import Image

from app import backend as be
from app import overlay
from captioning import Vocabulary, load_captioner

from .helpers import CAPTIONS, tiny_captioner

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
SCRIPT = str(Path(be.__file__).with_name("streamlit_app.py"))
EXAMPLE = "a-red-triangle.png"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight captioner saved the way trained ones are (no bundled model needed)."""
    return tiny_captioner(Vocabulary.build(CAPTIONS)).save(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture
def page(monkeypatch, tmp_path, tiny_checkpoint):
    """A fresh session of the page with the tiny captioner; bundled folders emptied so results do not
    depend on which bundled models exist; no VQA package unless a test provides one."""
    monkeypatch.setattr(be, "CAPTION_BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setattr(be, "VQA_BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(be.CAPTION_ENV, str(tiny_checkpoint))
    monkeypatch.delenv(be.VQA_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "vqa", types.ModuleType("vqa"))  # importable, but without load_answerer
    return AppTest.from_file(SCRIPT, default_timeout=60)


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def shapes_image() -> Image.Image:
    image = Image.new("RGB", (120, 90), (235, 245, 245))
    image.paste((30, 60, 220), (20, 20, 60, 60))
    return image


def texts(elements) -> list[str]:
    return [str(e.value).replace("\\", "") for e in elements]


def image_captions(at) -> list[str]:
    return [c for element in at.image for c in element.captions]


def test_without_any_model_the_page_explains_what_to_do(page, monkeypatch):
    monkeypatch.delenv(be.CAPTION_ENV)
    page.run()
    assert not page.exception
    assert any("No bundled captioning model found" in w and "captioning train" in w for w in texts(page.warning))
    assert any("flickr8k" in c and "real photos" in c for c in texts(page.caption))  # what the models know
    page.multiselect(key="examples").set_value([EXAMPLE]).run()
    assert not page.exception and any("No captioning model is loaded" in i for i in texts(page.info))


def test_caption_flow_upload_and_example(page, tiny_checkpoint):
    page.run()
    assert not page.exception and not page.error
    page.file_uploader(key="uploads").set_value(("blue square.png", image_bytes(shapes_image()), "image/png"))
    page.multiselect(key="examples").set_value([EXAMPLE]).run()
    assert not page.exception and not page.error

    model = load_captioner(tiny_checkpoint)
    expected = [model.caption([shapes_image()], beam_size=3)[0],
                model.caption([Image.open(be.EXAMPLES_DIR / EXAMPLE)], beam_size=3)[0]]
    assert texts(page.subheader) == [r.text for r in expected]
    assert sum("captioned in" in c and "beam 3" in c for c in texts(page.caption)) == 2
    captions = image_captions(page)
    words, first = expected[0].tokens, overlay.first_shown(expected[0].tokens, expected[0].attention)
    assert f"attention for “{words[first]}” (word {first + 1})" in captions   # the sharpest map first
    assert sum("word by word" in c for c in captions) == 2
    alternatives = page.table[0].value
    assert list(alternatives.columns) == ["log\u00a0p", "caption"] and len(alternatives) == 3
    assert alternatives["caption"][0] == expected[0].text

    other = 1 if first != 1 else 0
    page.pills[0].set_value(other).run()                 # select another word
    assert f"attention for “{words[other]}” (word {other + 1})" in image_captions(page)

    page.radio(key="method").set_value("greedy").run()
    assert sum("greedy" in c for c in texts(page.caption)) == 2
    page.radio(key="method").set_value("sample").run()
    page.slider(key="temperature").set_value(0.5).run()
    assert not page.exception
    assert sum("sampled at temperature 0.5" in c for c in texts(page.caption)) == 2


def test_bad_uploads_are_reported_and_good_ones_still_work(page):
    page.run()
    bad = [("empty.png", b""), ("notes.png", b"this is not an image"),
           ("cut.png", image_bytes(shapes_image())[:80]), ("bomb.png", image_bytes(Image.new("1", (9000, 9000))))]
    files = [(name, data, "image/png") for name, data in bad] + [("fine.png", image_bytes(shapes_image()), "image/png")]
    page.file_uploader(key="uploads").set_value(files).run()
    assert not page.exception
    errors = texts(page.error)
    assert len(errors) == 4 and all(e.startswith(name) for e, (name, _) in zip(errors, bad))
    assert "0 bytes" in errors[0] and "not an image" in errors[1] and "too large" in errors[3]
    assert len(page.subheader) == 1                       # the good image is captioned

    page.file_uploader(key="uploads").set_value(files[:2]).run()  # only bad files: errors, no "to begin" prompt
    assert len(texts(page.error)) == 2 and not any("to begin" in i for i in texts(page.info))

    other = AppTest.from_file(SCRIPT, default_timeout=60)  # and another session is unaffected
    other.run()
    other.multiselect(key="examples").set_value([EXAMPLE]).run()
    assert not other.exception and not other.error and len(other.subheader) == 1


def test_a_wrong_checkpoint_path_is_an_error_not_a_crash(page, monkeypatch, tmp_path):
    monkeypatch.setenv(be.CAPTION_ENV, str(tmp_path / "missing"))
    page.run()
    page.multiselect(key="examples").set_value([EXAMPLE]).run()
    assert not page.exception
    assert any("Could not load captioning model" in e and "missing" in e for e in texts(page.error))


def test_question_answering_shows_a_notice_when_vqa_is_unavailable(page):
    page.run()
    page.multiselect(key="examples").set_value([EXAMPLE]).run()
    assert not page.exception
    assert any("Question answering is not available" in i for i in texts(page.info))


# ---- VQA against the documented API: `load_answerer(path, device=)` -> `.answer(image, question, choices=)`
class FakeAnswerer:
    """Answers as `vqa.Answerer.answer` does, in its own result type: scores for what it scored."""

    def answer(self, image, question, choices=None):
        from vqa.model import AnswerResult

        words = question.split()
        attention = torch.zeros(len(words), 3, 3)
        attention[:, 1, 1] = 1.0
        if choices:
            scores = torch.linspace(-3.0, -0.5, len(choices)).tolist()
            return AnswerResult(choices[-1], scores, list(choices), attention, words)
        return AnswerResult("rectangle", [-0.2, -1.5], ["rectangle", "square"], attention, words,
                            answer_attention=attention[:1])


def test_question_flow_against_the_vqa_api(page, monkeypatch, tmp_path):
    fake = types.ModuleType("vqa")
    fake.load_answerer = lambda path, device="cpu": FakeAnswerer()
    monkeypatch.setitem(sys.modules, "vqa", fake)
    (tmp_path / "answerer").mkdir()
    for name in ("config.json", "vocab.json", "model.safetensors"):  # a checkpoint folder to the resolver
        (tmp_path / "answerer" / name).write_text("{}")
    monkeypatch.setenv(be.VQA_ENV, str(tmp_path / "answerer"))
    page.run()
    page.multiselect(key="examples").set_value([EXAMPLE]).run()
    question = next(t for t in page.text_input if t.label == "Question")
    question.set_value("what shape is it").run()
    assert not page.exception and not page.error
    assert "rectangle" in texts(page.subheader) and any("answered in" in c for c in texts(page.caption))
    assert "attention while reading the question (the mean of one map per word, below)" in image_captions(page)
    assert "attention while reading each question word" in image_captions(page)

    page.text_area[0].set_value("circle, triangle\nteal").run()
    assert "teal" in texts(page.subheader)
    scores = page.dataframe[-1].value
    assert list(scores["answer"]) == ["teal", "triangle", "circle"]


def _vqa_package() -> str | None:
    """Why the real vqa package cannot be used, or None."""
    try:
        from vqa import Answerer, AnswererConfig, load_answerer  # noqa: F401
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.mark.skipif(_vqa_package() is not None,
                    reason=f"activates once the vqa package provides Answerer/load_answerer ({_vqa_package()})")
def test_question_flow_with_the_real_vqa_package(page, monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "vqa")               # the real package, not the page fixture's stand-in
    from vqa import Answerer, AnswererConfig

    torch.manual_seed(0)
    config = AnswererConfig(embed_dim=16, hidden_dim=32, attention_dim=16, dropout=0.0, image_size=64)
    vocab = Vocabulary.build(["what shape is in the image", "circle", "square", "triangle", "red", "blue"])
    folder = Answerer(config, vocab, pretrained_encoder=False).eval().save(tmp_path / "answerer")
    monkeypatch.setenv(be.VQA_ENV, str(folder))
    page.run()
    page.multiselect(key="examples").set_value([EXAMPLE]).run()
    next(t for t in page.text_input if t.label == "Question").set_value("what shape is in the image?").run()
    assert not page.exception and not page.error
    assert any("answered in" in c and "open-ended" in c for c in texts(page.caption))
    assert "attention while reading the question (the mean of one map per word, below)" in image_captions(page)
    assert "attention while reading each question word" in image_captions(page)

    page.text_area[0].set_value("circle, square\ntriangle").run()
    assert not page.exception and not page.error
    table = page.dataframe[-1].value
    assert sorted(table["answer"]) == ["circle", "square", "triangle"] and list(table.columns) == ["answer", "log p"]
    assert texts(page.subheader)[-1] == table["answer"].iloc[0]     # the answer is the best-scored choice


def test_tags_guidance_toggle_and_out_of_depth_notice(page, monkeypatch, tmp_path):
    """The page shows what the encoder's classifier sees, says when the model is out of its depth, and the
    guidance toggle reaches the API."""
    from captioning.guidance import GuideSettings

    model = tiny_captioner(Vocabulary.build(CAPTIONS))
    with torch.no_grad():  # an untrained trunk gives a flat head: make it see a tabby cat (class 281)
        model.encoder.head.fc.bias[281] += 10.0
    model.guide_settings = GuideSettings(notice_threshold=0.001, rare_below=10**6)  # every photo is "rare"
    monkeypatch.setenv(be.CAPTION_ENV, str(model.save(tmp_path / "noticing")))
    page.run()
    page.multiselect(key="examples").set_value([EXAMPLE]).run()
    assert not page.exception and not page.error
    expected = model.caption([Image.open(be.EXAMPLES_DIR / EXAMPLE)], beam_size=3)[0]
    assert expected.tags and expected.notices
    seen = [c for c in texts(page.caption) if c.startswith("The encoder sees:")]
    assert seen == [f"The encoder sees: {be.tags_text(expected.tags)}"
                    + (f" · guided to say “{', '.join(expected.guided_by)}”" if expected.guided_by else "")]
    assert [w for w in texts(page.warning) if "may be wrong" in w] == expected.notices
    page.toggle(key="guide").set_value(False).run()
    assert not page.exception and any("beam 3, unguided" in c for c in texts(page.caption))


def test_the_default_captioner_hedges_in_the_page(page, monkeypatch):
    """The astronaut example in the page with the default captioner: "a person ...", and the notice saying
    the captioner was unsure who it is, under the caption."""
    from captioning.model import BUNDLED_DIR, DEFAULT_CAPTIONER

    monkeypatch.setattr(be, "CAPTION_BUNDLED_DIR", BUNDLED_DIR)
    monkeypatch.setenv(be.CAPTION_ENV, DEFAULT_CAPTIONER)
    page.run()
    page.multiselect(key="examples-photos").set_value(["astronaut-eileen-collins.jpg"]).run()
    assert not page.exception and not page.error
    assert texts(page.subheader)[0].startswith("a person ")
    assert any("unsure who is in the photo" in w for w in texts(page.warning))


def test_bundled_answerer_answers_yes_no_and_what_is_this_on_the_cat(page, monkeypatch):
    """The default answerer in the page, on the cat example: "What is this?" -> cat, presence questions get
    yes or no, and a yes/no question the tags cannot answer still gets yes or no."""
    monkeypatch.delitem(sys.modules, "vqa")
    from vqa.model import BUNDLED_DIR, DEFAULT_ANSWERER

    monkeypatch.setattr(be, "VQA_BUNDLED_DIR", BUNDLED_DIR)
    monkeypatch.setenv(be.VQA_ENV, DEFAULT_ANSWERER)
    page.run()
    page.multiselect(key="examples").set_value(["cat-chelsea.jpg"]).run()
    asked, notes = {}, {}
    for question in ("What is this?", "Is there a cat?", "Is there a dog?", "Is the cat sleeping?"):
        next(t for t in page.text_input if t.label == "Question").set_value(question).run()
        assert not page.exception and not page.error
        asked[question] = texts(page.subheader)[-1]
        notes[question] = " ".join(c for c in texts(page.caption) if c.startswith("note:"))
    assert asked["What is this?"] == "cat" and "answered from what the encoder's classifier sees" in notes["What is this?"]
    assert (asked["Is there a cat?"], asked["Is there a dog?"]) == ("yes", "no")
    assert asked["Is the cat sleeping?"] in ("yes", "no") and "classifier" not in notes["Is the cat sleeping?"]


def test_examples_and_question_placeholder_follow_the_selected_models(page, monkeypatch):
    """The photo captioner is offered the photos, a shapes captioner the shapes scenes, a checkpoint folder
    everything; the question box suggests a question of the selected answerer's kind."""
    from captioning.model import BUNDLED_DIR

    monkeypatch.setattr(be, "CAPTION_BUNDLED_DIR", BUNDLED_DIR)
    monkeypatch.setenv(be.CAPTION_ENV, "flickr8k")
    page.run()
    assert not page.exception
    photos = page.multiselect(key="examples-photos")
    assert photos.options and all(o.startswith("photo:") for o in photos.options)  # the format_func labels
    photos.set_value(["cat-chelsea.jpg"]).run()
    assert not page.exception and not page.error
    page.selectbox(key="caption_choice").set_value("shapes-soft").run()
    scenes = page.multiselect(key="examples-shapes")
    assert scenes.options and all(o.startswith("shapes:") for o in scenes.options)
    assert be.examples_for("runs/mine") == be.list_examples()  # a checkpoint folder: every example
    assert "dog" in be.question_placeholder("flickr8k-qa") and "circle" in be.question_placeholder("easy-vqa-shapes")


def test_a_tiny_image_comes_with_a_notice(tiny_checkpoint):
    model = load_captioner(tiny_checkpoint, pretrained_encoder=False)
    small, fine = model.caption([Image.new("RGB", (16, 16), "red"), Image.new("RGB", (320, 240), "red")])
    assert any("16x16" in n and "too small" in n for n in small.notices)
    assert not any("too small" in n for n in fine.notices)
