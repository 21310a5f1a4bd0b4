"""Tiny U-Nets of many styles (and non-U-Nets) built in code, for the U-Net finder tests.

Every model is small (a few channels) so a forward pass on a 16-64 px input takes milliseconds.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


def conv(dims: int, cin: int, cout: int, k: int = 3, padding: int = 1, stride: int = 1) -> nn.Module:
    return CONV[dims](cin, cout, k, padding=padding, stride=stride)


class DoubleConv(nn.Sequential):
    """conv-BN-ReLU twice (a helper block nested in the models)."""

    def __init__(self, cin: int, cout: int, dims: int = 2, padding: int = 1, inplace: bool = True) -> None:
        norm = NORM[dims]
        super().__init__(
            conv(dims, cin, cout, 3, padding),
            norm(cout),
            nn.ReLU(inplace=inplace),
            conv(dims, cout, cout, 3, padding),
            norm(cout),
            nn.ReLU(inplace=inplace),
        )


class UNet(nn.Module):
    """Classic U-Net: ``levels`` resolution levels (``levels - 1`` poolings), ModuleList blocks.

    Args:
        levels: resolution levels including the bottleneck (2..6).
        up: ``"transpose"`` (ConvTranspose), ``"upsample"`` (nn.Upsample + conv) or ``"interpolate"``
            (F.interpolate to the skip's size + conv).
        merge: ``"concat"`` or ``"add"``.
        dims: 1, 2 or 3.
    """

    def __init__(self, levels: int = 4, *, up: str = "transpose", merge: str = "concat", dims: int = 2,
                 in_ch: int = 1, out_ch: int = 2, base: int = 4) -> None:
        super().__init__()
        self.merge, self.up_kind, self.dims = merge, up, dims
        chans = [base * (i + 1) for i in range(levels)]
        self.down = nn.ModuleList()
        cin = in_ch
        for c in chans:
            self.down.append(DoubleConv(cin, c, dims))
            cin = c
        self.pool = POOL[dims](2)
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(levels - 2, -1, -1):
            deep, here = chans[i + 1], chans[i]
            if up == "transpose":
                self.ups.append(CONVT[dims](deep, here, 2, stride=2))
            elif up == "upsample":
                self.ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv(dims, deep, here, 1, 0)))
            else:
                self.ups.append(conv(dims, deep, here, 1, 0))
            self.dec.append(DoubleConv(2 * here if merge == "concat" else here, here, dims))
        self.head = conv(dims, chans[0], out_ch, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec, skip in zip(self.ups, self.dec, reversed(skips)):
            if self.up_kind == "interpolate":
                x = up(F.interpolate(x, size=skip.shape[2:], mode="nearest"))
            else:
                x = up(x)
            x = torch.cat([skip, x], dim=1) if self.merge == "concat" else x + skip
            x = dec(x)
        return self.head(x)


def center_crop(t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    h, w = t.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return t[:, :, top : top + size[0], left : left + size[1]]


class UNet2015(nn.Module):
    """The original 2015 U-Net style: valid (unpadded) convs and centre-cropped skips; 3 levels."""

    def __init__(self, in_ch: int = 1, out_ch: int = 2, base: int = 4) -> None:
        super().__init__()
        self.enc1 = DoubleConv(in_ch, base, padding=0)
        self.enc2 = DoubleConv(base, 2 * base, padding=0)
        self.bottom = DoubleConv(2 * base, 4 * base, padding=0)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * base, 2 * base, 2, stride=2)
        self.dec2 = DoubleConv(4 * base, 2 * base, padding=0)
        self.up1 = nn.ConvTranspose2d(2 * base, base, 2, stride=2)
        self.dec1 = DoubleConv(2 * base, base, padding=0)
        self.head = nn.Conv2d(base, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # 60 -> 56 -> 28 -> 24 -> 12 -> 8 -> 16 -> 12 -> 24 -> 20
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        u2 = self.up2(b)
        d2 = self.dec2(torch.cat([center_crop(e2, u2.shape[-2:]), u2], 1))
        u1 = self.up1(d2)
        d1 = self.dec1(torch.cat([center_crop(e1, u1.shape[-2:]), u1], 1))
        return self.head(d1)


class OddPadUNet(nn.Module):
    """Odd input sizes: floor pooling, transposed-conv upsampling, then F.pad to the skip's size."""

    def __init__(self, base: int = 4) -> None:
        super().__init__()
        self.enc1 = DoubleConv(1, base)
        self.enc2 = DoubleConv(base, 2 * base)
        self.bottom = DoubleConv(2 * base, 4 * base)
        self.up2 = nn.ConvTranspose2d(4 * base, 2 * base, 2, stride=2)
        self.dec2 = DoubleConv(4 * base, 2 * base)
        self.up1 = nn.ConvTranspose2d(2 * base, base, 2, stride=2)
        self.dec1 = DoubleConv(2 * base, base)
        self.head = nn.Conv2d(base, 1, 1)

    @staticmethod
    def pad_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        dy, dx = ref.shape[2] - x.shape[2], ref.shape[3] - x.shape[3]
        return F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([e2, self.pad_to(self.up2(b), e2)], dim=1))
        d1 = self.dec1(torch.cat([e1, self.pad_to(self.up1(d2), e1)], dim=1))
        return self.head(d1)


class Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = DoubleConv(cin + cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class NestedContainersUNet(nn.Module):
    """Blocks nested in ModuleDict / Sequential / helper modules (milesial-style Down/Up); 4 levels."""

    def __init__(self, base: int = 4) -> None:
        super().__init__()
        self.stages = nn.ModuleDict(
            {
                "stem": nn.Sequential(DoubleConv(3, base)),
                "down": nn.ModuleList([Down(base, 2 * base), Down(2 * base, 4 * base), Down(4 * base, 8 * base)]),
            }
        )
        self.decoder = nn.ModuleDict(
            {"up": nn.ModuleList([Up(8 * base, 4 * base), Up(4 * base, 2 * base), Up(2 * base, base)])}
        )
        self.outc = nn.Sequential(nn.Conv2d(base, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages["stem"](x)
        skips = [x]
        for down in self.stages["down"]:
            x = down(x)
            skips.append(x)
        x = skips.pop()
        for up in self.decoder["up"]:
            x = up(x, skips.pop())
        return self.outc(x)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al., as in the common PyTorch implementation)."""

    def __init__(self, g_ch: int, x_ch: int, inter: int) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(g_ch, inter, 1), nn.BatchNorm2d(inter))
        self.w_x = nn.Sequential(nn.Conv2d(x_ch, inter, 1), nn.BatchNorm2d(inter))
        self.psi = nn.Sequential(nn.Conv2d(inter, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        psi = self.relu(self.w_g(g) + self.w_x(x))
        return x * self.psi(psi)


class AttentionUNet(nn.Module):
    """Attention U-Net: every skip goes through an attention gate before the concat; 4 levels."""

    def __init__(self, base: int = 4) -> None:
        super().__init__()
        ch = [base, 2 * base, 4 * base, 8 * base]
        self.enc = nn.ModuleList([DoubleConv(1 if i == 0 else ch[i - 1], c) for i, c in enumerate(ch)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.att = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in (2, 1, 0):
            self.up.append(nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(ch[i + 1], ch[i], 3, padding=1), nn.ReLU()))
            self.att.append(AttentionGate(ch[i], ch[i], max(1, ch[i] // 2)))
            self.dec.append(DoubleConv(2 * ch[i], ch[i]))
        self.head = nn.Conv2d(base, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, att, dec in zip(self.up, self.att, self.dec):
            d = up(x)
            s = att(g=d, x=skips.pop())
            x = dec(torch.cat((s, d), dim=1))
        return self.head(x)


class DeepSupervisionUNet(UNet):
    """A 4-level U-Net that also returns side outputs from the deeper decoder levels (upsampled)."""

    def __init__(self) -> None:
        super().__init__(levels=4)
        self.side = nn.ModuleList([nn.Conv2d(c, 2, 1) for c in (12, 8)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        size = x.shape[2:]
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        sides = []
        for j, (up, dec, skip) in enumerate(zip(self.ups, self.dec, reversed(skips))):
            x = dec(torch.cat([skip, up(x)], dim=1))
            if j < 2:
                sides.append(F.interpolate(self.side[j](x), size=size, mode="bilinear", align_corners=False))
        return (self.head(x), *sides)


class UNetPlusPlus(nn.Module):
    """UNet++ (dense nested skips) of depth 3: nodes X[i][j], i = level, j = column; 10 skips."""

    def __init__(self, base: int = 4, depth: int = 3, deep_supervision: bool = False) -> None:
        super().__init__()
        self.depth = depth
        self.deep_supervision = deep_supervision
        ch = [base * 2**i for i in range(depth + 1)]
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.blocks = nn.ModuleDict()
        for i in range(depth + 1):
            for j in range(depth + 1 - i):
                if j == 0:
                    cin = 1 if i == 0 else ch[i - 1]
                else:
                    cin = ch[i] * j + ch[i + 1]
                self.blocks[f"x{i}{j}"] = DoubleConv(cin, ch[i])
        self.heads = nn.ModuleList([nn.Conv2d(ch[0], 1, 1) for _ in range(depth if deep_supervision else 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        X: dict[tuple[int, int], torch.Tensor] = {}
        for j in range(self.depth + 1):
            for i in range(self.depth + 1 - j):
                if j == 0:
                    X[i, 0] = self.blocks[f"x{i}0"](x if i == 0 else self.pool(X[i - 1, 0]))
                else:
                    inputs = [X[i, k] for k in range(j)] + [self.up(X[i + 1, j - 1])]
                    X[i, j] = self.blocks[f"x{i}{j}"](torch.cat(inputs, 1))
        if self.deep_supervision:
            return [head(X[0, j + 1]) for j, head in enumerate(self.heads)]
        return self.heads[0](X[0, self.depth])


class ResidualDecoderUNet(nn.Module):
    """ResUNet-like: residual blocks (adds inside one resolution) in encoder and decoder, concat skips."""

    class Res(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1))
            self.short = nn.Conv2d(cin, cout, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.body(x) + self.short(x))

    def __init__(self, base: int = 4) -> None:
        super().__init__()
        self.e1, self.e2, self.b = self.Res(1, base), self.Res(base, 2 * base), self.Res(2 * base, 4 * base)
        self.u2, self.u1 = nn.ConvTranspose2d(4 * base, 2 * base, 2, 2), nn.ConvTranspose2d(2 * base, base, 2, 2)
        self.d2, self.d1 = self.Res(4 * base, 2 * base), self.Res(2 * base, base)
        self.head = nn.Conv2d(base, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.e1(x)
        e2 = self.e2(F.avg_pool2d(e1, 2))
        b = self.b(F.avg_pool2d(e2, 2))
        d2 = self.d2(torch.cat([e2, self.u2(b)], 1))
        d1 = self.d1(torch.cat([e1, self.u1(d2)], 1))
        return self.head(d1)


# ------------------------------------------------------------------------------------------------
# not U-Nets
# ------------------------------------------------------------------------------------------------


class PlainCNN(nn.Module):
    """Same-resolution conv stack with a per-pixel head: no downsampling."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNetFCN(nn.Module):
    """ResNet-style residual blocks with strided downsampling and a dense (spatial) head at 1/4."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(BasicBlock(1, 4, 1), BasicBlock(4, 4, 1), BasicBlock(4, 8, 2), BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x))


class ResNetClassifier(ResNetFCN):
    """The same residual trunk with global pooling and a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(x), 1), 1))


