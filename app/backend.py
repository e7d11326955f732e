"""What the page needs from the library, without Streamlit: finding models, reading uploads, timing
calls. Models are loaded and run only through the public APIs (`load_captioner`, `load_answerer`)."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from captioning.encoder_decoder import resolve_checkpoint
from captioning.engine.device import resolve_device
from captioning.images import DECODE_AT_LEAST, ImageLoadError, open_image, original_size, shrunk_copy
from captioning.model import BUNDLED_DIR as CAPTION_BUNDLED_DIR
from captioning.search import DEFAULT_BEAM_SIZE
from captioning.vocab import tokenize

from .overlay import display_copy

CAPTION_ENV = "SHOWTELL_CAPTION_MODEL"
VQA_ENV = "SHOWTELL_VQA_MODEL"
DEVICE_ENV = "SHOWTELL_DEVICE"
EXAMPLES_DIR = Path(__file__).parent / "examples"
VQA_BUNDLED_DIR = Path(__file__).resolve().parent.parent / "vqa" / "bundled"
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp"]

# What each bundled model knows, shown beside it; the first listed is the default.
BUNDLED_ABOUT = {
    "flickr8k": "Flickr8k (soft attention): everyday scenes of people and dogs in real photos; names what its "
                "ImageNet classifier is sure of (a cat, coffee, a rocket)",
    "flickr8k-hard": "Flickr8k (hard attention): everyday scenes of people and animals in real photos",
    "shapes-soft": "synthetic shapes only (coloured circles, squares, triangles); nonsense on photos",
    "shapes-hard": "synthetic shapes only (coloured circles, squares, triangles); nonsense on photos",
    "flickr8k-qa": "questions about real photos (is there, what is this, who, what, where, what colour, how many, "
                   "doing what)",
    "easy-vqa-shapes": "questions about synthetic shapes (easy-VQA); nonsense on photos",
}
TRAIN_SHAPES = ("captioning prepare shapes --out data/shapes && captioning train "
                "--annotations data/shapes/dataset_shapes.json --images data/shapes --out runs/shapes_soft")
TRAIN_COCO = ("captioning train --annotations dataset_coco.json --images DIR --out runs/coco_soft \\\n"
              "    --config configs/coco_soft.yaml")
TRAIN_VQA = "vqa train --config configs/vqa_easy_shapes.yaml --out runs/vqa_easy_shapes"


@dataclass
class LoadedImage:
    name: str
    digest: str                    # sha1 of the bytes: identifies the image across reruns
    nbytes: int
    image: Image.Image | None      # decoded, upright, first frame; None when unusable
    preview: Image.Image | None    # small RGB copy for drawing
    error: str | None              # the one-line ImageLoadError message

    @property
    def size_text(self) -> str:
        kib = self.nbytes / 1024
        weight = f"{self.nbytes} B" if kib < 1 else f"{kib:.0f} KB" if kib < 1024 else f"{kib / 1024:.1f} MB"
        if self.image is None:
            return weight
        width, height = original_size(self.image)
        return f"{width}×{height} px · {weight}"


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def load_image_bytes(name: str, data: bytes, key: str | None = None) -> LoadedImage:
    """Decode uploaded bytes; a bad file gives `error` (one line), never an exception."""
    key = key or digest(data)
    try:
        # a phone photo decodes 4x faster at a reduced scale; a huge PNG is shrunk after decoding, so the cache
        # of uploads holds what the models and the page need, not 8000x8000 pixels each
        image = shrunk_copy(open_image(data, name=name, at_least=DECODE_AT_LEAST))
        preview = display_copy(image)
    except ImageLoadError as exc:
        return LoadedImage(name, key, len(data), None, None, str(exc))
    except (OSError, ValueError) as exc:  # decoded, but in a pixel mode that cannot become RGB
        return LoadedImage(name, key, len(data), None, None, f"{name}: unsupported image ({exc})")
    return LoadedImage(name, key, len(data), image, preview, None)


def list_examples() -> list[Path]:
    """Real photos (JPEG) first, then the synthetic scenes (PNG) the shapes models know."""
    found = [p for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"}]
    return sorted(found, key=lambda p: (p.suffix.lower() == ".png", p.name))


def model_world(source: str | None) -> str | None:
    """"photos" or "shapes" for a bundled model; None for a checkpoint folder, whose world is unknown."""
    if source not in BUNDLED_ABOUT:
        return None
    return "shapes" if "shapes" in source else "photos"


def examples_for(source: str | None) -> list[Path]:
    """The examples the selected captioner knows how to describe: photos for the photo models, scenes for
    the shapes models, all of them for a checkpoint folder."""
    world, found = model_world(source), list_examples()
    if world is None:
        return found
    return [p for p in found if (p.suffix.lower() == ".png") == (world == "shapes")]


QUESTION_PLACEHOLDERS = {"photos": "e.g. Is there a dog? What is the man holding?",
                         "shapes": "e.g. what color is the circle?", None: "e.g. What is in the picture?"}


def question_placeholder(source: str | None) -> str:
    """A question of the kind the selected answerer was trained on."""
    return QUESTION_PLACEHOLDERS[model_world(source)]


def example_label(path: Path, longest: int = 34) -> str:
    """A chip-sized label: "photo: cat chelsea", "shapes: a red triangle" (long names end in "…")."""
    kind = "shapes" if path.suffix.lower() == ".png" else "photo"
    words = path.stem.replace("-", " ")
    label = f"{kind}: {words}"
    return label if len(label) <= longest else label[:longest - 1].rstrip() + "…"


def _bundled(folder: Path) -> list[str]:
    """Bundled model names, the photo models first (in BUNDLED_ABOUT's order), then any others."""
    if not folder.is_dir():
        return []
    names = {p.name for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()}
    order = list(BUNDLED_ABOUT)
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def model_about(name: str) -> str:
    """What a bundled model knows, in a few words ("" for checkpoints of one's own)."""
    return BUNDLED_ABOUT.get(name, "")


def bundled_captioners() -> list[str]:
    return _bundled(CAPTION_BUNDLED_DIR)


def bundled_answerers() -> list[str]:
    return _bundled(VQA_BUNDLED_DIR)


def answerer_loader() -> tuple[Callable[..., Any] | None, str | None]:
    """`vqa.load_answerer`, or None and why it cannot be used (the VQA package is optional here)."""
    try:
        from vqa import load_answerer
    except Exception as exc:  # an unfinished or broken vqa package must not take the captioner down
        module = sys.modules.get("vqa")
        if module is not None and getattr(module, "__file__", None) is None:
            return None, ("`vqa` resolves to an empty namespace package: the editable install predates "
                          "vqa/__init__.py; reinstall with `.venv/bin/pip install -e .`")
        return None, f"{type(exc).__name__}: {exc}"
    return load_answerer, None


def folder_stamp(folder: Path) -> float:
    """Latest modification time of a checkpoint folder's files: a retrained model is reloaded."""
    times = [p.stat().st_mtime for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    return max(times, default=0.0)


def _checkpoint(source: str, bundled_dir: Path) -> tuple[str, float]:
    """(resolved checkpoint folder, stamp) for a bundled name, checkpoint folder or run folder, by the one
    resolver of the API and the commands."""
    folder = resolve_checkpoint(Path(source).expanduser(), bundled_dir)
    return str(folder.resolve()), folder_stamp(folder)


def caption_checkpoint(source: str) -> tuple[str, float]:
    return _checkpoint(source, CAPTION_BUNDLED_DIR)


def vqa_checkpoint(source: str) -> tuple[str, float]:
    return _checkpoint(source, VQA_BUNDLED_DIR)


def app_device() -> torch.device:
    """Where the app runs its models: `SHOWTELL_DEVICE` (auto, cpu, cuda, cuda:N; default auto: a GPU when
    there is one), through the resolver every command uses."""
    return resolve_device(os.environ.get(DEVICE_ENV) or "auto")


def parameter_count(model: Any) -> str:
    params = getattr(model, "parameters", None)
    if params is None:
        return ""
    n = sum(p.numel() for p in params())
    return f"{n / 1e6:.1f} M parameters"


def describe_captioner(model: Any) -> str:
    c = model.config
    grid = getattr(model.encoder, "grid_size", c.grid_size)
    parts = [model.decoder.describe(), f"{c.encoder} {grid}×{grid} grid",
             f"{len(model.vocab)} words", parameter_count(model)]
    return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class Decoding:
    """How to search for a caption; `kwargs()` are the arguments of Captioner.caption."""

    method: str = "beam"          # beam | greedy | sample
    beam_size: int = DEFAULT_BEAM_SIZE
    temperature: float = 1.0
    seed: int = 0
    guide: bool = True            # say what the encoder's classifier is confident of (sampling never does)

    def kwargs(self) -> dict[str, Any]:
        if self.method == "sample":
            return {"sample": True, "temperature": self.temperature, "seed": self.seed, "beam_size": 1}
        if self.method == "greedy":
            return {"beam_size": 1, "guide": self.guide}
        return {"beam_size": self.beam_size, "guide": self.guide}

    def label(self) -> str:
        if self.method == "sample":
            return f"sampled at temperature {self.temperature:g} (seed {self.seed})"
        search = "greedy" if self.method == "greedy" else f"beam {self.beam_size}"
        return search if self.guide else f"{search}, unguided"


def tags_text(tags: list[tuple[str, float]]) -> str:
    """"cat 99% · dog 1%": what the encoder's classifier sees, in caption words."""
    return " · ".join(f"{word} {p:.0%}" for word, p in tags)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), milliseconds it took)."""
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1000


def ms_text(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


BOX = re.compile(r"^\s*-?[\d.]+(\s*,\s*-?[\d.]+){3}\s*$")  # x,y,width,height: a pointing model's choice


def parse_choices(text: str | None) -> list[str] | None:
    """Candidate answers separated by commas or new lines (a line "x,y,w,h" is one box); None when none."""
    choices = [c.strip() for line in (text or "").splitlines()
               for c in ([line] if BOX.match(line) else line.split(","))]
    choices = list(dict.fromkeys(c for c in choices if c))
    return choices or None


def question_labels(result: Any, question: str, count: int) -> list[str]:
    """Labels for the rows of an answer's attention: the question as the model read it (`question_tokens`)
    when the counts agree, else the question's words, else step numbers."""
    tokens = result.question_tokens
    if len(tokens) == count:
        asked = tokenize(question)
        # an unknown word is labelled by itself, marked, never as a bare <unk>
        return [f"{asked[i]} (unknown)" if str(t) == "<unk>" and i < len(asked) else str(t)
                for i, t in enumerate(tokens)]
    words = re.findall(r"[\w']+", question.lower())
    if len(words) == count:
        return words
    return [f"step {i + 1}" for i in range(count)] if count > 1 else ["answer"]


def env_source(name: str) -> str:
    return os.environ.get(name, "").strip()
