import json
import os
import pickle

import pytest
import torch
from PIL import Image

from captioning import CheckpointError, load_captioner
from captioning.checkpoint import WEIGHTS
from captioning.config import set_in_layout

from .helpers import tiny_captioner

IMAGES = [Image.new("RGB", (50, 70), "red"), Image.new("RGBA", (30, 30)), Image.new("L", (80, 20), 128)]


@pytest.mark.parametrize("overrides", [dict(), dict(attention="hard", hard_inference="argmax"),
                                       dict(cell="gru", num_layers=2, deep_output=False),
                                       dict(cell="rnn", gate=False, encoder="vgg16", grid_size=2)])
def test_round_trip_rebuilds_any_variant(tmp_path, vocab, overrides):
    model = tiny_captioner(vocab, **overrides)
    folder = model.save(tmp_path / "ckpt")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    loaded = load_captioner(folder)
    assert loaded.config == model.config and loaded.vocab.words == model.vocab.words
    a, b = model.caption(IMAGES, beam_size=2), loaded.caption(IMAGES, beam_size=2)
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.log_prob for r in a] == pytest.approx([r.log_prob for r in b], abs=1e-5)


def test_caption_api_shapes(vocab):
    model = tiny_captioner(vocab)
    results = model.caption(IMAGES, beam_size=3)
    assert len(results) == 3
    for r in results:
        assert r.text == " ".join(r.tokens)
        assert r.attention.shape == (len(r.tokens), 2, 2)
        assert r.alternatives[0][0] == r.text
    assert not torch.is_inference_mode_enabled()


def test_run_folder_resolves_best(tmp_path, vocab):
    model = tiny_captioner(vocab)
    model.save(tmp_path / "run" / "best")
    assert load_captioner(tmp_path / "run").config == model.config


def test_saving_replaces_atomically(tmp_path, vocab):
    model = tiny_captioner(vocab)
    model.save(tmp_path / "ckpt")
    model.save(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_pickle_checkpoint_is_refused_without_running_it(tmp_path, vocab):
    model = tiny_captioner(vocab)
    folder = model.save(tmp_path / "ckpt")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / WEIGHTS).write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_captioner(folder)
    torch.save({"x": torch.zeros(1)}, folder / WEIGHTS)
    with pytest.raises(CheckpointError, match="pickle"):
        load_captioner(folder)
    assert not marker.exists()


def test_truncated_weights_are_named(tmp_path, vocab):
    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_captioner(folder)


def test_config_that_does_not_match_weights(tmp_path, vocab):
    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    meta = json.loads((folder / "config.json").read_text())
    meta["model"]["decoder"]["hidden_dim"] = 96
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match the config"):
        load_captioner(folder)


def test_a_checkpoint_in_the_flat_layout_of_earlier_versions_loads_and_decodes_the_same(tmp_path, vocab):
    model = tiny_captioner(vocab)
    folder = model.save(tmp_path / "ckpt")
    meta = json.loads((folder / "config.json").read_text())
    assert set(meta["model"]) == {"encoder", "decoder"} and meta["model"]["decoder"]["kind"] == "show_attend_tell"
    encoder, decoder = meta["model"]["encoder"], meta["model"]["decoder"]
    flat = {"encoder": encoder.pop("name"), **encoder, **{k: v for k, v in decoder.items() if k != "kind"}}
    (folder / "config.json").write_text(json.dumps({**meta, "model": flat}))  # as saved before the nesting
    loaded = load_captioner(folder, pretrained_encoder=False)
    assert loaded.config == model.config
    grid = torch.randn(1, model.encoder.num_positions, model.encoder.channels)
    assert loaded.caption_features(grid)[0].text == model.caption_features(grid)[0].text


