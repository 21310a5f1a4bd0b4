"""Tiny factories the CLI tests load as ``tests.cli.models:NAME``."""

from __future__ import annotations

import torch.nn as nn


class TinyNet(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))


