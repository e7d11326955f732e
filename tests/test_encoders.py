import urllib.error

import pytest
import torch
from PIL import Image

from captioning import WeightsUnavailableError, create_encoder, list_encoders


def test_registry_lists_all_encoders():
    assert {"efficientnet_lite0", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19"} <= set(list_encoders())


def test_unknown_encoder_lists_choices():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        create_encoder("alexnet9000", pretrained=False)


@pytest.mark.parametrize("name,channels", [("efficientnet_lite0", 1280), ("resnet50", 2048), ("vgg16", 512)])
def test_grid_shape_and_pooling(name, channels):
    enc = create_encoder(name, pretrained=False, image_size=64, grid_size=3)
    images = [Image.new("RGB", (90, 40), "red"), Image.new("L", (20, 30))]
    with torch.no_grad():
        grid = enc.encode_pil(images)
    assert grid.shape == (2, 9, channels)
    assert enc.num_positions == 9


def test_frozen_by_default_and_fine_tune_switch():
    frozen = create_encoder("efficientnet_lite0", pretrained=False)
    assert not any(p.requires_grad for p in frozen.parameters())
    tuned = create_encoder("efficientnet_lite0", pretrained=False, fine_tune_blocks=2)
    trainable = [n for n, p in tuned.named_parameters() if p.requires_grad]
    assert trainable and all("_blocks.15" in n or "_conv_head" in n or "_bn1" in n for n in trainable)
    tuned.train()
    assert not tuned.trunk.net._bn0.training  # frozen layers keep their BatchNorm statistics
    assert tuned.tuned_blocks[-1][1].training


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_lite_encoder_weights_are_real_imagenet_weights(variant):
    """skimage's chelsea photo must come out as a cat (ImageNet 281-285) through our loading code, and the
    encoder's own head (`class_logits` of its grid) is the packaged network's classifier."""
    data = pytest.importorskip("skimage.data")
    from captioning.efficientnet_lite import LITE_VARIANTS, EfficientNetLite, load_lite_imagenet

    enc = create_encoder(f"efficientnet_{variant}").eval()  # pretrained by default, at its native size
    assert enc.preprocess.image_size == LITE_VARIANTS[variant].image_size
    net = load_lite_imagenet(EfficientNetLite(variant)).eval()
    pixels = enc.preprocess([Image.fromarray(data.chelsea())])
    with torch.no_grad():
        grid = enc(pixels)
        logits = enc.class_logits(grid)
        assert torch.allclose(logits, net(pixels), atol=1e-3)
    assert 281 <= int(logits.argmax()) <= 285
    assert torch.allclose(net.features(pixels).flatten(2).transpose(1, 2), grid, atol=1e-4)


def test_offline_torchvision_weights_give_clear_error(monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailableError, match="efficientnet_lite0"):
        create_encoder("resnet101")


def test_inference_folds_batchnorm_without_changing_the_features():
    """Without autograd a frozen Lite0 runs a BatchNorm-folded copy of its trunk: same features, same
    state dict, and the copy follows a weight change."""
    torch.manual_seed(0)
    encoder = create_encoder("efficientnet_lite0", pretrained=False, image_size=64)
    pixels = torch.randn(2, 3, 64, 64)
    keys = list(encoder.state_dict())
    with torch.enable_grad():
        plain = encoder(pixels).detach()  # autograd on: the trunk itself
    with torch.inference_mode():
        folded = encoder(pixels)
    assert "_folded" in encoder.__dict__ and list(encoder.state_dict()) == keys
    torch.testing.assert_close(folded, plain, atol=1e-4, rtol=1e-4)
    state = {k: v * 1.5 if v.is_floating_point() else v for k, v in encoder.state_dict().items()}
    encoder.load_state_dict(state)
    with torch.enable_grad():
        plain = encoder(pixels).detach()
    with torch.no_grad():
        torch.testing.assert_close(encoder(pixels), plain, atol=1e-4, rtol=1e-4)
    tuned = create_encoder("efficientnet_lite0", pretrained=False, image_size=64, fine_tune_blocks=1)
    with torch.no_grad():
        tuned(pixels)
    assert "_folded" not in tuned.__dict__  # fine-tuned encoders keep their BatchNorm layers


@pytest.mark.parametrize("name", list_encoders())
def test_each_encoders_pretrained_config_is_what_it_builds(name):
    """`pretrained_config(name)` says, without building anything, what the built encoder takes and gives."""
    from captioning.encoders import pretrained_config

    cfg, encoder = pretrained_config(name), create_encoder(name, pretrained=False)
    assert (cfg.channels, cfg.grid_size, cfg.image_size) == (encoder.channels, encoder.grid_size,
                                                             encoder.preprocess.image_size)
    assert (cfg.mean, cfg.std, cfg.head_labels) == (encoder.preprocess.mean, encoder.preprocess.std,
                                                    encoder.head_labels)
