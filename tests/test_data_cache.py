"""FeatureCache: build, reuse, resume after an interruption, never trust unfinished rows."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from captioning.data import CacheError, FeatureCache, cache_key, load_karpathy, write_shapes_dataset
from captioning.encoders import create_encoder
from captioning.images import ImageLoadError, open_image


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    return load_karpathy(write_shapes_dataset(out, image_size=64, splits=(8, 2, 2)), out)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return create_encoder("efficientnet_lite0", pretrained=False, image_size=64)


def _count_images(encoder) -> list[int]:
    seen: list[int] = []
    encoder.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    return seen


def test_build_open_and_reuse(records, encoder, tmp_path):
    cache = FeatureCache.build(encoder, records, tmp_path, batch_size=5, num_workers=0, progress=False)
    assert cache.path == tmp_path / cache_key(encoder)
    assert cache_key(encoder).startswith("efficientnet_lite0-64px-2x2-")
    assert len(cache) == 12 and cache.shape == (12, 4, 1280)
    first = records[0]
    assert first.image_id in cache and "nope" not in cache
    with torch.inference_mode():
        expected = encoder.encode_pil([open_image(first.path)])[0]
    assert cache[first.image_id].dtype == torch.float16 and cache[first.image_id].shape == (4, 1280)
    torch.testing.assert_close(cache[first.image_id].float(), expected, atol=1e-2, rtol=1e-2)
    with pytest.raises(KeyError, match="not in the feature cache"):
        cache["nope"]
    reopened = pickle.loads(pickle.dumps(cache))  # what a DataLoader worker receives
    assert torch.equal(reopened[first.image_id], cache[first.image_id])
    assert FeatureCache.open(tmp_path)[first.image_id].shape == (4, 1280)  # the root holds one cache

    seen = _count_images(encoder)
    again = FeatureCache.build(encoder, records, tmp_path, num_workers=0, progress=False)
    assert seen == [] and len(again) == 12
    encoder._forward_hooks.clear()


def test_resume_after_interruption(records, encoder, tmp_path):
    bad = records[7].path
    original = bad.read_bytes()
    bad.write_bytes(b"not a png")
    try:
        with pytest.raises(ImageLoadError, match=rf"{bad.name}: not an image file"):
            FeatureCache.build(encoder, records, tmp_path, batch_size=3, num_workers=1, progress=False)
    finally:
        bad.write_bytes(original)
    folder = tmp_path / cache_key(encoder)
    partial = FeatureCache.open(folder)
    assert partial.ids == [r.image_id for r in records[:6]]  # batches before the bad one were committed
    assert records[6].image_id not in partial  # its batch was never written: not trusted

    seen = _count_images(encoder)
    cache = FeatureCache.build(encoder, records, tmp_path, batch_size=4, num_workers=0, progress=False)
    encoder._forward_hooks.clear()
    assert sum(seen) == 6 and len(cache) == 12
    with torch.inference_mode():
        expected = encoder.encode_pil([open_image(records[9].path)])[0]
    torch.testing.assert_close(cache[records[9].image_id].float(), expected, atol=1e-2, rtol=1e-2)


def test_unfinished_rows_ignored_and_truncation_detected(records, encoder, tmp_path):
    cache = FeatureCache.build(encoder, records[:4], tmp_path, num_workers=0, progress=False)
    with open(cache.path / "features.f16", "ab") as f:  # a half-written row after the committed ones
        f.write(b"\x00" * 1000)
    assert len(FeatureCache.open(cache.path)) == 4
    grown = FeatureCache.build(encoder, records[:6], tmp_path, num_workers=0, progress=False)
    assert len(grown) == 6 and (grown.path / "features.f16").stat().st_size == 6 * 4 * 1280 * 2
    with open(grown.path / "features.f16", "r+b") as f:
        f.truncate(100)
    with pytest.raises(CacheError, match="truncated"):
        FeatureCache.open(grown.path)
    (grown.path / "index.json").write_text("{")
    with pytest.raises(CacheError, match="unreadable cache index"):
        FeatureCache.open(grown.path)


def test_encoders_do_not_mix(records, encoder, tmp_path):
    FeatureCache.build(encoder, records[:2], tmp_path, num_workers=0, progress=False)
    torch.manual_seed(1)
    other = create_encoder("efficientnet_lite0", pretrained=False, image_size=64)
    assert cache_key(other) != cache_key(encoder)
    second = FeatureCache.build(other, records[:2], tmp_path, num_workers=0, progress=False)
    assert second.path != FeatureCache.open(tmp_path, encoder=encoder).path
    with pytest.raises(CacheError, match="caches found inside"):
        FeatureCache.open(tmp_path)
    with pytest.raises(CacheError, match="holds features of"):
        FeatureCache.build(encoder, records[:2], second.path, num_workers=0, progress=False)
    assert json.loads((second.path / "index.json").read_text())["encoder"] == "efficientnet_lite0"


def test_unreadable_images_stop_the_build_or_are_skipped(records, encoder, tmp_path, caplog):
    """A corrupt file raises one error naming it; with skip_invalid it is left out, the rows stay aligned."""
    folder = tmp_path / "images"
    folder.mkdir()
    broken = []
    for record in records[:5]:
        data = record.path.read_bytes()
        path = folder / record.path.name
        path.write_bytes(data[: len(data) // 3] if record is records[2] else data)  # a truncated PNG
        broken.append(type(record)(record.image_id, path, record.split, record.captions))
    with pytest.raises(ImageLoadError, match=records[2].path.name):
        FeatureCache.build(encoder, broken, tmp_path / "strict", batch_size=2, num_workers=0, progress=False)
    with caplog.at_level("WARNING"):
        cache = FeatureCache.build(encoder, broken, tmp_path / "lenient", batch_size=2, num_workers=0,
                                   progress=False, skip_invalid=True)
    assert "skipped 1 unreadable images" in caplog.text and records[2].path.name in caplog.text
    assert len(cache) == 4 and records[2].image_id not in cache
    with torch.inference_mode():
        for record in broken[:2] + broken[3:]:
            expected = encoder.encode_pil([open_image(record.path)])[0]
            torch.testing.assert_close(cache[record.image_id].float(), expected, atol=1e-2, rtol=1e-2)


def test_another_folders_image_of_the_same_name_is_encoded_again(records, encoder, tmp_path):
    """Issue 27: the cache was keyed by image id only, so evaluating on another folder with the same file
    names (all-black images) scored the training images' features. Rows now carry the file's size and mtime."""
    import dataclasses
    import os

    from PIL import Image

    cache = FeatureCache.build(encoder, records, tmp_path / "c", batch_size=5, num_workers=0, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    black = []
    for record in records[:3]:
        path = other / record.path.name
        Image.new("RGB", (64, 64), "black").save(path)
        os.utime(path, ns=(1, 1))
        black.append(dataclasses.replace(record, path=path))
    assert not cache.fresh(black[0].image_id, black[0].path) and cache.fresh(records[0].image_id, records[0].path)
    seen = _count_images(encoder)
    again = FeatureCache.build(encoder, black, tmp_path / "c", batch_size=5, num_workers=0, progress=False)
    assert sum(seen) == 3  # encoded again, not reused
    with torch.inference_mode():
        expected = encoder.encode_pil([open_image(black[0].path)])[0]
    torch.testing.assert_close(again[black[0].image_id].float(), expected, atol=1e-2, rtol=1e-2)
    assert again.fresh(black[0].image_id, black[0].path)
    seen.clear()
    FeatureCache.build(encoder, black, tmp_path / "c", batch_size=5, num_workers=0, progress=False)
    assert sum(seen) == 0  # and now reused


def test_a_full_disk_is_one_line_not_a_sigbus(records, encoder, tmp_path, monkeypatch):
    """Issue 27: the data file grew sparse and the memory-mapped writes died with SIGBUS on a full disk. Its
    blocks are allocated first, so a full disk is a CacheError naming the folder, and nothing is left half-grown."""
    import errno
    import os

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(CacheError, match="no room for the feature cache"):
        FeatureCache.build(encoder, records, tmp_path, batch_size=5, num_workers=0, progress=False)
    data = next(tmp_path.glob("*/features.f16"))
    assert data.stat().st_size == 0
