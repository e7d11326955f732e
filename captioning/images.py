"""Opening user images safely: one-line errors that name the file, EXIF orientation honoured,
first frame of animations, and a pixel limit that refuses decompression bombs before decoding."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .small_files import not_regular

MAX_PIXELS = 64_000_000  # ~8000 x 8000; larger images are refused before their pixels are decoded
MAX_DECODED_BYTES = 256 * 2**20  # pixels x bytes per pixel: a 16-bit RGBA image needs 8 bytes a pixel
MAX_ASPECT = 10_000      # longer side / shorter side: a 1 x 64,000,000 strip costs gigabytes to resize
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3,
                   "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2,
                   "I;16N": 2}
MAX_FILE_BYTES = 100 * 1024 * 1024
# What callers that shrink photos ask `open_image` to keep (`at_least`): above every bundled encoder's input
# (at most 320 px) and the app's 448 px preview; the commands take the larger of this and their model's input.
DECODE_AT_LEAST = 640


class ImageLoadError(ValueError):
    """The input is not a usable image; the message names it and says why."""


def open_image(source: str | os.PathLike | bytes | io.IOBase, name: str | None = None,
               max_pixels: int = MAX_PIXELS, at_least: int | None = None) -> Image.Image:
    """Decode `source` (path, bytes or file object) into a loaded PIL image, upright, first frame.

    at_least: a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size (the JPEG decoder's own DCT scaling,
    4x faster for a 12-megapixel phone photo) as long as both sides stay at least this long; for callers
    that shrink the image anyway (a model's input, a preview). `original_size` gives the file's size."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "uploaded image")
    try:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            problem = not_regular(path, "an image file")  # a FIFO would block, /dev/zero never ends
            if problem:
                raise ImageLoadError(problem.replace(str(path), label, 1))
            if not path.is_file():
                raise ImageLoadError(f"{label}: no such file")
            size = path.stat().st_size
            if size == 0:
                raise ImageLoadError(f"{label}: empty file (0 bytes)")
            if size > MAX_FILE_BYTES:
                raise ImageLoadError(f"{label}: file too large ({size / 2**20:.0f} MiB > {MAX_FILE_BYTES // 2**20} MiB)")
            data = path.read_bytes()
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            data = source.read(MAX_FILE_BYTES + 1)
        if len(data) == 0:
            raise ImageLoadError(f"{label}: empty file (0 bytes)")
        if len(data) > MAX_FILE_BYTES:
            raise ImageLoadError(f"{label}: file too large (> {MAX_FILE_BYTES // 2**20} MiB)")
        return _decode(data, label, max_pixels, at_least)
    except ImageLoadError:
        raise
    except OSError as exc:
        raise ImageLoadError(f"{label}: cannot read file ({exc.strerror or exc})") from None


def shrunk_copy(image: Image.Image, at_least: int = DECODE_AT_LEAST) -> Image.Image:
    """`image` reduced by a whole factor while both sides stay at least `at_least` pixels (what every model
    here and the previews need), remembering its `original_size`: the app keeps this, not 8000x8000 pixels
    per upload."""
    factor = min(image.size) // at_least
    if factor < 2:
        return image
    size = original_size(image)
    small = image.reduce(factor)
    small.info[ORIGINAL_SIZE_KEY] = size
    return small


def original_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the upright image as the file holds it, before any reduced-scale decoding."""
    return image.info.get(ORIGINAL_SIZE_KEY, image.size)


ORIGINAL_SIZE_KEY = "showtell_original_size"
SWAPPED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90 degrees


def _raw_mode(image: Image.Image) -> str:
    """The file's own pixel layout ("RGBA;16B" for a 16-bit PNG, which PIL decodes through 8 bytes a pixel)."""
    args = image.tile[0][3] if getattr(image, "tile", None) else None
    if isinstance(args, tuple):
        args = args[0] if args else None
    return args if isinstance(args, str) else ""


def _decode(data: bytes, label: str, max_pixels: int, at_least: int | None = None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Damaged EXIF ("Corrupt EXIF data", "Tag data larger than file"): the pixels are fine and are used
            # as stored; PIL's warnings would only leak onto the commands' stderr.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageLoadError(f"{label}: image too large ({width}x{height} = {width * height:,} pixels; "
                                     f"limit {max_pixels:,})")
            if width < 1 or height < 1:
                raise ImageLoadError(f"{label}: image has no pixels ({width}x{height})")
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise ImageLoadError(f"{label}: image too narrow ({width}x{height}; sides at most "
                                     f"{MAX_ASPECT:,} to 1)")
            depth = BYTES_PER_PIXEL.get(image.mode, 4) * (2 if ";16" in _raw_mode(image) else 1)
            if width * height * depth > MAX_DECODED_BYTES:
                raise ImageLoadError(f"{label}: image too large to decode ({width}x{height} {image.mode}, "
                                     f"{width * height * depth / 2**20:,.0f} MiB; limit {MAX_DECODED_BYTES // 2**20} MiB)")
            image.seek(0)  # animated GIF/WebP/PNG: the first frame
            if at_least is not None and image.format == "JPEG":
                image.draft(None, (at_least, at_least))
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            image.load()
            reduced = image.size != (width, height)  # `draft` took a reduced scale
            swapped = reduced and image.getexif().get(0x0112) in SWAPPED_ORIENTATIONS
            image = ImageOps.exif_transpose(image) or image
            if reduced:
                image.info[ORIGINAL_SIZE_KEY] = (height, width) if swapped else (width, height)
            return image
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{label}: not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(f"{label}: image too large (refused as a decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        raise ImageLoadError(f"{label}: corrupt or truncated image ({exc})") from None