class EncoderOnly(nn.Module):
    """conv + pool stages with a 1x1 head at the lowest resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(DoubleConv(1, 4), nn.MaxPool2d(2), DoubleConv(4, 8), nn.MaxPool2d(2), DoubleConv(8, 8))
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class EncoderDecoderNoSkip(nn.Module):
    """Down and back up (with residual blocks in the decoder) but no skip connection."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(DoubleConv(1, 4), nn.MaxPool2d(2), DoubleConv(4, 8), nn.MaxPool2d(2))
        self.dec = nn.Sequential(nn.ConvTranspose2d(8, 8, 2, 2), BasicBlock(8, 8, 1), nn.ConvTranspose2d(8, 4, 2, 2), BasicBlock(4, 4, 1))
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dec(self.enc(x)))


# ------------------------------------------------------------------------------------------------
# constructed models for the skip metrics
# ------------------------------------------------------------------------------------------------


class TwoBranch(nn.Module):
    """One skip level with exactly controllable branches (2 resolution levels).

    ``enc = 1x1 conv (weight 1)``; ``dec = nearest-upsample(avgpool(enc))``; on an input constant on
    2x2 blocks both branches are equal. ``zero`` multiplies one branch by 0 before the merge.
    The head sums the merged channels with weight 1, so both branches get the same gradient.
    """

    def __init__(self, merge: str = "concat", zero: str | None = None) -> None:
        super().__init__()
        self.merge, self.zero = merge, zero
        self.enc = nn.Conv2d(1, 1, 1, bias=False)
        self.pool = nn.AvgPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(2 if merge == "concat" else 1, 1, 1, bias=False)
        with torch.no_grad():
            self.enc.weight.fill_(1.0)
            self.head.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        d = self.up(self.pool(e))
        s = e * 0.0 if self.zero == "skip" else e
        if self.zero == "decoder":
            d = d * 0.0
        m = torch.cat([s, d], 1) if self.merge == "concat" else s + d
        return self.head(m)


def block_constant_input(size: int = 8, seed: int = 0) -> torch.Tensor:
    """(1, 1, size, size) positive input constant on 2x2 blocks."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 1, size // 2, size // 2, generator=g) + 0.5
    return small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class StemUNet(nn.Module):
    """smp-style: a stride-2 stem and max-pool (no skip at full resolution), ResNet stages with
    residual adds, a decoder that upsamples with F.interpolate and concatenates, and a last decoder
    block without skip back at the input resolution. Levels 0..3 above a 1/16 bottleneck."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, stride=2, padding=3), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.blocks = nn.ModuleList([DoubleConv(16 + 8, 8), DoubleConv(8 + 8, 8), DoubleConv(8, 4)])
        self.head = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.stem(x)  # 1/2
        f2 = self.layer1(self.maxpool(f1))  # 1/4
        f3 = self.layer2(f2)  # 1/8 (bottleneck)
        d = self.blocks[0](torch.cat([F.interpolate(f3, scale_factor=2.0, mode="nearest"), f2], 1))
        d = self.blocks[1](torch.cat([F.interpolate(d, scale_factor=2.0, mode="nearest"), f1], 1))
        d = self.blocks[2](F.interpolate(d, scale_factor=2.0, mode="nearest"))
        return self.head(d)


