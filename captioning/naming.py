"""Does the caption name what is in the photo? `captioning naming MODEL --labels labels.json --images DIR`.

Photos labelled with one caption word each (`{"cat.1.jpg": "cat", "dog.7.jpg": "dog"}`, the layout of an
Asirra / Kaggle cats-and-dogs sample) are captioned with and without tag guidance. Per label, the table
counts captions that name the label (the word or any form of it in the tag table: cat, cats, kitten), that
name another label of the file instead (the wrong animal), and that name neither."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .data.annotations import DatasetError
from .lexicon.tags import caption_words
from .limits import DEFAULT_BEAM_SIZE, MAX_BEAM_SIZE, whole_number

if TYPE_CHECKING:  # the command's --help stays quick: torch loads when it runs
    from .model import Captioner, Guide


@dataclass
class NamingRow:
    label: str
    photos: int = 0
    right: int = 0      # names the label
    wrong: int = 0      # names another label of the file and not this one
    neither: int = 0

    def share(self, count: int) -> str:
        return f"{count / self.photos:.1%}" if self.photos else "-"


def read_labels(path: str | Path) -> dict[str, str]:
    """{file name: label} from a JSON object; labels must be caption words of the tag table."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DatasetError(f"{path}: cannot read the labels ({exc})") from None
    if not isinstance(data, dict) or not data or not all(isinstance(k, str) and isinstance(v, str)
                                                         for k, v in data.items()):
        raise DatasetError(f'{path}: labels must be a JSON object {{"file name": "label", ...}} with one entry or more')
    unknown = sorted({v for v in data.values() if v not in caption_words()})
    if unknown:
        raise DatasetError(f"{path}: labels {unknown[:3]} are not caption words of the tag table "
                           "(captioning/lexicon/caption_words.tsv)")
    return data


def names(tokens: Sequence[str], label: str) -> bool:
    return bool(set(tokens) & set(caption_words()[label].names))


def tally(labelled: Iterable[tuple[str, Sequence[str]]], labels: Iterable[str]) -> list[NamingRow]:
    """Count, per label of `labels`, how the captions of its photos named it: (label, caption tokens) pairs."""
    rows = {label: NamingRow(label) for label in sorted(set(labels))}
    for label, tokens in labelled:
        row = rows[label]
        row.photos += 1
        if names(tokens, label):
            row.right += 1
        elif any(names(tokens, other) for other in rows if other != label):
            row.wrong += 1
        else:
            row.neither += 1
    return list(rows.values())


def naming_table(model: Captioner, labels: dict[str, str], images: str | Path, *, guide: Guide,
                 beam_size: int = DEFAULT_BEAM_SIZE, batch_size: int = 16) -> list[NamingRow]:
    """Caption every labelled photo and count how each label was named."""
    from .images import ImageLoadError, open_image

    files, said = sorted(labels), []
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        try:
            photos = [open_image(Path(images) / name, at_least=model.encoder.preprocess.decode_at_least)
                      for name in chunk]
        except ImageLoadError as exc:
            raise DatasetError(str(exc)) from None
        results = model.caption(photos, beam_size=beam_size, guide=guide)
        said += [(labels[name], result.tokens) for name, result in zip(chunk, results, strict=True)]
    return tally(said, labels.values())


def format_table(tables: dict[str, list[NamingRow]]) -> str:
    lines = ["| decoding | label | photos | names it | names another label | neither |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for setting, rows in tables.items():
        if len(rows) > 1:  # a share of every photo as well as of each label's
            rows = [*rows, NamingRow("(all)", *(sum(getattr(r, f) for r in rows)
                                                for f in ("photos", "right", "wrong", "neither")))]
        for row in rows:
            lines.append(f"| {setting} | {row.label} | {row.photos} | {row.share(row.right)} | "
                         f"{row.share(row.wrong)} | {row.share(row.neither)} |")
    return "\n".join(lines)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=add_help)
    p.add_argument("checkpoint", nargs="?", default=None, help="run folder, checkpoint or bundled name (default: "
                                                               "the default captioner)")
    p.add_argument("--labels", required=True, help='JSON object {"file name": "label"}; labels are caption words')
    p.add_argument("--images", required=True, help="folder of the labelled photos")
    p.add_argument("--beam-size", type=int, default=DEFAULT_BEAM_SIZE, help=f"default: {DEFAULT_BEAM_SIZE}")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", help="also write the table as JSON here")
    return p


def main(args: argparse.Namespace) -> dict:
    import torch

    from .model import DEFAULT_CAPTIONER, load_captioner

    whole_number("--beam-size", args.beam_size, 1, MAX_BEAM_SIZE)
    if args.threads:
        torch.set_num_threads(args.threads)
    labels = read_labels(args.labels)
    model = load_captioner(args.checkpoint or DEFAULT_CAPTIONER)
    tables = {f"beam {args.beam_size}, {name}": naming_table(model, labels, args.images, guide=guide,
                                                             beam_size=args.beam_size)
              for name, guide in (("guided (default)", None), ("unguided", False))}
    print(format_table(tables))
    out = {setting: [vars(row) for row in rows] for setting, rows in tables.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out
