"""Whatever bytes arrive, `open_image` returns an upright image or one clear ImageLoadError."""

import io
import resource
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from captioning.encoders import Preprocessing
from captioning.images import ImageLoadError, open_image, original_size

PRE = Preprocessing(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def usable(image: Image.Image) -> None:
    pixels = PRE([image])
    assert pixels.shape == (1, 3, 32, 32) and bool(pixels.isfinite().all())


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr"])
def test_every_mode_becomes_a_usable_rgb_batch(mode):
    image = Image.new(mode, (17, 9))
    usable(image)


def test_16bit_png_keeps_its_contrast(tmp_path):
    array = (np.linspace(0, 65535, 64 * 8).reshape(8, 64)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    image = open_image(path)
    pixels = PRE([image])
    assert pixels.max() - pixels.min() > 1.5  # not crushed to white by a naive 8-bit cast


def test_exif_orientation_is_honoured():
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    upright = open_image(encode(image, "JPEG", exif=exif))
    assert upright.size == (20, 40)


def photo(size: tuple[int, int]) -> Image.Image:
    """A smooth colour gradient, so JPEG and resizing behave as on a photo."""
    x = np.linspace(0, 1, size[0])[None, :, None]
    y = np.linspace(0, 1, size[1])[:, None, None]
    return Image.fromarray((255 * np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)).astype(np.uint8))


def test_a_big_jpeg_decodes_at_a_reduced_scale_only_when_asked():
    data = encode(photo((2600, 1400)), "JPEG", quality=90)
    assert open_image(data).size == (2600, 1400)
    small = open_image(data, at_least=640)
    assert small.size == (1300, 700)  # half scale: a quarter (650 x 350) would be under 640 px
    assert original_size(small) == (2600, 1400) and original_size(open_image(data)) == (2600, 1400)
    png = encode(photo((1400, 1400)), "PNG")
    assert open_image(png, at_least=320).size == (1400, 1400)  # only JPEG has a reduced-scale decoder
    assert open_image(encode(photo((900, 700)), "JPEG"), at_least=640).size == (900, 700)  # nothing to spare


def test_reduced_scale_decoding_keeps_the_upright_original_size():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    upright = open_image(encode(photo((2600, 1400)), "JPEG", exif=exif), at_least=640)
    assert upright.size == (700, 1300) and original_size(upright) == (1400, 2600)


def test_preprocessing_a_huge_photo_stays_close_to_a_plain_resize():
    """Images up to 3x the encoder's size resize exactly as PIL's plain bilinear resize; bigger ones are
    first box-reduced (reducing_gap), which changes the pixels by at most a few levels."""
    pre = Preprocessing(64, (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # pixels out as 0..255

    def plain(im):
        return torch.from_numpy(np.array(im.resize((64, 64), Image.BILINEAR))).permute(2, 0, 1).float()

    for size, tolerance in (((180, 150), 0.0), ((1900, 1300), 2.0)):
        im = photo(size)
        assert float((pre([im])[0] - plain(im)).abs().max()) <= tolerance, size


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "lime", "blue")]
    for fmt in ("GIF", "WEBP", "PNG"):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
        image = open_image(buf.getvalue())
        r, g, b = image.convert("RGB").getpixel((0, 0))
        assert r > 200 and g < 50 and b < 50, fmt


@pytest.mark.parametrize("size", [(1, 1), (4000, 3), (3, 2500)])
def test_tiny_and_very_wide_images(size):
    usable(open_image(encode(Image.new("RGB", size, "blue"), "PNG")))


def test_bad_files_get_one_line_errors_naming_them(tmp_path):
    jpeg = encode(Image.new("RGB", (64, 64), "green"), "JPEG")
    cases = {
        "empty.jpg": b"",
        "notes.jpg": b"this is not an image at all",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "script.png": b"#!/bin/sh\necho hi\n",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageLoadError) as err:
            open_image(path)
        message = str(err.value)
        assert name in message and "\n" not in message
    with pytest.raises(ImageLoadError, match="no such file"):
        open_image(tmp_path / "missing.png")


def test_wrong_extension_still_decodes_a_real_image(tmp_path):
    path = tmp_path / "photo.gif"
    path.write_bytes(encode(Image.new("RGB", (5, 5)), "PNG"))
    assert open_image(path).size == (5, 5)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and carries almost none."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [9_000, 30_000, 100_000])
def test_decompression_bomb_is_refused_fast_and_small(side):
    """A PNG claiming side x side pixels: refused before its pixels are decoded."""
    bomb = png_header(side, side)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match="too large"):
        open_image(bomb, name="bomb.png")
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash(data):
    try:
        image = open_image(data, name="upload")
    except ImageLoadError as exc:
        assert str(exc).startswith("upload: ") and "\n" not in str(exc)
    else:
        usable(image)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]), st.integers(1, 40), st.integers(1, 40),
       st.integers(0, 10_000), st.data())
def test_damaged_real_images_never_crash(fmt, width, height, cut, data):
    image = Image.new("RGB", (width, height), (width * 5, height * 5, 90))
    raw = bytearray(encode(image, fmt))
    if data.draw(st.booleans()):
        del raw[min(cut, len(raw) - 1):]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        result = open_image(bytes(raw), name="damaged")
    except ImageLoadError as exc:
        assert "damaged" in str(exc)
    else:
        usable(result)


def _png_header(width: int, height: int, bit_depth: int = 16) -> bytes:
    """A valid PNG signature and header of any size, with an empty image stream: what a 560 KB file of
    zeros compresses to, without the test writing it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 6, 0, 0, 0)  # colour type 6: RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size, problem", [((1, 63_999_999), "too narrow"), ((63_999_999, 1), "too narrow"),
                                           ((6000, 6000), "too large to decode")])
def test_images_within_the_pixel_limit_that_still_need_gigabytes_are_refused(size, problem):
    """Issue 27: a 16-bit RGBA strip of 1 x 63,999,999 pixels is under the 64-megapixel limit yet peaked at
    4.2 GB; limits by side ratio and by decoded bytes refuse it before any pixel is decoded."""
    import time

    start = time.monotonic()
    with pytest.raises(ImageLoadError, match=problem):
        open_image(_png_header(*size), name="strip.png")
    assert time.monotonic() - start < 1
