"""Small test nets for scans (importable as factories: tests.scan.nets:SlowNet)."""

from __future__ import annotations

import os
import time

import torch
from torch import nn


class TinyNet(nn.Module):
    """3 -> 4 -> 6 channels, a ReLU, a pool; a dead channel (zero weights, negative bias)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        with torch.no_grad():
            self.conv1.weight[3].zero_()
            self.conv1.bias[3] = -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.pool(self.relu(self.conv1(x))))


class SlowNet(TinyNet):
    """TinyNet whose forward sleeps (CONVSCOPE_TEST_SLEEP seconds, default 0.25), to be killed mid-scan."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(float(os.environ.get("CONVSCOPE_TEST_SLEEP", "0.25")))
        return super().forward(x)


class TinySeg(nn.Module):
    """Dense 2-class output at input resolution."""

    def __init__(self, in_channels: int = 3, seed: int = 5) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv1(x)))


class TinyNetRetrained(TinyNet):
    """TinyNet after a training step: the same layers, one weight changed."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.conv2.weight[0, 0, 1, 1] += 0.5


class SliceNet(nn.Module):
    """A 2D net for one-channel slices: conv -> ReLU -> pool -> conv."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.pool(self.relu(self.conv1(x))))


class SliceSeg(TinySeg):
    """TinySeg for one-channel slices: 2 classes at input resolution."""

    def __init__(self) -> None:
        super().__init__(in_channels=1, seed=8)


class FailsInCards(TinyNet):
    """TinyNet whose forward fails on a batch of 16: the channel cards' batch in pass 2, never pass 1's
    batches of at most 6 (``--batch-size 6``) nor the shape probes of one image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 16:
            raise RuntimeError("this model fails on 16 images")
        return super().forward(x)
