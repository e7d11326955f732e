"""The app's drawing and upload helpers, without Streamlit."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from app import backend as be
from app import overlay
from captioning.images import original_size


def scene(size=(96, 64)) -> Image.Image:
    image = Image.new("RGB", size, (230, 240, 240))
    image.paste((220, 30, 30), (8, 8, 32, 32))
    return image


def png_bytes(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def test_heatmap_is_bright_where_attention_peaks():
    image = Image.new("RGB", (80, 80), (200, 200, 200))
    grid = torch.full((4, 4), 0.01)
    grid[0, 3] = 0.85                                     # top right cell
    out = np.asarray(overlay.heatmap(image, grid), dtype=float)
    assert out.shape == (80, 80, 3)
    assert out[5:15, 65:75].mean() > 2 * out[65:75, 5:15].mean()


def test_the_sharpest_map_is_shown_first():
    maps = torch.full((3, 4, 4), 1 / 16)
    maps[2, 1, 1] = 0.5
    assert overlay.most_focused(maps) == 2 and overlay.most_focused(torch.zeros(0, 2, 2)) == 0
    # the page opens on the first content word's map, not on "of" or "little"
    assert overlay.first_shown("a little girl in a pink dress".split(), maps) == 2
    assert overlay.first_shown("two dogs of a".split(), maps) == 1
    assert overlay.first_shown(["of", "the", "a"], maps) == 2  # none: the most focused map


def test_flat_attention_is_drawn_flat():
    weights = overlay.upsample(np.full((7, 7), 1 / 49, np.float32), (70, 70))
    assert weights.max() == pytest.approx(0.5, abs=0.02) and weights.std() < 0.02
    assert overlay.upsample(np.zeros((3, 3), np.float32), (9, 9)).max() == 0


def test_strip_has_a_tile_per_word_and_accepts_arrays():
    words = ["a", "red", "square"]
    strip = overlay.strip(scene(), words, np.random.rand(3, 2, 2), tile=60, columns=2)
    assert strip.size == (2 * 60 + overlay.GAP, 2 * (40 + overlay.LABEL_HEIGHT))  # 4 tiles (image + 3) in 2 rows
    alone = overlay.strip(scene(), words, torch.rand(3, 2, 2), tile=60, columns=6, with_image=False)
    assert alone.width == 3 * 60 + 2 * overlay.GAP
    assert overlay.strip(scene(), [], torch.zeros(0, 2, 2), tile=60).size == (60, 40 + overlay.LABEL_HEIGHT)
    ten = overlay.strip(scene(), ["w"] * 10, torch.rand(10, 2, 2), with_image=False)  # one row, ~960 px wide
    assert ten.height == 60 + overlay.LABEL_HEIGHT and 900 <= ten.width <= 960
    with pytest.raises(ValueError, match="words, h, w"):
        overlay.as_maps(np.zeros((1, 2, 3, 4)))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_uploads_of_every_offered_format_decode(fmt):
    loaded = be.load_image_bytes(f"x.{fmt.lower()}", png_bytes(scene(), fmt))
    assert loaded.error is None and loaded.image.size == (96, 64) and loaded.preview.mode == "RGB"
    assert "96×64 px" in loaded.size_text


def test_a_phone_sized_upload_decodes_smaller_but_reports_its_own_size():
    big = Image.new("RGB", (3000, 2000), (120, 90, 60))
    loaded = be.load_image_bytes("phone.jpg", png_bytes(big, "JPEG"))
    assert loaded.error is None and min(loaded.image.size) >= be.DECODE_AT_LEAST and loaded.image.size == (1500, 1000)
    assert "3000×2000 px" in loaded.size_text


def test_transparent_pixels_are_shown_white():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert overlay.display_copy(image).getpixel((5, 5)) == (255, 255, 255)
    assert overlay.display_copy(Image.new("RGB", (900, 300))).size == (448, 149)


def test_bad_uploads_give_one_line_errors():
    bomb = png_bytes(Image.new("1", (9000, 9000)))       # 81 Mpx: over the pixel limit, a few KB on disk
    cases = {"empty.png": b"", "notes.png": b"hello, not an image", "cut.png": png_bytes(scene())[:60],
             "bomb.png": bomb}
    for name, data in cases.items():
        loaded = be.load_image_bytes(name, data)
        assert loaded.image is None and loaded.error.startswith(name) and "\n" not in loaded.error
    assert "0 bytes" in be.load_image_bytes("empty.png", b"").error
    assert "too large" in be.load_image_bytes("bomb.png", bomb).error


def test_decoding_settings_map_to_caption_arguments():
    assert be.Decoding("beam", beam_size=5).kwargs() == {"beam_size": 5, "guide": True}
    assert be.Decoding("greedy").kwargs() == {"beam_size": 1, "guide": True}
    assert be.Decoding("beam", guide=False).kwargs() == {"beam_size": 3, "guide": False}  # the sidebar toggle
    sample = be.Decoding("sample", temperature=0.7, seed=3)
    assert sample.kwargs() == {"sample": True, "temperature": 0.7, "seed": 3, "beam_size": 1}
    assert "0.7" in sample.label() and be.Decoding().label() == "beam 3"


def test_choices_and_question_labels():
    assert be.parse_choices(" red, blue\ngreen,,red \n") == ["red", "blue", "green"]
    assert be.parse_choices("  \n, ") is None and be.parse_choices(None) is None

    read = types.SimpleNamespace(question_tokens=["what", "colour"])
    assert be.question_labels(read, "ignored", 2) == ["what", "colour"]
    assert be.question_labels(read, "What color is the circle?", 5) == ["what", "color", "is", "the", "circle"]
    assert be.question_labels(read, "What color?", 3) == ["step 1", "step 2", "step 3"]


def test_an_empty_vqa_namespace_package_is_diagnosed(monkeypatch):
    monkeypatch.setitem(sys.modules, "vqa", types.ModuleType("vqa"))   # what a stale editable install gives
    loader, why = be.answerer_loader()
    assert loader is None and "pip install -e ." in why


def test_examples_are_bundled_and_named():
    examples = be.list_examples()
    assert len(examples) >= 3
    assert all(be.load_image_bytes(p.name, p.read_bytes()).error is None for p in examples)
    assert be.example_label(examples[0]) == "photo: " + examples[0].stem.replace("-", " ")  # real photos first
    assert be.example_label(examples[-1]).startswith("shapes: ")
    assert all(len(be.example_label(p)) <= 34 for p in examples)  # a multiselect chip shows it whole


def test_transparent_areas_of_an_upload_stay_light_under_the_attention_overlay():
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))   # transparent black: shown as white, never as black
    image.paste((255, 0, 0, 255), (0, 0, 50, 100))
    data = io.BytesIO()
    image.save(data, "PNG")
    item = be.load_image_bytes("t.png", data.getvalue())
    assert item.preview.getpixel((75, 50)) == (255, 255, 255)
    flat = overlay.heatmap(item.preview, np.full((7, 7), 1 / 49, np.float32))
    assert min(flat.getpixel((75, 50))) > 100


def test_a_huge_upload_is_kept_at_the_size_the_models_need():
    """Issue 27: the page's upload cache held every decoded upload at full size (20 PNGs of 8000x8000:
    5.7 GB). It keeps a copy whose shorter side is 640-1279 px, and remembers the file's size."""
    import io

    big, small = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (3000, 2000), (10, 120, 30)).save(big, "PNG")
    Image.new("RGB", (400, 300), (10, 120, 30)).save(small, "PNG")
    loaded = be.load_image_bytes("big.png", big.getvalue())
    assert loaded.error is None and 640 <= min(loaded.image.size) < 1280
    assert original_size(loaded.image) == (3000, 2000)
    assert be.load_image_bytes("small.png", small.getvalue()).image.size == (400, 300)
