"""Generators of the hostile inputs `bench/hostile.py` runs: images that cost gigabytes to decode, settings
files that never end, tiny checkpoints with wrong parts, small caption datasets. Written here, never shipped."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

CAPTIONS = ["a red circle above a blue square", "a green triangle", "two yellow squares next to each other",
            "a blue circle to the left of a red triangle", "a purple square below a green circle",
            "a red square"]
ALIAS_BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"] + [
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _rows(width: int, height: int, pixel: bytes) -> Iterator[bytes]:
    """The filtered scanlines of a flat image, in pieces of about 4 MB (never the whole image at once)."""
    row = b"\0" + pixel * width
    per_piece = max(1, 4 * 2**20 // len(row))
    for start in range(0, height, per_piece):
        yield row * min(per_piece, height - start)


def flat_png(path: Path, width: int, height: int, pixel: bytes = b"\0" * 8, *, bit_depth: int = 16,
             colour_type: int = 6, note: str = "") -> Path:
    """A real PNG of one colour, compressed as it streams: a 1 x 63,999,999 16-bit RGBA file is about 560 KB
    although its pixels take 512 MB. `note` (a tEXt chunk) makes equal images differ by their bytes."""
    compressor = zlib.compressobj(1)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth,
                                                                     colour_type, 0, 0, 0)))
        if note:
            out.write(_chunk(b"tEXt", b"Comment\0" + note.encode()))
        stream = b"".join(compressor.compress(piece) for piece in _rows(width, height, pixel)) + compressor.flush()
        out.write(_chunk(b"IDAT", stream) + _chunk(b"IEND", b""))
    return path


def photo(path: Path, colour: tuple[int, int, int] = (40, 90, 200), size: tuple[int, int] = (40, 30)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def karpathy_set(folder: Path, count: int = 6) -> tuple[Path, Path]:
    """A Karpathy-format caption file over `count` small photos (4 train, the rest val): a dataset that
    trains in seconds, for the cases that need a `captioning train` to get going."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(count):
        photo(images / f"{i}.jpg", (40 * i % 255, 90, 200))
        caption = CAPTIONS[i % len(CAPTIONS)]
        entries.append({"filename": f"{i}.jpg", "imgid": i, "split": "train" if i < 4 else "val",
                        "sentences": [{"raw": caption, "tokens": caption.split()}]})
    annotations = folder / "dataset_tiny.json"
    annotations.write_text(json.dumps({"images": entries}))
    return annotations, images


def coco_captions(path: Path, captions: dict[int, list]) -> Path:
    path.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.jpg"} for i in captions],
                                "annotations": [{"id": 10 * i + k, "image_id": i, "caption": c}
                                                for i, cs in captions.items() for k, c in enumerate(cs)]}))
    return path


def coco_results(path: Path, captions: dict[int, str]) -> Path:
    path.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in captions.items()]))
    return path


def tiny_checkpoint(folder: Path) -> Path:
    """A small random-weight captioner saved as a checkpoint (its encoder's weights saved with it)."""
    import torch

    from captioning import Captioner, ModelConfig, Vocabulary

    torch.manual_seed(0)
    config = ModelConfig(embed_dim=32, hidden_dim=64, attention_dim=32, dropout=0.0, image_size=64, max_len=16)
    return Captioner(config, Vocabulary.build(CAPTIONS, min_freq=1), pretrained_encoder=False).eval().save(folder)


def vocabulary_file(path: Path, words: int) -> Path:
    """A vocab.json of `words` words, written in pieces."""
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"words": ["<pad>", "<start>", "<end>", "<unk>"')
        for start in range(0, words, 100_000):
            out.write("".join(f', "w{i}"' for i in range(start, min(words, start + 100_000))))
        out.write("]}")
    return path