@pytest.mark.parametrize("model, says", [
    ({"encoder": {"name": "efficientnet_lite0", "hidden_dim": 8}, "decoder": {}}, "unknown encoder config keys: hidden_dim"),
    ({"encoder": {}, "decoder": {"image_size": 64}}, "unknown decoder config keys: image_size"),
    ({"encoder": {}, "decoder": {"kind": "show_attend_tell"}, "cell": "gru"}, "unknown model config keys: cell"),
    ({"encoder": ["efficientnet_lite0"], "decoder": {}}, "model.encoder must be a mapping"),
])
def test_a_key_in_the_wrong_section_of_the_layout_is_named(tmp_path, vocab, model, says):
    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "model": model}))
    with pytest.raises(CheckpointError, match=f"invalid model config \\({says}"):
        load_captioner(folder)


@pytest.mark.parametrize("key, value, says", [("encoder", "foonet", "unknown encoder 'foonet'"),
                                               ("hidden_dim", "wide", "invalid model config .*hidden_dim must be int")])
def test_config_describing_no_buildable_model_names_the_file(tmp_path, vocab, key, value, says):
    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    meta = json.loads((folder / "config.json").read_text())
    set_in_layout(meta["model"], **{key: value})
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"config.json: .*{says}"):
        load_captioner(folder)


@pytest.mark.parametrize("key, value", [("hidden_dim", 20000), ("image_size", 100000), ("hidden_dim", -5),
                                        ("max_len", "20"), ("gate", "no"), ("num_layers", 10**9)])
def test_config_sizes_are_bounded_before_anything_is_allocated(tmp_path, vocab, key, value):
    """A config.json asking for 20,000 hidden units (gigabytes) is refused at once, naming file and field."""
    import time

    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    meta = json.loads((folder / "config.json").read_text())
    set_in_layout(meta["model"], **{key: value})
    (folder / "config.json").write_text(json.dumps(meta))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"config.json: invalid model config \\({key} must be") as caught:
        load_captioner(folder)
    assert time.perf_counter() - start < 1.0 and "\n" not in str(caught.value)


def test_a_model_larger_than_free_memory_is_refused_before_allocating(tmp_path, vocab, monkeypatch):
    """Within the per-field bounds, 4 layers of 4,096 units still ask for ~4 GiB: checked against free memory."""
    import time

    import captioning.checkpoint as ckpt

    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    meta = json.loads((folder / "config.json").read_text())
    set_in_layout(meta["model"], hidden_dim=4096, num_layers=4)
    (folder / "config.json").write_text(json.dumps(meta))
    monkeypatch.setattr(ckpt, "available_memory", lambda: 2**30)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"config.json: the model it describes needs about \d+\.\d GiB .*"
                                              r"1\.0 GiB of memory is free"):
        load_captioner(folder)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("damage, says", [(lambda t: t.fill_(float("nan")), "NaN or infinite"),
                                           (lambda t: t.to(torch.int64), "stored as int64")])
def test_weights_must_be_finite_floats(tmp_path, vocab, damage, says):
    from safetensors.torch import load_file, save_file

    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    tensors = load_file(folder / "model.safetensors")
    name = next(k for k in tensors if k.endswith("weight"))
    tensors[name] = damage(tensors[name].clone())
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=f"weight {name} .*{says}"):
        load_captioner(folder)


def test_vocabulary_mismatch(tmp_path, vocab):
    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    words = json.loads((folder / "vocab.json").read_text())["words"]
    (folder / "vocab.json").write_text(json.dumps({"words": words + ["extra"]}))
    with pytest.raises(CheckpointError, match="not the vocabulary these weights were trained with"):
        load_captioner(folder)


@pytest.mark.parametrize("damage", ["no-config", "bad-json", "not-a-folder", "missing"])
def test_unusable_paths_are_named(tmp_path, vocab, damage):
    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    if damage == "no-config":
        (folder / "config.json").unlink()
    elif damage == "bad-json":
        (folder / "config.json").write_text("{oops")
    elif damage == "not-a-folder":
        folder = tmp_path / "model.pt"
        folder.write_bytes(b"\x80\x04junk")
    else:
        folder = tmp_path / "nothing-here"
    with pytest.raises(CheckpointError):
        load_captioner(folder)


