"""The Streamlit page under load and abuse: 20 sessions (headless AppTest instances, one thread each)
upload at the same moment and caption at once, with one model loaded once; the sessions whose uploads
are broken get one-line errors while every other session is served normally."""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from app import backend as be
from captioning import Captioner, Vocabulary

from .helpers import CAPTIONS, tiny_captioner

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
SCRIPT = str(Path(be.__file__).with_name("streamlit_app.py"))
SESSIONS = 20


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _scene(i: int) -> Image.Image:
    """A different picture per session, so no session gets another's cached caption."""
    image = Image.new("RGB", (96, 72), (230, 240, 240 - i))
    image.paste(((40 * i) % 256, 90, 200), (10 + i, 10, 50 + i, 50))
    return image


BAD = {  # session -> uploads that must fail (and one good image alongside some of them)
    3: [("empty.png", b"")],
    7: [("notes.png", b"this is not an image"), "good"],
    11: [("cut.png", _png(_scene(0))[:90])],
    15: [("bomb.png", _png(Image.new("1", (9000, 9000)))), "good"],
    18: [("lying.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 200)],
}


def _uploads(i: int) -> list[tuple[str, bytes, str]]:
    good = (f"scene-{i}.png", _png(_scene(i)), "image/png")
    return [good if item == "good" else (*item, "image/png") for item in BAD.get(i, ["good"])]


@pytest.fixture
def tiny_app(monkeypatch, tmp_path):
    """AppTest is made for one session at a time: its per-run globals are made process-wide here, as they
    are in a server. The script cache: one lock-guarded cache per server, but one per run in AppTest, and
    parallel compiles trip a CPython 3.11 bug ("AST constructor recursion depth mismatch"). The test-mode
    flag: AppTest patches and unpatches `config.get_option` around each run. The runtime: AppTest sets
    `Runtime._instance` to its own mock at the start of each run and to None at the end; here the first
    mock stays for all sessions."""
    from streamlit import config
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test, local_script_runner
    from streamlit.testing.v1.util import build_mock_config_get_option

    shared = ScriptCache()
    monkeypatch.setattr(app_test, "ScriptCache", lambda: shared)
    monkeypatch.setattr(local_script_runner, "ScriptCache", lambda: shared)
    monkeypatch.setattr(config, "get_option", build_mock_config_get_option({"global.appTest": True}))
    monkeypatch.setattr(app_test, "patch_config_options", lambda overrides: contextlib.nullcontext())

    class FirstRuntimeStays(type(Runtime)):
        def __setattr__(cls, name, value):
            if name != "_instance":
                super().__setattr__(name, value)
            elif value is not None and Runtime._instance is None:
                Runtime._instance = value

    class PinnedRuntime(Runtime, metaclass=FirstRuntimeStays):
        pass

    monkeypatch.setattr(Runtime, "_instance", None)  # and back to None after the test
    monkeypatch.setattr(app_test, "Runtime", PinnedRuntime)
    checkpoint = tiny_captioner(Vocabulary.build(CAPTIONS)).save(tmp_path / "ckpt")
    monkeypatch.setattr(be, "CAPTION_BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setattr(be, "VQA_BUNDLED_DIR", tmp_path / "no-bundled")
    monkeypatch.setenv(be.CAPTION_ENV, str(checkpoint))
    monkeypatch.delenv(be.VQA_ENV, raising=False)
    return checkpoint


def test_twenty_sessions_caption_at_once_and_bad_uploads_stay_in_their_session(tiny_app, monkeypatch):
    barrier = threading.Barrier(SESSIONS)
    lock, running, overlap = threading.Lock(), [0], [0]
    caption = Captioner.caption

    def counted(self, *args, **kwargs):  # how many captions are being made at the same time
        with lock:
            running[0] += 1
            overlap[0] = max(overlap[0], running[0])
        try:
            return caption(self, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(Captioner, "caption", counted)
    pages: dict[int, object] = {}
    failures: dict[int, BaseException] = {}

    def session(i: int) -> None:
        try:
            page = AppTest.from_file(SCRIPT, default_timeout=120)
            page.run()
            barrier.wait(timeout=120)  # every session uploads at the same moment
            page.file_uploader(key="uploads").set_value(_uploads(i)).run()
            pages[i] = page
        except BaseException as exc:  # reported below with the session number
            failures[i] = exc
            barrier.abort()

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures, failures
    assert len(pages) == SESSIONS
    assert overlap[0] >= 2, "the sessions did not caption concurrently"

    for i, page in pages.items():
        assert not page.exception, (i, page.exception)
        errors = [str(e.value) for e in page.error]
        bad = [item for item in BAD.get(i, []) if item != "good"]
        assert len(errors) == len(bad), (i, errors)
        for error, (name, _) in zip(errors, bad, strict=True):
            assert error.startswith(name) and "\n" not in error, error
        good = 1 if i not in BAD or "good" in BAD[i] else 0
        captions = [str(s.value) for s in page.subheader]
        assert len(captions) == good, (i, captions)
        assert all(c for c in captions)
        assert sum("captioned in" in str(c.value) for c in page.caption) == good
