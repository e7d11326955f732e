"""Pretrained CNN encoders behind a small registry: an image batch becomes a (B, positions, channels)
grid of features, the `a_i` annotation vectors of Show, Attend and Tell."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .config import shown
from .efficientnet_lite import LITE_VARIANTS, EfficientNetLite, fold_batchnorm, load_lite_imagenet
from .images import DECODE_AT_LEAST
from .ops import DerivedTensors

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (usually: no internet)."""


RESIZE_REDUCING_GAP = 3.0  # a 12-megapixel photo resizes several times faster (docs/performance.md)


@dataclass(frozen=True)
class Preprocessing:
    """How an encoder wants its pixels: square resize to `image_size`, then normalise."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def decode_at_least(self) -> int:
        """What `open_image(..., at_least=)` must keep for this input: its size, or the usual DECODE_AT_LEAST."""
        return max(DECODE_AT_LEAST, self.image_size)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images of any size and mode -> (B, 3, S, S) float tensor."""
        size = (self.image_size, self.image_size)
        # reducing_gap: an image more than 3x the size is first shrunk by an integer box filter (PIL: "indistinguishable
        # from fair resampling in most cases"); smaller ones, every data set's photos among them, resize exactly as before.
        arrays = [torch.frombuffer(bytearray(_rgb(im).resize(size, Image.BILINEAR, reducing_gap=RESIZE_REDUCING_GAP)
                                             .tobytes()), dtype=torch.uint8) for im in images]
        batch = torch.stack(arrays).view(len(images), size[1], size[0], 3).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.std).view(1, 3, 1, 1) * 255
        return (batch.float() - mean) / std