def test_disk_full_while_saving_keeps_the_old_checkpoint(tmp_path, vocab, monkeypatch):
    import errno

    import captioning.checkpoint as ckpt

    model = tiny_captioner(vocab)
    folder = model.save(tmp_path / "ckpt")
    before = (folder / WEIGHTS).read_bytes()

    def full_disk(tensors, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(OSError, match="No space") as caught:
        model.save(folder)
    assert str(caught.value).startswith(f"{folder}: could not save the checkpoint (No space left on device)")
    assert (folder / WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary left behind
    assert load_captioner(folder).config == model.config


def test_crash_between_renames_recovers_previous_version(tmp_path, vocab):
    import os

    model = tiny_captioner(vocab)
    folder = model.save(tmp_path / "run" / "best")
    os.replace(folder, folder.with_name(".best.old"))  # state right after the first rename of a replace
    assert load_captioner(tmp_path / "run").config == model.config
    assert folder.is_dir()


def test_a_saved_checkpoint_is_readable_by_others_as_the_umask_allows(tmp_path, vocab):
    import stat

    old = os.umask(0o022)
    try:
        folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert {stat.S_IMODE((folder / n).stat().st_mode) for n in ("config.json", "vocab.json", "model.safetensors")} \
        == {0o644}


@pytest.mark.parametrize("kwargs, message", [
    (dict(beam_size=10_000), "beam_size must be between 1 and 64"),
    (dict(beam_size=2.5), "beam_size must be a whole number"),
    (dict(beam_size="3"), "beam_size must be a whole number"),
    (dict(max_len=10**6), "max_len must be between 1 and 200"),
    (dict(sample=True, temperature=float("nan")), "temperature must be a positive finite number"),
])
def test_decoding_arguments_out_of_bounds_are_one_line_errors(vocab, kwargs, message):
    model = tiny_captioner(vocab)
    with pytest.raises(ValueError, match=message):
        model.caption_features(torch.randn(1, 4, 1280), **kwargs)


def test_caption_refuses_what_is_not_an_image(vocab):
    with pytest.raises(TypeError, match=r"images\[0\] is NoneType, not a PIL image"):
        tiny_captioner(vocab).caption([None])


def test_a_reordered_vocabulary_is_refused(tmp_path, vocab):
    """The weights' rows belong to the words by position: swapping two words of vocab.json would write the
    wrong words without a word of warning. The weights carry the vocabulary's fingerprint."""
    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    data = json.loads((folder / "vocab.json").read_text())
    data["words"][5], data["words"][6] = data["words"][6], data["words"][5]
    (folder / "vocab.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="not the vocabulary these weights were trained with"):
        load_captioner(folder, pretrained_encoder=False)


def test_finite_but_absurd_weights_are_refused_at_load(tmp_path, vocab):
    from safetensors.torch import load_file, save_file

    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    weights = load_file(str(folder / WEIGHTS))
    from safetensors import safe_open
    with safe_open(str(folder / WEIGHTS), framework="pt") as f:
        metadata = f.metadata()
    save_file({k: v * 1e30 if v.is_floating_point() else v for k, v in weights.items()}, str(folder / WEIGHTS),
              metadata=metadata)
    with pytest.raises(CheckpointError, match="no finite word scores"):
        load_captioner(folder, pretrained_encoder=False)


def test_a_config_at_its_maxima_with_small_weights_is_refused_before_building(tmp_path, vocab):
    """Issue 27: config.json inside its bounds but at their maxima and a tiny weights file allocated 3 GB
    before the mismatch was found. The weights' header is compared with a model built on the meta device."""
    import time

    folder = tiny_captioner(vocab).save(tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    set_in_layout(config["model"], hidden_dim=4096, attention_dim=4096, embed_dim=4096, num_layers=4)
    (folder / "config.json").write_text(json.dumps(config))
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="weights do not match the config: .* tensors of another shape"):
        load_captioner(folder, pretrained_encoder=False)
    assert time.monotonic() - start < 5  # the shapes are compared on the meta device, nothing is allocated
