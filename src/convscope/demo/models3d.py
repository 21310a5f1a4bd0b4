"""The bundled 3D demo U-Net (torch)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DemoUNet3D"]


class _Block3D(nn.Sequential):
    """``conv3x3x3 -> BatchNorm -> ReLU`` twice."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
        )


class DemoUNet3D(nn.Module):
    """A 3-level 3D U-Net (6-12-24 channels, concatenation skips, 2x2x2 max pools).

    Input ``(N, 1, X, Y, Z)`` float32 in [0, 1] with every side divisible by 4; output
    ``(N, 1, X, Y, Z)`` logits, > 0 = organ.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, features: tuple[int, int, int] = (6, 12, 24)) -> None:
        super().__init__()
        f1, f2, f3 = features
        self.enc1 = _Block3D(in_channels, f1)
        self.pool1 = nn.MaxPool3d(2)
        self.enc2 = _Block3D(f1, f2)
        self.pool2 = nn.MaxPool3d(2)
        self.bottleneck = _Block3D(f2, f3)
        self.up2 = nn.ConvTranspose3d(f3, f2, 2, stride=2)
        self.dec2 = _Block3D(2 * f2, f2)
        self.up1 = nn.ConvTranspose3d(f2, f1, 2, stride=2)
        self.dec1 = _Block3D(2 * f1, f1)
        self.head = nn.Conv3d(f1, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool1(e1))
        b = self.bottleneck(self.pool2(e2))
        d2 = self.dec2(torch.cat([e2, self.up2(b)], dim=1))
        d1 = self.dec1(torch.cat([e1, self.up1(d2)], dim=1))
        return self.head(d1)
