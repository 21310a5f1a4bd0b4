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
