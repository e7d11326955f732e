"""End to end in a real browser: start `streamlit run app/streamlit_app.py`, upload an image through the
real file uploader in headless Chromium, and see its caption and an attention map.

Uses Debian's chromium (`make browser` installs it); Playwright never downloads a browser here.
`SHOWTELL_SCREENSHOT=docs/screenshot.png` also saves the page for the README."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app import backend as be
from captioning import Vocabulary, load_captioner

from .helpers import CAPTIONS, tiny_captioner

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SHOWTELL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IMAGE = be.EXAMPLES_DIR / "photographer-camera.jpg"  # a real photo, as the default photo captioner expects


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}:\n{server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def caption_model(tmp_path_factory) -> str:
    """SHOWTELL_CAPTION_MODEL if set, else the app's default (the bundled photo captioner), else a tiny random one."""
    source = be.env_source(be.CAPTION_ENV)
    if source:
        return source
    if "flickr8k" in be.bundled_captioners():
        return "flickr8k"
    return str(tiny_captioner(Vocabulary.build(CAPTIONS)).save(tmp_path_factory.mktemp("e2e") / "ckpt"))


@pytest.fixture(scope="module")
def server(caption_model):
    port = free_port()
    env = {**os.environ, be.CAPTION_ENV: caption_model, "PYTHONUNBUFFERED": "1"}
    launcher = Path(sys.executable).with_name("streamlit")       # as `make app` runs it
    launcher = [str(launcher)] if launcher.is_file() else [sys.executable, "-m", "streamlit"]
    command = [*launcher, "run", "app/streamlit_app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.timeout(300)
def test_upload_in_a_real_browser_shows_caption_and_attention(server, caption_model, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not installed (`make browser` or `apt-get install -y chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    expected = load_captioner(caption_model).caption([Image.open(IMAGE)], beam_size=3)[0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            page.goto(server)
            page.get_by_text("Upload images").first.wait_for(timeout=60_000)
            page.locator('input[type="file"]').set_input_files(str(IMAGE))

            page.get_by_text("captioned in").first.wait_for(timeout=120_000)
            sync_api.expect(page.get_by_role("heading", name=expected.text, exact=True)).to_be_visible()
            heat = page.get_by_role("img", name=re.compile("attention map for the word"))
            sync_api.expect(heat).to_be_visible()
            heat.evaluate("img => img.decode()")          # the picture really arrived, not just its tag
            assert heat.evaluate("img => img.naturalWidth") > 0
            strip = page.get_by_role("img", name="attention strip: one map per word")
            sync_api.expect(strip).to_be_visible()
            strip.evaluate("img => img.decode()")
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp_path / "app.png"))
            if os.environ.get("SHOWTELL_SCREENSHOT"):
                shutil.copy(tmp_path / "app.png", os.environ["SHOWTELL_SCREENSHOT"])
        finally:
            browser.close()