def _rgb(image: Image.Image) -> Image.Image:
    """RGB view of any PIL mode; transparent pixels become white, 16-bit images are rescaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        top = max(float(array.max()), 1.0)
        scale = 255.0 / (65535.0 if top > 255 else 255.0)
        return Image.fromarray((array * scale).clip(0, 255).astype("uint8")).convert("RGB")
    if image.mode == "F":
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        array = (array - lo) / (hi - lo) * 255 if hi > lo else array * 0
        return Image.fromarray(array.astype("uint8")).convert("RGB")
    return image.convert("RGB")


IMAGENET_1K = "imagenet-1k"  # the label set of every registered encoder's classifier head


class PooledLinear(nn.Module):
    """A classifier on the mean of the grid: the head of EfficientNet and ResNet after their last conv map."""

    def __init__(self, fc: nn.Linear):
        super().__init__()
        self.fc = fc

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.fc(grid.mean(dim=(2, 3)))


class ImageEncoder(DerivedTensors, nn.Module):
    """A CNN trunk whose last convolutional map is pooled to `grid_size` x `grid_size` positions.

    head: the network's own classifier, reading the same grid (B, C, g, g) -> (B, K) logits over the label
    set `head_labels` (None: the encoder has no classifier, and gives no tags). Frozen with the trunk."""

    def __init__(self, name: str, trunk: nn.Module, channels: int, preprocessing: Preprocessing,
                 grid_size: int | None, blocks: Sequence[nn.Module], fine_tune_blocks: int = 0,
                 fold: Callable[[nn.Module], nn.Module] | None = None, head: nn.Module | None = None,
                 head_labels: str | None = None):
        super().__init__()
        self.name = name
        self.head = head
        self.head_labels = head_labels if head is not None else None
        if head is not None:
            head.requires_grad_(False)
        self.fold = fold  # a folded copy of the trunk for inference, see `_inference_trunk` (None: run it as is)
        self.trunk = trunk
        self.channels = channels
        self.preprocess = preprocessing
        natural = -(-preprocessing.image_size // 32)  # stride-2 "same" convolutions round up: 260 px -> 9x9
        self.grid_size = grid_size or natural
        self.fine_tune_blocks = fine_tune_blocks
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.tuned_blocks = list(blocks)[len(blocks) - fine_tune_blocks:] if fine_tune_blocks else []
        for block in self.tuned_blocks:
            for p in block.parameters():
                p.requires_grad_(True)
        self.train()  # puts a frozen trunk's BatchNorm into eval mode from the start

    @property
    def num_positions(self) -> int:
        return self.grid_size * self.grid_size

    @property
    def frozen(self) -> bool:
        return self.fine_tune_blocks == 0

    def train(self, mode: bool = True) -> ImageEncoder:
        # Frozen layers keep their BatchNorm statistics: eval mode even while the decoder trains;
        # only the fine-tuned top blocks follow `mode`.
        super().train(mode)
        self.trunk.eval()
        if getattr(self, "head", None) is not None:
            self.head.eval()
        for block in getattr(self, "tuned_blocks", []):
            block.train(mode)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, grid*grid, channels)."""
        inference = self.fold is not None and self.frozen and not torch.is_grad_enabled()
        fmap = (self._inference_trunk() if inference else self.trunk)(images)  # (B, C, h, w)
        if fmap.shape[-2:] != (self.grid_size, self.grid_size):
            fmap = F.adaptive_avg_pool2d(fmap, self.grid_size)
        return fmap.flatten(2).transpose(1, 2)

    def _inference_trunk(self) -> nn.Module:
        """`fold(trunk)` (EfficientNet-Lite0: every BatchNorm folded into the convolution before it, 1.1-1.4x
        faster on a CPU), kept for inference calls until a weight changes (`DerivedTensors`)."""

        def build() -> nn.Module:
            with torch.inference_mode(False), torch.no_grad():
                return self.fold(self.trunk)

        return self.derived("folded", [*self.trunk.parameters(), *self.trunk.buffers()], build)

    def encode_pil(self, images: Sequence[Image.Image]) -> torch.Tensor:
        device = next(self.parameters()).device
        return self(self.preprocess(images).to(device))

    def class_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The classifier's logits (B, K) from this encoder's grid (B, P, C), as `forward` returned it."""
        if self.head is None:
            raise ValueError(f"encoder {self.name} has no classifier head")
        g = self.grid_size
        grid = features.transpose(1, 2).reshape(features.shape[0], features.shape[2], g, g)
        head_dtype = next(self.head.parameters()).dtype
        return self.head(grid.to(head_dtype)).float()


@dataclass(frozen=True)
class PretrainedConfig:
    """What an encoder's pretrained weights expect and give, known without building it (as timm's
    `pretrained_cfg`): input size, normalisation, channels and natural grid of its last conv map, and the
    label set of its classifier head (None: it has none, so no tags)."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels: int
    grid_size: int
    head_labels: str | None = IMAGENET_1K


PRETRAINED: dict[str, PretrainedConfig] = {}
_REGISTRY: dict[str, Callable[..., ImageEncoder]] = {}


def pretrained_config(name: str) -> PretrainedConfig:
    if name not in PRETRAINED:
        raise ValueError(f"unknown encoder {shown(name)}; choose one of: {', '.join(list_encoders())}")
    return PRETRAINED[name]


def register_encoder(name: str) -> Callable[[Callable[..., ImageEncoder]], Callable[..., ImageEncoder]]:
    def wrap(builder: Callable[..., ImageEncoder]) -> Callable[..., ImageEncoder]:
        _REGISTRY[name] = builder
        return builder

    return wrap


def list_encoders() -> list[str]:
    return sorted(_REGISTRY)


