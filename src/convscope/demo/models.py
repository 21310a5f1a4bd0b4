"""Torch modules of the bundled demo models.

This module imports torch at the top; :mod:`convscope.demo` only imports it lazily (from
:func:`convscope.demo.load_demo` or attribute access such as ``convscope.demo.DemoUNet``), so
``import convscope`` and ``import convscope.demo`` stay framework-free.

Layer names (qualified dotted paths) are part of the demo's contract: docs, tests and the CLI
refer to e.g. ``stem.conv``, ``enc1.conv``, ``bottleneck.relu2``, ``up3``, ``dec1.conv2``, ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvBlock", "Stem", "DemoUNet", "DemoCNN"]


class ConvBlock(nn.Module):
    """Two ``3x3 conv -> BatchNorm -> ReLU`` stages; spatial size preserved.

    Submodules: ``conv``, ``bn``, ``relu``, ``conv2``, ``bn2``, ``relu2``. Both ReLUs are
    ``inplace=True`` on purpose: real models do this, and activation capture must cope with it.

    Args:
        in_channels: input channels.
        out_channels: output channels of both convolutions.

    Shapes:
        ``(N, in_channels, H, W)`` float32 -> ``(N, out_channels, H, W)`` float32.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return self.relu2(self.bn2(self.conv2(x)))


class Stem(nn.Module):
    """First stage of :class:`DemoCNN`: ``5x5 conv -> BatchNorm -> ReLU`` (in-place).

    Submodules: ``conv`` (5x5, padding 2, no bias), ``bn``, ``relu``. With 3 input channels each
    filter ``conv.weight[o]`` is a ``(3, 5, 5)`` RGB patch, viewable as a colour image.

    Shapes:
        ``(N, in_channels, H, W)`` float32 -> ``(N, out_channels, H, W)`` float32.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class DemoUNet(nn.Module):
    """A small four-level U-Net for binary segmentation.

    Encoder ``enc1 -> pool1 -> enc2 -> pool2 -> enc3 -> pool3 -> bottleneck``; decoder
    ``up3`` (2x2 transposed conv, stride 2) then ``dec3`` on ``torch.cat([up, enc3_out], dim=1)``,
    likewise ``up2``/``dec2`` (skip from ``enc2``) and ``up1``/``dec1`` (skip from ``enc1``);
    ``head`` is a 1x1 conv to per-pixel logits. Skips are concatenated functionally in
    :meth:`forward`, as in real U-Nets (there is no module for them).

    Args:
        in_channels: input image channels.
        out_channels: logit channels (1 for a binary mask).
        features: channels of ``enc1``, ``enc2``, ``enc3`` and ``bottleneck``.

    Shapes:
        ``(N, in_channels, H, W)`` float32 with ``H`` and ``W`` divisible by 8 ->
        ``(N, out_channels, H, W)`` float32 logits (``> 0`` means foreground). Other sizes fail
        in ``torch.cat`` because the upsampled map and the skip differ in size; the forward pass
        has no size check so that it stays free of shape-dependent Python control flow (tracing).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, features: Sequence[int] = (8, 16, 32, 64)) -> None:
        super().__init__()
        if len(features) != 4:
            raise ValueError(f"features must list 4 channel counts (enc1, enc2, enc3, bottleneck), got {tuple(features)}")
        f1, f2, f3, f4 = (int(f) for f in features)
        self.enc1 = ConvBlock(in_channels, f1)
        self.pool1 = nn.MaxPool2d(2)
        self.enc2 = ConvBlock(f1, f2)
        self.pool2 = nn.MaxPool2d(2)
        self.enc3 = ConvBlock(f2, f3)
        self.pool3 = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(f3, f4)
        self.up3 = nn.ConvTranspose2d(f4, f3, kernel_size=2, stride=2)
        self.dec3 = ConvBlock(2 * f3, f3)
        self.up2 = nn.ConvTranspose2d(f3, f2, kernel_size=2, stride=2)
        self.dec2 = ConvBlock(2 * f2, f2)
        self.up1 = nn.ConvTranspose2d(f2, f1, kernel_size=2, stride=2)
        self.dec1 = ConvBlock(2 * f1, f1)
        self.head = nn.Conv2d(f1, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool1(e1))
        e3 = self.enc3(self.pool2(e2))
        b = self.bottleneck(self.pool3(e3))
        d3 = self.dec3(torch.cat([self.up3(b), e3], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)


class DemoCNN(nn.Module):
    """A small image classifier.

    ``stem`` (5x5 conv on RGB, see :class:`Stem`) -> ``pool1`` -> ``block1`` -> ``pool2`` ->
    ``block2`` -> ``pool3`` -> ``block3`` -> ``gap`` (global average pool) -> ``classifier``
    (linear). Blocks are :class:`ConvBlock`; pools are 2x2 max pools.

    Args:
        num_classes: number of output logits.
        in_channels: input image channels (3 = RGB).
        widths: channels of ``stem``, ``block1``, ``block2``, ``block3``.

    Shapes:
        ``(N, in_channels, H, W)`` float32 (the demo uses 64x64; any size >= 8 works) ->
        ``(N, num_classes)`` float32 logits.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths: Sequence[int] = (16, 24, 32, 48)) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must list 4 channel counts (stem, block1, block2, block3), got {tuple(widths)}")
        w0, w1, w2, w3 = (int(w) for w in widths)
        self.stem = Stem(in_channels, w0)
        self.pool1 = nn.MaxPool2d(2)
        self.block1 = ConvBlock(w0, w1)
        self.pool2 = nn.MaxPool2d(2)
        self.block2 = ConvBlock(w1, w2)
        self.pool3 = nn.MaxPool2d(2)
        self.block3 = ConvBlock(w2, w3)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(self.pool1(self.stem(x)))
        x = self.block2(self.pool2(x))
        x = self.block3(self.pool3(x))
        return self.classifier(torch.flatten(self.gap(x), 1))
