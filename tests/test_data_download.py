"""Download planning, resume and extraction against a local HTTP server (never the real network)."""

from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from captioning.data import DownloadError, DownloadItem, download, plan_coco_download
from captioning.data.download import extract_zip, fetch


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("annotations/captions_train2014.json", '{"images": [], "annotations": []}')
        z.writestr("annotations/captions_val2014.json", "{}" + " " * 5000)
    return buffer.getvalue()


class _Server:
    """Serves `files` on 127.0.0.1 with optional Range support; records the Range headers it saw."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True, cut: int | None = None):
        self.files, self.ranges, self.cut, self.seen = files, ranges, cut, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                server.seen.append(header)
                start = int(header.split("=")[1].rstrip("-")) if header and server.ranges else 0
                if start >= len(body) and header and server.ranges:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:server.cut])
                server.cut = None  # the connection drops once

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = _Server({"/ann.zip": _zip_bytes(), "/plain.bin": bytes(range(256)) * 40})
    yield s
    s.close()


def test_plan_lists_official_urls_and_skips_existing(tmp_path):
    items = plan_coco_download(tmp_path)
    urls = [i.url for i in items]
    assert urls == ["http://images.cocodataset.org/zips/train2014.zip",
                    "http://images.cocodataset.org/zips/val2014.zip",
                    "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
                    "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"]
    assert all(i.extract and i.dest.parent == tmp_path and i.size_hint > 0 for i in items)
    (tmp_path / "val2014").mkdir()
    (tmp_path / "dataset_coco.json").write_text("{}")
    assert [i.dest.name for i in plan_coco_download(tmp_path)] == ["train2014.zip", "annotations_trainval2014.zip"]
    assert plan_coco_download(tmp_path, include=("val2014", "karpathy")) == []
    with pytest.raises(ValueError, match="unknown COCO item test2015"):
        plan_coco_download(tmp_path, include=("test2015",))


def test_download_extracts_and_skips(server, tmp_path):
    item = DownloadItem(f"{server.url}/ann.zip", tmp_path / "ann.zip", 100, True,
                        tmp_path / "annotations" / "captions_train2014.json")
    assert download([item], progress=False) == [item.target]
    assert item.target.read_text() == '{"images": [], "annotations": []}'
    assert not item.dest.exists() and not list(tmp_path.glob(".*"))  # archive removed, no staging left
    download([item], progress=False)  # done already: no request
    assert server.seen == [None]


def test_resume_with_range(server, tmp_path):
    body = server.files["/plain.bin"]
    part = tmp_path / "plain.bin.part"
    part.write_bytes(body[:1000])
    fetch(f"{server.url}/plain.bin", tmp_path / "plain.bin", progress=False)
    assert server.seen == ["bytes=1000-"]
    assert (tmp_path / "plain.bin").read_bytes() == body and not part.exists()


def test_dropped_connection_then_resume(tmp_path):
    body = bytes(range(256)) * 40
    s = _Server({"/plain.bin": body}, cut=3000)
    try:
        with pytest.raises(DownloadError, match=r"plain\.bin: .*rerun to resume"):
            fetch(f"{s.url}/plain.bin", tmp_path / "plain.bin", progress=False, chunk_size=1000)
        assert (tmp_path / "plain.bin.part").stat().st_size == 3000 and not (tmp_path / "plain.bin").exists()
        fetch(f"{s.url}/plain.bin", tmp_path / "plain.bin", progress=False)
    finally:
        s.close()
    assert s.seen == [None, "bytes=3000-"]
    assert (tmp_path / "plain.bin").read_bytes() == body


def test_complete_part_is_kept(server, tmp_path):
    body = server.files["/plain.bin"]
    (tmp_path / "plain.bin.part").write_bytes(body)
    fetch(f"{server.url}/plain.bin", tmp_path / "plain.bin", progress=False)  # server answers 416
    assert (tmp_path / "plain.bin").read_bytes() == body


def test_server_without_range_restarts(tmp_path):
    s = _Server({"/plain.bin": b"abcdefghij" * 100}, ranges=False)
    try:
        (tmp_path / "plain.bin.part").write_bytes(b"stale stale")
        fetch(f"{s.url}/plain.bin", tmp_path / "plain.bin", progress=False)
    finally:
        s.close()
    assert (tmp_path / "plain.bin").read_bytes() == b"abcdefghij" * 100


def test_file_url_and_errors(server, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 300)
    item = DownloadItem(source.as_uri(), tmp_path / "out" / "copy.bin", None, False)
    assert download([item], progress=False) == [item.dest] and item.dest.read_bytes() == b"x" * 300
    with pytest.raises(DownloadError, match=r"missing\.zip: HTTP 404"):
        fetch(f"{server.url}/missing.zip", tmp_path / "missing.zip", progress=False)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    with pytest.raises(DownloadError, match=r"broken\.zip: cannot extract"):
        extract_zip(broken, tmp_path)


def test_extract_merges_into_existing_folder(tmp_path: Path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2014.json").write_text("keep me")
    archive = tmp_path / "ann.zip"
    archive.write_bytes(_zip_bytes())
    extract_zip(archive, tmp_path)
    names = sorted(p.name for p in (tmp_path / "annotations").iterdir())
    assert names == ["captions_train2014.json", "captions_val2014.json", "instances_train2014.json"]