def create_encoder(name: str, *, pretrained: bool = True, grid_size: int | None = None,
                   image_size: int | None = None, fine_tune_blocks: int = 0) -> ImageEncoder:
    """Build a registered encoder. `pretrained=False` gives random weights (tests only)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown encoder {shown(name)}; choose one of: {', '.join(list_encoders())}")
    return _REGISTRY[name](pretrained=pretrained, grid_size=grid_size, image_size=image_size,
                           fine_tune_blocks=fine_tune_blocks)


class _LiteTrunk(nn.Module):
    """The network up to its last conv map (the classifier is the encoder's `head`)."""

    def __init__(self, net: EfficientNetLite):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def _efficientnet_lite(variant: str) -> None:
    spec = LITE_VARIANTS[variant]
    cfg = PRETRAINED[f"efficientnet_{variant}"] = PretrainedConfig(spec.image_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                                                                  1280, -(-spec.image_size // 32))

    @register_encoder(f"efficientnet_{variant}")
    def build(*, pretrained: bool, grid_size: int | None, image_size: int | None,
              fine_tune_blocks: int) -> ImageEncoder:
        net = EfficientNetLite(variant)
        if pretrained:
            load_lite_imagenet(net)
        head = PooledLinear(net._fc)
        del net._fc  # lives on as `head`, outside the trunk
        blocks = [*net._blocks, nn.ModuleList([net._conv_head, net._bn1])]
        pre = Preprocessing(image_size or cfg.image_size, cfg.mean, cfg.std)
        return ImageEncoder(f"efficientnet_{variant}", _LiteTrunk(net), cfg.channels, pre, grid_size,
                            blocks, fine_tune_blocks, fold=fold_batchnorm, head=head, head_labels=IMAGENET_1K)
        # fold: 1.1-1.4x on a CPU (bench.py --only components); ResNet-50 gained nothing


for _variant in LITE_VARIANTS:
    _efficientnet_lite(_variant)


def _torchvision_weights(builder: Callable[..., nn.Module], weights: object, pretrained: bool) -> nn.Module:
    if not pretrained:
        return builder(weights=None)
    try:
        return builder(weights=weights)
    except OSError as exc:  # URLError and friends are OSErrors
        raise WeightsUnavailableError(
            f"could not download torchvision weights {weights} ({exc}); connect to the internet once "
            "(they are cached under ~/.cache/torch/hub), or use --encoder efficientnet_lite0, "
            "which ships its ImageNet weights offline"
        ) from None


def _resnet(name: str, depth: int) -> None:
    # 448 pixels give a true 14x14 conv5 grid (stride 32), the paper's 196 locations.
    cfg = PRETRAINED[name] = PretrainedConfig(448, IMAGENET_MEAN, IMAGENET_STD, 2048, 14)

    @register_encoder(name)
    def build(*, pretrained: bool, grid_size: int | None, image_size: int | None,
              fine_tune_blocks: int) -> ImageEncoder:
        import torchvision.models as tvm

        builder = getattr(tvm, name)
        weights = getattr(tvm, f"ResNet{depth}_Weights").DEFAULT
        net = _torchvision_weights(builder, weights, pretrained)
        trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
        pre = Preprocessing(image_size or cfg.image_size, cfg.mean, cfg.std)
        blocks = [*net.layer3, *net.layer4]
        return ImageEncoder(name, trunk, cfg.channels, pre, grid_size or cfg.grid_size, blocks, fine_tune_blocks,
                            head=PooledLinear(net.fc), head_labels=IMAGENET_1K)


def _vgg(name: str, depth: int) -> None:
    # conv5 grid as in the paper: the features before the last max-pool (14x14x512 at 224).
    cfg = PRETRAINED[name] = PretrainedConfig(224, IMAGENET_MEAN, IMAGENET_STD, 512, 14)

    @register_encoder(name)
    def build(*, pretrained: bool, grid_size: int | None, image_size: int | None,
              fine_tune_blocks: int) -> ImageEncoder:
        import torchvision.models as tvm

        builder = getattr(tvm, name)
        weights = getattr(tvm, f"VGG{depth}_Weights").DEFAULT
        net = _torchvision_weights(builder, weights, pretrained)
        layers = list(net.features.children())
        trunk = nn.Sequential(*layers[:-1])
        pre = Preprocessing(image_size or cfg.image_size, cfg.mean, cfg.std)
        convs = [m for m in trunk if isinstance(m, nn.Conv2d)]
        head = nn.Sequential(layers[-1], net.avgpool, nn.Flatten(1), net.classifier)  # pool5, then fc6-fc8
        return ImageEncoder(name, trunk, cfg.channels, pre, grid_size or cfg.grid_size, convs, fine_tune_blocks, head=head,
                            head_labels=IMAGENET_1K)


for _depth in (50, 101, 152):
    _resnet(f"resnet{_depth}", _depth)
for _depth in (16, 19):
    _vgg(f"vgg{_depth}", _depth)