class GlobalContextUNet(UNet):
    """A 3-level U-Net whose bottleneck adds globally pooled context (pool to 1x1, conv, interpolate back)."""

    def __init__(self) -> None:
        super().__init__(levels=3)
        self.context = nn.Conv2d(12, 12, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        g = self.context(F.adaptive_avg_pool2d(x, 1))
        x = x + F.interpolate(g, size=x.shape[2:], mode="nearest")
        for up, dec, skip in zip(self.ups, self.dec, reversed(skips)):
            x = dec(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


# ================================================================================================
# styles real projects use (issue 10): residual units, transformer encoders, additive skips,
# multi-scale heads, explicit pads. Each class builds several nets (2D/3D, depths, widths).
# ================================================================================================


class ResidualUnit(nn.Module):
    """``subunits`` x (conv-norm-PReLU), the first conv strided; plus a shortcut (strided 1x1/3x3 conv when
    the stride or the width changes, else the identity); returns ``body(x) + shortcut(x)``."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int = 1, *, subunits: int = 2, shortcut_k: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = cin
        for i in range(subunits):
            layers += [CONV[dims](c, cout, 3, stride=stride if i == 0 else 1, padding=1), NORM[dims](cout), nn.PReLU()]
            c = cout
        self.body = nn.Sequential(*layers)
        if stride != 1 or cin != cout:
            k = shortcut_k if stride != 1 else 1
            self.short: nn.Module = CONV[dims](cin, cout, k, stride=stride, padding=k // 2)
        else:
            self.short = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.short(x)


class SkipWrap(nn.Module):
    """Wraps the deeper part of the net: ``cat([x, deeper(x)])`` along the channels."""

    def __init__(self, deeper: nn.Module) -> None:
        super().__init__()
        self.deeper = deeper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.deeper(x)], dim=1)


class ResUnitUNet(nn.Module):
    """Recursive residual-unit U-Net: every stage is ``Sequential(down, SkipWrap(deeper), up)`` with
    ``down`` a strided residual unit and ``up`` a transposed conv followed by a residual unit (so a
    residual add sits between the upsampling and the concat of the stage above). The innermost
    ``SkipWrap`` concatenates the deepest encoder tensor with the bottom block's output.

    ``channels`` has one entry per downsampling plus the bottom block's width; the stages' concats sit
    at levels 1..len(channels)-1 (level 0, the input resolution, has no skip).
    """

    def __init__(self, dims: int = 2, channels: tuple[int, ...] = (4, 8, 16), *, in_ch: int = 1, out_ch: int = 2,
                 shortcut_k: int = 3, decoder_units: int = 1) -> None:
        super().__init__()

        def stage(cin: int, cout: int, chans: tuple[int, ...], top: bool) -> nn.Module:
            c = chans[0]
            if len(chans) > 2:
                deeper = stage(c, c, chans[1:], False)
                up_in = 2 * c
            else:
                deeper = ResidualUnit(dims, c, chans[1], 1, shortcut_k=shortcut_k)
                up_in = c + chans[1]
            down = ResidualUnit(dims, cin, c, 2, shortcut_k=shortcut_k)
            up_layers: list[nn.Module] = [CONVT[dims](up_in, cout, 3, stride=2, padding=1, output_padding=1)]
            for _ in range(decoder_units):
                up_layers.append(ResidualUnit(dims, cout, cout, 1, subunits=1))
            if top:
                up_layers.append(CONV[dims](cout, cout, 1))
            return nn.Sequential(down, SkipWrap(deeper), nn.Sequential(*up_layers))

        self.model = stage(in_ch, out_ch, tuple(channels), True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResUnitNoSkip(nn.Module):
    """Strided residual units down and transposed conv + residual units up, no concat: not a U-Net."""

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        self.enc = nn.Sequential(ResidualUnit(dims, 1, 4, 2), ResidualUnit(dims, 4, 8, 2))
        self.dec = nn.Sequential(
            CONVT[dims](8, 4, 2, stride=2), ResidualUnit(dims, 4, 4, 1), CONVT[dims](4, 2, 2, stride=2),
            ResidualUnit(dims, 2, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


# -- transformer encoders -------------------------------------------------------------------------


class TokenAttention(nn.Module):
    """Multi-head self-attention on tokens ``(N, L, C)`` written out (qkv linear, reshapes, softmax)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        out = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, length, c)
        return self.proj(out)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block on ``(N, L, C)``: attention and MLP, each with a residual add."""

    def __init__(self, dim: int, heads: int, *, torch_mha: bool = False) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.torch_mha = torch_mha
        self.att: nn.Module = nn.MultiheadAttention(dim, heads, batch_first=True) if torch_mha else TokenAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + (self.att(h, h, h, need_weights=False)[0] if self.torch_mha else self.att(h))
        return x + self.mlp(self.norm2(x))


def tokens_to_grid(x: torch.Tensor, grid: tuple[int, ...], style: str = "transpose") -> torch.Tensor:
    """``(N, L, C)`` tokens -> ``(N, C, *grid)`` feature map: ``"transpose"`` (transpose then reshape)
    or ``"permute"`` (view as a channels-last grid, permute, contiguous)."""
    if style == "permute":
        d = len(grid)
        return x.view(x.shape[0], *grid, x.shape[2]).permute(0, d + 1, *range(1, d + 1)).contiguous()
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)


class ConvBlock(nn.Module):
    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(CONV[dims](cin, cout, 3, padding=1), NORM[dims](cout), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Projection(nn.Module):
    """Transposed-conv projection of a token grid up by ``steps`` levels (each convT then a conv block)."""

    def __init__(self, dims: int, cin: int, cout: int, steps: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = cin
        for _ in range(steps):
            layers += [CONVT[dims](c, cout, 2, stride=2), ConvBlock(dims, cout, cout)]
            c = cout
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpCat(nn.Module):
    """Decoder block: transposed conv up one level, concat with the skip, conv block."""

    def __init__(self, dims: int, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.up = CONVT[dims](cin, cout, 2, stride=2)
        self.block = ConvBlock(dims, cout + skip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class ViTUNet(nn.Module):
    """UNETR-like: a ViT encoder (patch conv of stride ``2**depth``, ``(N, L, C)`` tokens, transformer
    blocks with residual adds), hidden states reshaped to the token grid and projected up by transposed
    convs to each level as skips, the last hidden state as the bottleneck, a convT + concat decoder.

    Skips: level 0 from a conv block on the input, level ``l`` (1..depth-1) from the projection of
    hidden state ``l``; ``depth`` skips in all.
    """

    def __init__(self, dims: int = 2, depth: int = 3, *, size: int = 32, in_ch: int = 1, dim: int = 16,
                 heads: int = 2, torch_mha: bool = False, grid_style: str = "transpose") -> None:
        super().__init__()
        self.dims, self.depth, self.grid_style = dims, depth, grid_style
        self.grid = (size >> depth,) * dims
        self.patch = CONV[dims](in_ch, dim, 2**depth, stride=2**depth)
        self.pos = nn.Parameter(torch.zeros(1, (size >> depth) ** dims, dim))
        self.blocks = nn.ModuleList([TransformerBlock(dim, heads, torch_mha=torch_mha) for _ in range(depth)])
        self.enc0 = ConvBlock(dims, in_ch, 4)
        self.proj = nn.ModuleList([Projection(dims, dim, 4 * 2**lvl, depth - lvl) for lvl in range(1, depth)])
        self.ups = nn.ModuleList()
        c = dim
        for lvl in range(depth - 1, -1, -1):
            skip = 4 * 2**lvl
            self.ups.append(UpCat(dims, c, skip, skip))
            c = skip
        self.head = CONV[dims](4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        hidden = []
        for block in self.blocks:
            t = block(t)
            hidden.append(t)
        skips = [self.enc0(x)] + [p(tokens_to_grid(hidden[i], self.grid, self.grid_style)) for i, p in enumerate(self.proj)]
        d = tokens_to_grid(hidden[-1], self.grid, self.grid_style)
        for up, skip in zip(self.ups, reversed(skips)):
            d = up(d, skip)
        return self.head(d)


class ViTNoSkip(nn.Module):
    """A ViT encoder with a progressive transposed-conv decoder and no skip (SETR-like): not a U-Net."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, 16, 8, stride=8)
        self.blocks = nn.Sequential(TransformerBlock(16, 2), TransformerBlock(16, 2))
        self.dec = nn.Sequential(nn.ConvTranspose2d(16, 8, 2, 2), nn.ReLU(), nn.ConvTranspose2d(8, 4, 4, 4), nn.Conv2d(4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.blocks(self.patch(x).flatten(2).transpose(1, 2))
        return self.dec(tokens_to_grid(t, (4, 4)))


class ViTClassifier(nn.Module):
    """Tokens, transformer blocks, mean over tokens, linear head: not a U-Net."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, 16, 4, stride=4)
        self.blocks = nn.Sequential(TransformerBlock(16, 2), TransformerBlock(16, 2))
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.patch(x).flatten(2).transpose(1, 2)).mean(1))


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """Channels-last ``(N, *S, C)`` -> windows ``(N * windows, ws**dims, C)``."""
    n, *spatial, c = x.shape
    dims = len(spatial)
    shape = [n]
    for s in spatial:
        shape += [s // ws, ws]
    x = x.view(*shape, c)
    order = [0] + [1 + 2 * i for i in range(dims)] + [2 + 2 * i for i in range(dims)] + [1 + 2 * dims]
    return x.permute(*order).reshape(-1, ws**dims, c)


def window_reverse(w: torch.Tensor, ws: int, n: int, spatial: tuple[int, ...]) -> torch.Tensor:
    dims = len(spatial)
    c = w.shape[-1]
    x = w.reshape(n, *[s // ws for s in spatial], *([ws] * dims), c)
    order = [0]
    for i in range(dims):
        order += [1 + i, 1 + dims + i]
    order.append(1 + 2 * dims)
    return x.permute(*order).reshape(n, *spatial, c)


class SwinBlock(nn.Module):
    """Windowed self-attention on a channels-last grid (optionally cyclically shifted) + MLP."""

    def __init__(self, dim: int, heads: int, ws: int, shift: int) -> None:
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.att = TokenAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, *S, C)
        n, *spatial, _ = x.shape
        axes = tuple(range(1, 1 + len(spatial)))
        h = self.norm1(x)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift,) * len(axes), dims=axes)
        w = self.att(window_partition(h, self.ws))
        h = window_reverse(w, self.ws, n, tuple(spatial))
        if self.shift:
            h = torch.roll(h, shifts=(self.shift,) * len(axes), dims=axes)
        x = x + h
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Halve a channels-last grid: strided slices of every 2x2(x2) neighbourhood, concat, norm, linear."""

    def __init__(self, dims: int, dim: int) -> None:
        super().__init__()
        self.dims = dims
        self.norm = nn.LayerNorm(dim * 2**dims)
        self.reduce = nn.Linear(dim * 2**dims, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.dims == 2:
            for i in (0, 1):
                for j in (0, 1):
                    parts.append(x[:, i::2, j::2, :])
        else:
            for i in (0, 1):
                for j in (0, 1):
                    for k in (0, 1):
                        parts.append(x[:, i::2, j::2, k::2, :])
        return self.reduce(self.norm(torch.cat(parts, dim=-1)))


class SwinUNet(nn.Module):
    """Swin-UNETR-like: patch conv (stride 2) to a channels-last grid, stages of windowed (shifted)
    attention with patch merging between them; every stage's output is permuted to ``(N, C, *S)`` and
    goes through a residual conv block (the skip's source); a convT + concat decoder.

    With ``direct_skip`` the deepest non-bottom stage's permuted grid is concatenated as is (no conv
    block on the skip). Skips: level 0 (conv block on the input) and one per stage above the bottom.
    """

    def __init__(self, dims: int = 2, stages: int = 2, *, dim: int = 8, ws: int = 2, direct_skip: bool = False) -> None:
        super().__init__()
        self.dims, self.direct_skip = dims, direct_skip
        self.patch = CONV[dims](1, dim, 2, stride=2)
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        self.enc = nn.ModuleList([ResidualUnit(dims, 1, 4, 1, subunits=1)])
        widths = [dim * 2**i for i in range(stages + 1)]
        for i in range(stages + 1):
            self.stages.append(nn.Sequential(SwinBlock(widths[i], 2, ws, 0), SwinBlock(widths[i], 2, ws, ws // 2)))
            if i < stages:
                self.merges.append(PatchMerging(dims, widths[i]))
            self.enc.append(ResidualUnit(dims, widths[i], widths[i], 1, subunits=1))
        self.ups = nn.ModuleList()
        skip_ch = [4, *widths]
        for lvl in range(stages, -1, -1):
            self.ups.append(UpCat(dims, skip_ch[lvl + 1], skip_ch[lvl], skip_ch[lvl]))
        self.head = CONV[dims](4, 2, 1)

    def channels_first(self, t: torch.Tensor) -> torch.Tensor:
        return t.permute(0, self.dims + 1, *range(1, self.dims + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.enc[0](x)]
        t = self.patch(x).permute(0, *range(2, self.dims + 2), 1)  # channels last
        for i, stage in enumerate(self.stages):
            t = stage(t)
            grid = self.channels_first(t)
            last = i == len(self.stages) - 1
            if self.direct_skip and i == len(self.stages) - 2:
                skips.append(grid.contiguous())
            else:
                skips.append(self.enc[i + 1](grid))
            if not last:
                t = self.merges[i](t)
        d = skips.pop()
        for up in self.ups:
            d = up(d, skips.pop())
        return self.head(d)


# -- decoders that add skips, multi-scale heads, explicit pads -----------------------------------


class LinkNet(nn.Module):
    """LinkNet-like: strided residual encoder blocks; decoder blocks (1x1 conv, convT up, 1x1 conv) whose
    output is *added* to the encoder tensor of that level (``decoded + skip``). ``depth`` downsamplings,
    additive skips at levels 0..depth-1."""

    def __init__(self, dims: int = 2, depth: int = 3, base: int = 4) -> None:
        super().__init__()
        ch = [base * 2**i for i in range(depth + 1)]
        self.stem = ConvBlock(dims, 1, ch[0])
        self.enc = nn.ModuleList([ResidualUnit(dims, ch[i], ch[i + 1], 2, shortcut_k=1) for i in range(depth)])
        self.dec = nn.ModuleList(
            [
                nn.Sequential(CONV[dims](ch[i + 1], ch[i], 1), CONVT[dims](ch[i], ch[i], 2, stride=2), nn.ReLU(),
                              CONV[dims](ch[i], ch[i], 1))
                for i in range(depth - 1, -1, -1)
            ]
        )
        self.head = CONV[dims](ch[0], 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.enc:
            skips.append(block(skips[-1]))
        d = skips.pop()
        for block in self.dec:
            d = block(d) + skips.pop()
        return self.head(d)


class MultiScaleHeadUNet(nn.Module):
    """A concat U-Net whose output head upsamples 1x1-conv heads of the last ``heads`` decoder levels to
    the input size and combines them: ``"sum"`` (adds), ``"stack"`` (``torch.stack(..., dim=-1)`` then
    mean), ``"stack_out"`` (returns the ``stack(dim=-1)`` tensor itself) or ``"concat"`` (concat + 1x1
    conv). None of these merges is a skip: every branch comes from the decoder."""

    def __init__(self, dims: int = 2, levels: int = 4, combine: str = "sum", heads: int = 3, base: int = 4) -> None:
        super().__init__()
        self.dims, self.combine, self.n_heads = dims, combine, heads
        chans = [base * (i + 1) for i in range(levels)]
        self.down = nn.ModuleList()
        cin = 1
        for c in chans:
            self.down.append(DoubleConv(cin, c, dims))
            cin = c
        self.pool = POOL[dims](2)
        self.ups, self.dec = nn.ModuleList(), nn.ModuleList()
        for i in range(levels - 2, -1, -1):
            self.ups.append(CONVT[dims](chans[i + 1], chans[i], 2, stride=2))
            self.dec.append(DoubleConv(2 * chans[i], chans[i], dims))
        self.heads = nn.ModuleList([CONV[dims](chans[i], 2, 1) for i in range(heads)])
        self.fuse = CONV[dims](2 * heads, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        outs = []
        for up, dec, skip in zip(self.ups, self.dec, reversed(skips)):
            x = dec(torch.cat([skip, up(x)], dim=1))
            outs.append(x)
        maps = []
        for k, head in enumerate(self.heads):  # heads[0] on the last (full-resolution) decoder output
            h = head(outs[-1 - k])
            maps.append(h if k == 0 else F.interpolate(h, size=size, mode="nearest"))
        if self.combine == "sum":
            out = maps[0]
            for m in maps[1:]:
                out = out + m
            return out
        if self.combine == "stack":
            return torch.stack(maps, dim=-1).mean(dim=-1)
        if self.combine == "stack_out":
            return torch.stack(maps, dim=-1)
        return self.fuse(torch.cat(maps, dim=1))


class PaddedUNet(nn.Module):
    """Explicit pads: the input and a deep tensor are padded by a few pixels (``F.pad``, reflect or
    zeros) before valid convs / pooling; the decoder crops back. The pads change sizes by a large ratio
    at low resolution (3 -> 5) but never the level."""

    def __init__(self, dims: int = 2, base: int = 4) -> None:
        super().__init__()
        self.dims = dims
        self.enc1 = nn.Sequential(CONV[dims](1, base, 3), nn.ReLU())  # valid conv after the input pad
        self.enc2 = nn.Sequential(CONV[dims](base, 2 * base, 3, padding=1), nn.ReLU())
        self.bottom = nn.Sequential(CONV[dims](2 * base, 4 * base, 3), nn.ReLU())  # valid, after a pad by 1
        self.pool = POOL[dims](2)
        self.up2 = CONVT[dims](4 * base, 2 * base, 2, stride=2)
        self.dec2 = nn.Sequential(CONV[dims](4 * base, 2 * base, 3, padding=1), nn.ReLU())
        self.up1 = CONVT[dims](2 * base, base, 2, stride=2)
        self.dec1 = nn.Sequential(CONV[dims](2 * base, base, 3, padding=1), nn.ReLU())
        self.head = CONV[dims](base, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # 2D: 12 -> pad 14 -> 12 | 6 | 3 -> pad 5 -> 3 | up 6 | up 12
        e1 = self.enc1(F.pad(x, [1] * (2 * self.dims), mode="reflect" if self.dims == 2 else "constant"))
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(F.pad(self.pool(e2), [1] * (2 * self.dims)))
        d2 = self.dec2(torch.cat([e2, self.up2(b)], 1))
        d1 = self.dec1(torch.cat([e1, self.up1(d2)], 1))
        return self.head(d1)


class NestedCatUNetPlusPlus(UNetPlusPlus):
    """UNet++ whose dense inputs are concatenated pairwise, ``cat([cat([x00, x01]), up])``: one exporter
    folds the nested concats into one Concat, another shares the inner one; the skips are the same."""

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        X: dict[tuple[int, int], torch.Tensor] = {}
        for j in range(self.depth + 1):
            for i in range(self.depth + 1 - j):
                if j == 0:
                    X[i, 0] = self.blocks[f"x{i}0"](x if i == 0 else self.pool(X[i - 1, 0]))
                else:
                    acc = X[i, 0]
                    for k in range(1, j):
                        acc = torch.cat([acc, X[i, k]], 1)
                    X[i, j] = self.blocks[f"x{i}{j}"](torch.cat([acc, self.up(X[i + 1, j - 1])], 1))
        return self.heads[0](X[0, self.depth])


class AuxHeadNet(nn.Module):
    """A small conv net with an auxiliary head used only in training and a head its forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.aux = nn.Conv2d(4, 2, 1)  # training only
        self.unused = nn.Conv2d(4, 2, 1)  # never called

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        out = self.conv2(h)
        if self.training:
            out = out + self.aux(h).mean()
        return out


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+-like: strided residual encoder to 1/16, ASPP (dilated convs + a global-pooling branch
    interpolated back) at the bottom, x4 upsampling, one concat with the 1x1-projected 1/4 features,
    x4 upsampling to the input. One skip (level 2, 1/4)."""

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        self.dims = dims
        self.stem = nn.Sequential(CONV[dims](1, 8, 3, stride=2, padding=1), NORM[dims](8), nn.ReLU())  # 1/2
        self.layer1 = ResidualUnit(dims, 8, 8, 2, shortcut_k=1)  # 1/4 (low-level features)
        self.layer2 = ResidualUnit(dims, 8, 16, 2, shortcut_k=1)  # 1/8
        self.layer3 = ResidualUnit(dims, 16, 16, 2, shortcut_k=1)  # 1/16
        self.aspp = nn.ModuleList([CONV[dims](16, 8, 1)] + [CONV[dims](16, 8, 3, padding=r, dilation=r) for r in (1, 2)])
        self.pool_conv = CONV[dims](16, 8, 1)
        self.project = CONV[dims](32, 8, 1)
        self.low = CONV[dims](8, 4, 1)
        self.fuse = nn.Sequential(CONV[dims](12, 8, 3, padding=1), nn.ReLU())
        self.head = CONV[dims](8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        low = self.layer1(self.stem(x))
        deep = self.layer3(self.layer2(low))
        pooled = self.pool_conv(F.adaptive_avg_pool2d(deep, 1) if self.dims == 2 else F.adaptive_avg_pool3d(deep, 1))
        branches = [conv(deep) for conv in self.aspp] + [F.interpolate(pooled, size=deep.shape[2:], mode="nearest")]
        a = self.project(torch.cat(branches, dim=1))
        a = F.interpolate(a, size=low.shape[2:], mode="nearest")
        d = self.fuse(torch.cat([a, self.low(low)], dim=1))
        return self.head(F.interpolate(d, size=size, mode="nearest"))


class VoxelMorphLike(nn.Module):
    """A registration net in the VoxelMorph style: the moving and fixed images stacked as 2 channels,
    strided-conv encoder, decoder of conv + nearest upsampling + concat with the encoder history (the
    last concat takes the raw input), a flow-field conv, and a spatial transformer (``grid_sample`` of
    the moving image at identity grid + flow). Returns ``(warped, flow)``. Skips at levels
    0..levels-1, the level-0 one from the input itself."""

    def __init__(self, dims: int = 2, enc: tuple[int, ...] = (4, 8, 8), size: int = 16) -> None:
        super().__init__()
        self.dims = dims
        self.down = nn.ModuleList()
        c = 2
        for width in enc:
            self.down.append(nn.Sequential(CONV[dims](c, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2)))
            c = width
        skip_ch = [2, *enc[:-1]]
        self.dec = nn.ModuleList()
        for skip in reversed(skip_ch):
            self.dec.append(nn.Sequential(CONV[dims](c, 8, 3, padding=1), nn.LeakyReLU(0.2)))
            c = 8 + skip
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.flow = CONV[dims](c, dims, 3, padding=1)
        axes = [torch.arange(size, dtype=torch.float32) for _ in range(dims)]
        self.register_buffer("grid", torch.stack(torch.meshgrid(*axes, indexing="ij"))[None], persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        history = [x]
        h = x
        for block in self.down:
            h = block(h)
            history.append(h)
        history.pop()
        for block in self.dec:
            h = torch.cat([self.up(block(h)), history.pop()], dim=1)
        flow = self.flow(h)
        locs = self.grid + flow
        size = x.shape[2:]
        locs = torch.stack([2 * (locs[:, i] / (size[i] - 1) - 0.5) for i in range(self.dims)], dim=1)
        locs = locs.permute(0, *range(2, self.dims + 2), 1).flip(-1)  # (N, *S, dims), xy order
        warped = F.grid_sample(x[:, :1], locs, align_corners=True)
        return warped, flow
