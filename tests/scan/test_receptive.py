"""Theoretical receptive fields from the graph vs brute-force input-gradient support on small nets."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import convscope as cs  # noqa: E402
from convscope.scan.crops import theoretical_boxes, trace_graph  # noqa: E402


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 5, stride=2, padding=2)
        self.pool = nn.AvgPool2d(2)
        self.c = nn.Conv2d(4, 4, 3, dilation=2, padding=2)
        self.act = nn.LeakyReLU(0.1)
        self.d = nn.Conv2d(4, 2, (3, 1), stride=(1, 3))  # valid, anisotropic

    def forward(self, x):
        return self.d(self.act(self.c(self.pool(self.act(self.b(self.a(x)))))))


class TinyUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 3, padding=1)
        self.down = nn.AvgPool2d(2)
        self.mid = nn.Conv2d(4, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.dec = nn.Conv2d(8, 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x):
        e = self.act(self.enc(x))
        m = self.act(self.mid(self.down(e)))
        return self.dec(torch.cat([self.up(m), e], dim=1))


class Strided(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 4, stride=3)
        self.b = nn.MaxPool2d(3, stride=2, padding=1)
        self.c = nn.Conv2d(2, 2, 3, stride=2, padding=1)

    def forward(self, x):
        return self.c(self.b(self.a(x)))


def _support(model, x, layer, c, pos):
    acts = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda _m, _i, out: acts.setdefault("a", out))
    xt = torch.from_numpy(x).requires_grad_(True)
    try:
        model(xt)
    finally:
        handle.remove()
    (g,) = torch.autograd.grad(acts["a"][(0, c, *pos)], xt)
    nz = np.nonzero(np.abs(g[0].sum(0).numpy()) > 0)
    return [int(n.min()) for n in nz] + [int(n.max()) + 1 for n in nz], tuple(acts["a"].shape[2:])


@pytest.mark.parametrize(
    "net, size, layers, exact",
    [
        (Chain, (40, 45), ["a", "b", "c", "d"], True),
        (TinyUNet, (16, 16), ["enc", "mid", "up", "dec"], True),
        (Strided, (37, 41), ["a", "b", "c"], False),  # max pool: gradient reaches only the arg-max
    ],
)
def test_theoretical_box_matches_gradient_support(net, size, layers, exact):
    model = net().eval()
    with torch.no_grad():  # no exact-zero weights
        for p in model.parameters():
            p.add_(torch.sign(p) * 0.05)
    scope = cs.Scope(model)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 1, *size)).astype(np.float32)
    graph = trace_graph(scope, x)
    assert graph is not None
    for layer in layers:
        _, spatial = _support(model, x, layer, 0, (0, 0))
        picks = {(0, 0), (spatial[0] - 1, spatial[1] - 1), (spatial[0] // 2, spatial[1] // 3), (1, spatial[1] - 2)}
        positions = np.array(sorted(p for p in picks if 0 <= p[0] < spatial[0] and 0 <= p[1] < spatial[1]))
        boxes = theoretical_boxes(scope, graph, layer, positions)
        for pos, box in zip(positions, boxes):
            support, _ = _support(model, x, layer, 0, tuple(pos))
            if exact:
                assert list(box) == support, (layer, tuple(pos))
            else:
                assert box[0] <= support[0] and box[1] <= support[1] and box[2] >= support[2] and box[3] >= support[3]


def test_demo_unet_bottleneck_box_is_large_and_clipped():
    scope = cs.load("demo:unet")
    graph = trace_graph(scope, scope.sample(0)[None])
    box = theoretical_boxes(scope, graph, "enc1.conv", np.array([[0, 0], [32, 32]]))
    assert box.tolist() == [[0, 0, 2, 2], [31, 31, 34, 34]]  # 3x3 conv, padding 1, clipped at the corner
    deep = theoretical_boxes(scope, graph, "bottleneck.conv", np.array([[4, 4]]))
    # two 3x3 convs per block: r = 5, +1 (pool), +2*2*2, +2 (pool), +2*2*4, +4 (pool), +2*8 = 52, jump 8,
    # centred on output 4 (input 32 + 3.5 - the offset of the pools)
    assert deep[0].tolist() == [10, 10, 62, 62]
