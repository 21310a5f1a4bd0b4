"""Benchmark models in plain torch (no torchvision): ResNet-50, 2D U-Net, 3D U-Net.

Weights are random from a fixed seed (``torch.manual_seed(seed)`` before construction), so every
way of a task sees the same model. ``width`` scales the channel counts down for the smoke test.

Also usable as convscope model specs (``benchmarks.models:resnet50``) with the repository root on
``sys.path``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["resnet50", "unet2d", "unet3d", "build", "input_shape", "TASK_MODELS"]


# --------------------------------------------------------------------------------------------
# ResNet-50 (bottleneck, torchvision v1.5 layout: stride on the 3x3 conv)
# --------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """ResNet-50: stem, 4 stages of (3, 4, 6, 3) bottlenecks, global pool, 1000-way linear. 53 convs."""

    def __init__(self, num_classes: int = 1000, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(width, 3, 1)
        self.layer2 = self._stage(width * 2, 4, 2)
        self.layer3 = self._stage(width * 4, 6, 2)
        self.layer4 = self._stage(width * 8, 3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 8 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------------------------
# U-Nets (2D and 3D share one definition)
# --------------------------------------------------------------------------------------------


def _ops(dims: int) -> tuple[Any, Any, Any, Any]:
    if dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d
    return nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.MaxPool3d


class DoubleConv(nn.Module):
    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__()
        conv, _, norm, _ = _ops(dims)
        self.conv1 = conv(cin, cout, 3, padding=1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = conv(cout, cout, 3, padding=1, bias=False)
        self.bn2 = norm(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class UNet(nn.Module):
    """Classic U-Net: ``len(features)`` levels (the last is the bottleneck), max-pool down,
    transposed-conv up, skip concatenation, 1x1 output conv."""

    def __init__(self, dims: int = 2, in_channels: int = 1, out_channels: int = 2,
                 features: tuple[int, ...] = (32, 64, 128, 256, 512)) -> None:
        super().__init__()
        conv, up, _, pool = _ops(dims)
        self.encoders = nn.ModuleList()
        cin = in_channels
        for f in features[:-1]:
            self.encoders.append(DoubleConv(dims, cin, f))
            cin = f
        self.pool = pool(2)
        self.bottleneck = DoubleConv(dims, features[-2], features[-1])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for f in reversed(features[:-1]):
            self.ups.append(up(f * 2, f, 2, stride=2))
            self.decoders.append(DoubleConv(dims, f * 2, f))
        self.head = conv(features[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upconv, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(torch.cat([upconv(x), skip], dim=1))
        return self.head(x)


# --------------------------------------------------------------------------------------------
# factories (also convscope specs: benchmarks.models:resnet50)
# --------------------------------------------------------------------------------------------


def resnet50(seed: int = 0, width: int = 64) -> nn.Module:
    torch.manual_seed(seed)
    return ResNet50(width=width).eval()


def unet2d(seed: int = 0, base: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    return UNet(2, 1, 2, tuple(base * 2**i for i in range(5))).eval()


def unet3d(seed: int = 0, base: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return UNet(3, 1, 2, tuple(base * 2**i for i in range(5))).eval()


TASK_MODELS = {"resnet50": resnet50, "unet2d": unet2d, "unet3d": unet3d}

# full size and the smoke-test ("tiny") size of every model: (model kwargs, input shape)
SIZES: dict[str, dict[str, tuple[dict[str, int], tuple[int, ...]]]] = {
    "full": {
        "resnet50": ({"width": 64}, (1, 3, 224, 224)),
        "unet2d": ({"base": 32}, (1, 1, 256, 256)),
        "unet3d": ({"base": 16}, (1, 1, 96, 96, 96)),
    },
    "tiny": {
        "resnet50": ({"width": 4}, (1, 3, 32, 32)),
        "unet2d": ({"base": 4}, (1, 1, 32, 32)),
        "unet3d": ({"base": 2}, (1, 1, 16, 16, 16)),
    },
}


def build(name: str, size: str = "full", seed: int = 0) -> nn.Module:
    kwargs, _ = SIZES[size][name]
    return TASK_MODELS[name](seed=seed, **kwargs)


def input_shape(name: str, size: str = "full") -> tuple[int, ...]:
    return SIZES[size][name][1]
