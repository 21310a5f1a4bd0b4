"""Tiny torch models for the report, server and browser tests (loadable as ``tests.report.nets:NAME``)."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import torch
from torch import nn

EVIL = "<img src=x onerror=alert(1)>"
"""A layer name that is also an HTML injection: it must always show as text."""


class EvilNet(nn.Module):
    """RGB -> conv registered under :data:`EVIL` -> ReLU6 -> a 1x1 conv with ``wide`` channels."""

    def __init__(self, wide: int = 80) -> None:
        super().__init__()
        self.add_module(EVIL, nn.Conv2d(3, 4, 3, padding=1))
        self.act = nn.ReLU6()
        self.wide = nn.Conv2d(4, wide, 1)
        with torch.no_grad():
            self.wide.weight[3].zero_()  # one dead filter
            self.wide.bias[3] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wide(self.act(getattr(self, EVIL)(x)))


class Tiny3D(nn.Module):
    """1-channel volume -> Conv3d(1, 3) -> ReLU -> Conv3d(3, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv3d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


def evil_net() -> EvilNet:
    torch.manual_seed(0)
    return EvilNet().eval()


def small_unet() -> nn.Module:
    """The demo U-Net architecture with random weights (no shipped weights needed)."""
    from convscope.demo import build_demo_model

    torch.manual_seed(0)
    return build_demo_model("unet").eval()


def unet_image(seed: int = 0) -> np.ndarray:
    """``(64, 64)`` uint8 grayscale picture for the U-Net."""
    from convscope.demo import demo_sample

    return (np.clip(demo_sample("unet", seed)[0], 0, 1) * 255).astype(np.uint8)


def rgb_image(seed: int = 0, size: int = 24) -> np.ndarray:
    """``(size, size, 3)`` uint8 random RGB picture."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


class _StartTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def html_tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every start tag of ``html`` with its attributes, in document order."""
    parser = _StartTags()
    parser.feed(html)
    return parser.tags
