"""Torch datasets over `ImageRecord`s: (image, caption) pairs for training and image pixels for encoding."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from PIL import Image
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from ..images import ImageLoadError, open_image
from ..vocab import Vocabulary
from .records import ImageRecord

Preprocess = Callable[[Sequence[Image.Image]], torch.Tensor]  # e.g. an encoder's `Preprocessing`


class FeatureLookup(Protocol):
    """Anything that maps an image id to its encoder grid, e.g. a `FeatureCache`."""

    def __getitem__(self, image_id: int | str) -> torch.Tensor: ...

    def __contains__(self, image_id: object) -> bool: ...


def load_pixels(record: ImageRecord, preprocess: Preprocess) -> torch.Tensor:
    """Decode and preprocess one image -> (3, S, S); bad files raise `ImageLoadError` naming them."""
    return preprocess([open_image(record.path)])[0]


class CaptionDataset(Dataset):
    """Items are (features (P, D) or pixels (3, S, S), caption ids with <start>/<end>, image index).

    An integer index is one (image, caption) pair; an index `(image_index, caption_indices)` (see
    `caption_groups`) is one image with several of its captions, as a list of id tensors.

    `source` is a feature lookup (a `FeatureCache`: the fast path for a frozen encoder) or pixels'
    preprocessing (an encoder or its `preprocess`: for fine-tuning). Training uses one item per
    (image, caption) pair; `per_image=True` gives one item per image (its first caption), for
    evaluation, where the references are `records[image_index].captions`."""

    def __init__(self, records: Sequence[ImageRecord], vocab: Vocabulary, source: FeatureLookup | Preprocess, *,
                 per_image: bool = False, max_len: int | None = None, dtype: torch.dtype = torch.float32):
        self.records, self.vocab, self.max_len, self.dtype = list(records), vocab, max_len, dtype
        source = getattr(source, "preprocess", source)  # an ImageEncoder brings its own preprocessing
        if callable(source):
            self.features, self.preprocess = None, source
        else:
            self.features, self.preprocess = source, None
            missing = [r.image_id for r in self.records if r.image_id not in source]
            if missing:
                raise KeyError(f"{len(missing)} images are not in the feature cache {getattr(source, 'path', '')} "
                               f"(first: {missing[0]!r}); build it with FeatureCache.build over these records")
        self.pairs = [(i, 0 if per_image else j) for i, r in enumerate(self.records)
                      for j in range(1 if per_image else len(r.captions))]

    def __len__(self) -> int:
        return len(self.pairs)

    def image(self, index: int) -> torch.Tensor:
        """Features or pixels of `records[index]`."""
        record = self.records[index]
        if self.features is not None:
            return self.features[record.image_id].to(self.dtype)
        return load_pixels(record, self.preprocess).to(self.dtype)

    def caption_ids(self, text: str) -> torch.Tensor:
        ids = self.vocab.encode(text)
        if self.max_len is not None and len(ids) > self.max_len + 2:
            ids = [*ids[: self.max_len + 1], self.vocab.end_id]  # keep <start>, max_len words, <end>
        return torch.tensor(ids, dtype=torch.long)

    def __getitem__(self, index: int | tuple[int, Sequence[int]]
                    ) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor], int]:
        if isinstance(index, tuple):
            image_index, caption_indices = index
            captions = self.records[image_index].captions
            return self.image(image_index), [self.caption_ids(captions[j]) for j in caption_indices], image_index
        image_index, caption_index = self.pairs[index]
        caption = self.records[image_index].captions[caption_index]
        return self.image(image_index), self.caption_ids(caption), image_index


def caption_groups(records: Sequence[ImageRecord], per_image: int, epoch: int, seed: int
                   ) -> list[tuple[int, tuple[int, ...]]]:
    """One `CaptionDataset` index per image: `per_image` of its captions, chosen afresh every epoch.

    An image with exactly `per_image` captions (COCO, Flickr: 5) gives each of them once per epoch;
    one with more gives a different subset each epoch; one with fewer repeats some. The choice
    depends only on (seed, epoch), so a resumed run rebuilds the same batches."""
    rng = random.Random(f"{seed}/{epoch}")
    groups = []
    for i, record in enumerate(records):
        count = len(record.captions)
        if count:
            order = rng.sample(range(count), count)
            groups.append((i, tuple(order[j % count] for j in range(per_image))))
    return groups


def collate_captions(batch: Sequence[tuple[torch.Tensor, torch.Tensor | list[torch.Tensor], int]]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack images, right-pad captions with <pad>=0 to the batch's longest -> (I, ...), (I * k, T), (I,).

    Items with k captions each (`caption_groups` indices) give rows i*k .. i*k+k-1 for image i, the
    layout `ShowAttendTellDecoder.forward` takes; plain items give one caption row per image."""
    images, captions, indices = zip(*batch, strict=True)
    groups = [item if isinstance(item, list) else [item] for item in captions]
    if len({len(g) for g in groups}) > 1:
        raise ValueError("every item of a batch must carry the same number of captions")
    rows = [c for g in groups for c in g]
    padded = pad_sequence(rows, batch_first=True, padding_value=Vocabulary.pad_id)
    return torch.stack(images), padded, torch.tensor(indices, dtype=torch.long)


class PixelDataset(Dataset):
    """Pixels of records for encoding in DataLoader workers (the JPEG decode + resize is the slow part).

    An undecodable image comes back as its error message, so the main process can raise one clean
    `ImageLoadError` naming the file instead of a worker traceback."""

    def __init__(self, records: Sequence[ImageRecord], preprocess: Preprocess):
        self.records, self.preprocess = list(records), preprocess

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str]:
        try:
            return load_pixels(self.records[index], self.preprocess), index, ""
        except ImageLoadError as exc:
            return None, index, str(exc)


def collate_pixels(batch: Sequence[tuple[torch.Tensor | None, int, str]]
                   ) -> tuple[torch.Tensor | None, list[int], list[tuple[int, str]]]:
    """-> (pixels of the readable images or None, their indices, [(index, error)] of the others)."""
    good = [(p, i) for p, i, e in batch if not e]
    errors = [(i, e) for _, i, e in batch if e]
    return (torch.stack([p for p, _ in good]) if good else None), [i for _, i in good], errors
