"""CaptionDataset items from cached features or pixels, and the padding collate."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from captioning.data import (
    CaptionDataset,
    FeatureCache,
    caption_groups,
    collate_captions,
    load_karpathy,
    write_shapes_dataset,
)
from captioning.encoders import create_encoder
from captioning.vocab import Vocabulary


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    records = load_karpathy(write_shapes_dataset(out, image_size=64, splits=(4, 1, 1)), out)
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    encoder = create_encoder("efficientnet_lite0", pretrained=False, image_size=64)
    cache = FeatureCache.build(encoder, records, out / "cache", num_workers=0, progress=False)
    return records, vocab, encoder, cache


def test_pairs_from_cache(setup):
    records, vocab, _, cache = setup
    data = CaptionDataset(records, vocab, cache)
    assert len(data) == 5 * len(records)
    features, ids, index = data[7]  # second image, third caption
    assert index == 1 and features.shape == (4, 1280) and features.dtype == torch.float32
    assert ids.dtype == torch.long and ids[0] == vocab.start_id and ids[-1] == vocab.end_id
    assert vocab.decode(ids.tolist()) == records[1].captions[2].replace(",", "").split()
    assert torch.equal(features, cache[records[1].image_id].float())


def test_per_image_and_max_len(setup):
    records, vocab, _, cache = setup
    data = CaptionDataset(records, vocab, cache, per_image=True, max_len=2)
    assert len(data) == len(records)
    assert [data[i][2] for i in range(len(data))] == list(range(len(records)))
    ids = data[0][1]
    assert len(ids) <= 4 and ids[0] == vocab.start_id and ids[-1] == vocab.end_id


def test_pixels_path(setup):
    records, vocab, encoder, _ = setup
    pixels, ids, index = CaptionDataset(records, vocab, encoder)[0]
    assert pixels.shape == (3, 64, 64) and index == 0
    same = CaptionDataset(records, vocab, encoder.preprocess)[0][0]
    assert torch.equal(pixels, same)


def test_missing_features(setup, tmp_path):
    records, vocab, encoder, _ = setup
    partial = FeatureCache.build(encoder, records[:2], tmp_path, num_workers=0, progress=False)
    with pytest.raises(KeyError, match="4 images are not in the feature cache"):
        CaptionDataset(records, vocab, partial)


def test_collate_pads_to_batch_max(setup):
    records, vocab, _, cache = setup
    loader = DataLoader(CaptionDataset(records, vocab, cache), batch_size=6, shuffle=False,
                        collate_fn=collate_captions)
    features, captions, indices = next(iter(loader))
    assert features.shape == (6, 4, 1280)
    lengths = [len(vocab.encode(records[i // 5].captions[i % 5])) for i in range(6)]
    assert captions.shape == (6, max(lengths)) and captions.dtype == torch.long
    for row, n in zip(captions, lengths, strict=True):
        assert (row[n:] == vocab.pad_id).all() and (row[:n] != vocab.pad_id).all()
    assert indices.tolist() == [0, 0, 0, 0, 0, 1]


def test_collate_by_hand():
    batch = [(torch.zeros(2, 3), torch.tensor([1, 5, 2]), 4), (torch.ones(2, 3), torch.tensor([1, 2]), 9)]
    features, captions, indices = collate_captions(batch)
    assert features.shape == (2, 2, 3)
    assert captions.tolist() == [[1, 5, 2], [1, 2, 0]]
    assert indices.tolist() == [4, 9]


def test_caption_groups_cover_every_caption_once_per_epoch(setup):
    records, vocab, _, cache = setup
    groups = caption_groups(records, 5, epoch=0, seed=0)
    assert [i for i, _ in groups] == list(range(len(records)))
    assert all(sorted(c) == list(range(5)) for _, c in groups)  # shapes images have exactly 5 captions
    assert caption_groups(records, 5, epoch=0, seed=0) == groups  # a resumed run rebuilds the same batches
    assert caption_groups(records, 5, epoch=1, seed=0) != groups  # a fresh order every epoch
    three = caption_groups(records, 3, epoch=0, seed=0)
    assert all(len(set(c)) == 3 for _, c in three)
    seven = caption_groups(records, 7, epoch=0, seed=0)  # more than an image has: all of them, then repeats
    assert all(set(c) == set(range(5)) and len(c) == 7 for _, c in seven)


def test_grouped_items_collate_image_by_image(setup):
    records, vocab, _, cache = setup
    data = CaptionDataset(records, vocab, cache)
    groups = caption_groups(records, 3, epoch=0, seed=0)[:2]
    features, captions, indices = collate_captions([data[g] for g in groups])
    assert features.shape == (2, 4, 1280) and indices.tolist() == [0, 1]
    assert captions.shape[0] == 6  # rows 0-2: image 0's captions, rows 3-5: image 1's
    for row, (image, caption) in enumerate((i, c) for i, cs in groups for c in cs):
        ids = vocab.encode(records[image].captions[caption])
        assert captions[row, :len(ids)].tolist() == ids
    with pytest.raises(ValueError, match="same number of captions"):
        collate_captions([data[groups[0]], data[0]])
