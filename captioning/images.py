"""Opening user images safely: one-line errors that name the file, EXIF orientation honoured,
first frame of animations, and a pixel limit that refuses decompression bombs before decoding."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # ~8000 x 8000; larger images are refused before their pixels are decoded
MAX_FILE_BYTES = 100 * 1024 * 1024


class ImageLoadError(ValueError):
    """The input is not a usable image; the message names it and says why."""


def open_image(source: str | os.PathLike | bytes | io.IOBase, name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode `source` (path, bytes or file object) into a loaded PIL image, upright, first frame."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "uploaded image")
    try:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
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
        return _decode(data, label, max_pixels)
    except ImageLoadError:
        raise
    except OSError as exc:
        raise ImageLoadError(f"{label}: cannot read file ({exc.strerror or exc})") from None


def _decode(data: bytes, label: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageLoadError(f"{label}: image too large ({width}x{height} = {width * height:,} pixels; "
                                     f"limit {max_pixels:,})")
            if width < 1 or height < 1:
                raise ImageLoadError(f"{label}: image has no pixels ({width}x{height})")
            image.seek(0)  # animated GIF/WebP/PNG: the first frame
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return image
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{label}: not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(f"{label}: image too large (refused as a decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        raise ImageLoadError(f"{label}: corrupt or truncated image ({exc})") from None
