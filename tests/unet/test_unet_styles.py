"""The U-Net finder on the styles real projects use (issue 10): residual-unit U-Nets with a skip wrapper,
transformer encoders (ViT tokens, Swin windows), additive skips, multi-scale heads, explicit pads.

Several nets per style (2D and 3D, different depths and widths); every test asserts the true skips
(level, source, merge, kind) and the negatives stay refused.
"""

from __future__ import annotations

import numpy as np
import pytest

from convscope.core.graph import Graph, feature_map_ids
from convscope.core.unet import UNetStructure, find_unet
from convscope.errors import NotAUNet

torch = pytest.importorskip("torch")

from convscope.adapters.torch_graph import trace_torch  # noqa: E402

from . import unet_zoo as Z  # noqa: E402


def structure_of(model: torch.nn.Module, shape: tuple[int, ...]) -> tuple[Graph, UNetStructure]:
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    graph = trace_torch(model.eval(), x).graph
    return graph, find_unet(graph)


def skips(s: UNetStructure) -> list[tuple[int, str, str, str]]:
    return [(k.level, k.source, k.merge, k.merge_kind) for k in s.skips]


def make(factory, seed: int = 0):
    torch.manual_seed(seed)
    return factory()


# -- residual-unit U-Nets (strided residual units, SkipWrap concat, convT + residual unit decoder) ---


def _resunit_skips(n: int) -> list[tuple[int, str, str, str]]:
    """Skips of a ResUnitUNet with ``n`` channel entries: stage k's concat at level k (1..n-1)."""
    out = []
    for k in range(1, n):
        prefix = "model" + ".1.deeper" * (k - 1)
        out.append((k, f"{prefix}.0.add", f"{prefix}.1.cat", "concat"))
    return out


RESUNIT_NETS = [
    ("2d-3lvl-3x3", lambda: Z.ResUnitUNet(2, (4, 8, 16)), (1, 1, 16, 16)),
    ("2d-4lvl-1x1", lambda: Z.ResUnitUNet(2, (4, 8, 16, 32), shortcut_k=1, decoder_units=2), (1, 1, 32, 32)),
    ("2d-5lvl-wide", lambda: Z.ResUnitUNet(2, (6, 12, 24, 48, 64), in_ch=3), (1, 3, 32, 32)),
    ("3d-3lvl", lambda: Z.ResUnitUNet(3, (2, 4, 8)), (1, 1, 8, 8, 8)),
    ("3d-4lvl-1x1", lambda: Z.ResUnitUNet(3, (2, 4, 8, 8), shortcut_k=1), (1, 1, 16, 16, 16)),
]


@pytest.mark.parametrize(("name", "factory", "shape"), RESUNIT_NETS, ids=[n for n, *_ in RESUNIT_NETS])
def test_residual_unit_unets_report_every_stage_concat(name, factory, shape) -> None:
    model = make(factory)
    n = _channels(model)
    _, s = structure_of(model, shape)
    assert skips(s) == _resunit_skips(n)
    assert s.depth == n - 1 and s.spatial_dims == len(shape) - 2
    # the decoder side of each stage concat is the residual unit after the transposed conv
    for k, skip in enumerate(s.skips[:-1], start=1):
        prefix = "model" + ".1.deeper" * k
        assert skip.upsample == f"{prefix}.2.0"
        assert skip.decoder_input.startswith(f"{prefix}.2.") and skip.decoder_input.endswith(".add")
    # the bottom level's skip: deepest encoder tensor + bottom block output, no upsampling between them
    bottom = s.skips[-1]
    assert bottom.level == s.depth and bottom.skip_input == bottom.source
    assert s.bottleneck_output == bottom.merge
    assert s.levels[0].encoder_output is None  # nothing is concatenated at the input resolution
    assert [lvl.encoder_output for lvl in s.levels[1:]] == [k.source for k in s.skips[:-1]]


def _channels(model: Z.ResUnitUNet) -> int:
    n, stage = 1, model.model
    while isinstance(stage[1].deeper, torch.nn.Sequential):
        n, stage = n + 1, stage[1].deeper
    return n + 1


def test_residual_units_without_a_concat_are_not_a_unet() -> None:
    for dims, shape in ((2, (1, 1, 16, 16)), (3, (1, 1, 8, 8, 8))):
        with pytest.raises(NotAUNet, match=r"no skip connection.*4 residual add\(s\)"):
            structure_of(make(lambda d=dims: Z.ResUnitNoSkip(d)), shape)


# -- transformer encoders ---------------------------------------------------------------------------


VIT_NETS = [
    ("2d-depth3", lambda: Z.ViTUNet(2, 3), (1, 1, 32, 32), 3),
    ("2d-depth4-mha", lambda: Z.ViTUNet(2, 4, size=32, dim=8, torch_mha=True), (1, 1, 32, 32), 4),
    ("3d-depth2", lambda: Z.ViTUNet(3, 2, size=8), (1, 1, 8, 8, 8), 2),
    ("3d-depth3-mha", lambda: Z.ViTUNet(3, 3, size=16, dim=8, torch_mha=True), (1, 1, 16, 16, 16), 3),
    ("2d-depth3-permute", lambda: Z.ViTUNet(2, 3, grid_style="permute"), (1, 1, 32, 32), 3),
    ("3d-depth2-permute", lambda: Z.ViTUNet(3, 2, size=8, grid_style="permute"), (1, 1, 8, 8, 8), 2),
]


@pytest.mark.parametrize(("name", "factory", "shape", "depth"), VIT_NETS, ids=[n for n, *_ in VIT_NETS])
def test_vit_encoder_unets_take_skips_from_the_token_projections(name, factory, shape, depth) -> None:
    graph, s = structure_of(make(factory), shape)
    # level 0 from the conv block on the input, level l from the transposed-conv projection of hidden state l
    want = [(0, "enc0.body.2", f"ups.{depth - 1}.cat", "concat")]
    for lvl in range(1, depth):
        want.append((lvl, f"proj.{lvl - 1}.body.{2 * (depth - lvl) - 1}.body.2", f"ups.{depth - 1 - lvl}.cat", "concat"))
    assert skips(s) == want
    assert s.depth == depth and s.bottleneck_shape[1:] == tuple(d >> depth for d in shape[2:])
    assert graph.node(s.bottleneck_output).op in ("reshape", "identity")  # the last hidden state as a grid
    # no token tensor, attention tensor or residual add of a transformer block is in a level
    listed = set(s.bottleneck).union(*(set(lvl.encoder) | set(lvl.decoder) for lvl in s.levels))
    assert not any(n.startswith("blocks.") for n in listed)
    assert all(len(graph.node(n).shape) == len(shape) - 1 for n in listed)


SWIN_NETS = [
    ("2d-2stages", lambda: Z.SwinUNet(2, 2), (1, 1, 16, 16), 3),
    ("2d-1stage-wide", lambda: Z.SwinUNet(2, 1, dim=12, ws=4), (1, 1, 16, 16), 2),
    ("3d-1stage", lambda: Z.SwinUNet(3, 1), (1, 1, 8, 8, 8), 2),
]


@pytest.mark.parametrize(("name", "factory", "shape", "depth"), SWIN_NETS, ids=[n for n, *_ in SWIN_NETS])
def test_swin_encoder_unets_ignore_windows_and_channels_last_grids(name, factory, shape, depth) -> None:
    graph, s = structure_of(make(factory), shape)
    assert skips(s) == [(lvl, f"enc.{lvl}.add", f"ups.{depth - 1 - lvl}.cat", "concat") for lvl in range(depth)]
    assert s.bottleneck_output == f"enc.{depth}.add"
    fmap = feature_map_ids(graph)
    # windows (N*nW, ws**d, C), channels-last grids (N, *S, C) and patch-merging slices are not feature maps,
    # even the 2D ones whose shape (8, 8, 8) looks like (C, H, W)
    assert not any(n.startswith(("stages.", "merges.")) for n in fmap)
    assert [lvl.encoder_output for lvl in s.levels] == [f"enc.{i}.add" for i in range(depth)]


def test_swin_grid_concatenated_without_a_conv_is_the_skip_source() -> None:
    graph, s = structure_of(make(lambda: Z.SwinUNet(2, 1, direct_skip=True)), (1, 1, 16, 16))
    assert skips(s) == [(0, "enc.0.add", "ups.1.cat", "concat"), (1, "permute#1", "ups.0.cat", "concat")]
    assert "stages.0.1.add#1" not in feature_map_ids(graph)  # the channels-last grid before the permute


@pytest.mark.parametrize(
    ("model", "shape", "reason"),
    [
        (Z.ViTNoSkip, (1, 1, 32, 32), "no skip connection"),
        (Z.ViTClassifier, (1, 1, 16, 16), "not a spatial map"),
    ],
)
def test_transformer_negatives(model, shape, reason) -> None:
    with pytest.raises(NotAUNet, match=reason):
        structure_of(make(model), shape)


# -- decoders that add skips -----------------------------------------------------------------------


@pytest.mark.parametrize(("dims", "depth", "base", "size"), [(2, 3, 4, 16), (2, 4, 2, 32), (3, 2, 4, 8)])
def test_linknet_additive_skips(dims, depth, base, size) -> None:
    _, s = structure_of(make(lambda: Z.LinkNet(dims, depth, base)), (1, 1, *(size,) * dims))
    sources = ["stem.body.2"] + [f"enc.{i}.add" for i in range(depth - 1)]
    merges = ["add"] + [f"add#{j}" for j in range(1, depth)]
    assert skips(s) == [(lvl, sources[lvl], merges[depth - 1 - lvl], "add") for lvl in range(depth)]
    assert [k.upsample for k in s.skips] == [f"dec.{depth - 1 - lvl}.1" for lvl in range(depth)]


# -- multi-scale output heads ----------------------------------------------------------------------


MULTI = [
    (2, 4, "sum", 3),
    (2, 4, "stack", 3),
    (2, 3, "stack_out", 2),
    (3, 3, "concat", 2),
    (3, 3, "sum", 2),
]


@pytest.mark.parametrize(("dims", "levels", "combine", "heads"), MULTI, ids=[f"{d}d-{c}-{h}" for d, _, c, h in MULTI])
def test_multi_scale_heads_are_not_skips(dims, levels, combine, heads) -> None:
    size = 16 if dims == 2 else 8
    graph, s = structure_of(make(lambda: Z.MultiScaleHeadUNet(dims, levels, combine, heads)), (1, 1, *(size,) * dims))
    depth = levels - 1
    merges = ["cat"] + [f"cat#{j}" for j in range(1, depth)]
    assert skips(s) == [(i, f"down.{i}.5", merges[depth - 1 - i], "concat") for i in range(depth)]
    if combine.startswith("stack"):
        stack = next(n for n in graph if n.op == "stack")
        assert stack.id not in feature_map_ids(graph)  # stack(dim=-1) adds no spatial axis
        assert s.output == "heads.0"
    assert [lvl.decoder_output for lvl in s.levels][1:] == [f"dec.{depth - 1 - i}.5" for i in range(1, depth)]


# -- explicit pads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("dims", "size"), [(2, 12), (3, 12), (2, 20)])
def test_explicit_pads_stay_on_their_level(dims, size) -> None:
    graph, s = structure_of(make(lambda: Z.PaddedUNet(dims)), (1, 1, *(size,) * dims))
    assert skips(s) == [(0, "enc1.1", "cat#1", "concat"), (1, "enc2.1", "cat", "concat")]
    pads = [n.id for n in graph if n.op == "pad"]
    assert s.level_of[pads[0]] == 0 and pads[1] in s.bottleneck  # 3 -> 5 at the bottom keeps the level
    assert s.depth == 2


# -- nested concats: one dense merge per node --------------------------------------------------------


def test_nested_concats_fold_into_one_dense_merge_with_exact_energy_shares() -> None:
    from convscope import Scope

    from .test_unet_finder import UNETPP_SKIPS

    model = make(Z.NestedCatUNetPlusPlus)
    graph, s = structure_of(model, (1, 1, 16, 16))
    assert [(lvl, src) for lvl, src, _m, _k in skips(s)] == [(lvl, src) for lvl, src, _m, _k in UNETPP_SKIPS]
    assert len({k.merge for k in s.skips}) == 6  # one merge per dense node, as in the flat UNet++
    x = np.random.default_rng(0).random((1, 1, 16, 16), dtype=np.float32)
    flow = Scope(model).unet(x)
    capture = trace_torch(model, x, keep="all")
    for skip, metric in zip(s.skips, flow.metrics):
        merge = capture.values[skip.merge].astype(np.float64)
        want = float(np.sum(capture.values[skip.skip_input].astype(np.float64) ** 2) / np.sum(merge**2))
        assert metric.energy_share == pytest.approx(want, rel=1e-6)
        if graph.node(skip.merge).inputs[skip.skip_position] != skip.skip_input:
            assert metric.gradient_share is None  # the folded branch's own gradient part is not split out


# -- what a flow figure draws: every skip's tail and head per level -----------------------------


def test_levels_list_every_skip_source_and_merge_for_the_figure() -> None:
    _, s = structure_of(make(Z.UNetPlusPlus), (1, 1, 16, 16))
    assert s.levels[0].skip_sources == ("blocks.x00.5", "blocks.x01.5", "blocks.x02.5")
    assert s.levels[0].merges == ("cat", "cat#3", "cat#5")
    assert s.levels[2].skip_sources == ("blocks.x20.5",) and s.bottom_skip is None
    _, r = structure_of(make(lambda: Z.ResUnitUNet(2, (4, 8, 16))), (1, 1, 16, 16))
    assert r.bottom_skip is not None and r.bottom_skip.level == r.depth == 2
    assert r.levels[0].skip_sources == () and r.levels[1].skip_sources == ("model.0.add",)


# -- DeepLabV3+: ASPP image pooling at the bottom is not the way down; x4 jumps skip levels -----------


@pytest.mark.parametrize(("dims", "size"), [(2, 32), (2, 64), (3, 16)])
def test_deeplab_v3_plus_has_one_skip_at_a_quarter(dims, size) -> None:
    _, s = structure_of(make(lambda: Z.DeepLabV3Plus(dims)), (1, 1, *(size,) * dims))
    assert skips(s) == [(2, "layer1.add", "cat#1", "concat")]
    assert s.bottleneck_output == "project" and s.bottleneck_shape[1:] == (size // 16,) * dims
    assert [lvl.decoder_output for lvl in s.levels] == ["interpolate#2", None, "fuse.1", None]


# -- registration nets (VoxelMorph-like): two outputs, a spatial transformer, a skip from the input ---


@pytest.mark.parametrize(
    ("dims", "shape", "enc"), [(2, (1, 2, 16, 16), (4, 8, 8)), (3, (1, 2, 8, 8, 8), (4, 8)), (2, (1, 2, 32, 32), (4, 8, 8, 16))]
)
def test_registration_net_skips_and_outputs(dims, shape, enc) -> None:
    graph, s = structure_of(make(lambda: Z.VoxelMorphLike(dims, enc, size=shape[-1])), shape)
    depth = len(enc)  # one strided conv per entry
    sources = ["input"] + [f"down.{i}.1" for i in range(depth - 1)]
    merges = ["cat"] + [f"cat#{j}" for j in range(1, depth)]
    assert skips(s) == [(lvl, sources[lvl], merges[depth - 1 - lvl], "concat") for lvl in range(depth)]
    assert s.output == "grid_sample" and s.side_outputs == ("flow",) and s.objective == "grid_sample"
    assert s.levels[0].decoder_output == "flow"
    assert "permute" not in s.level_of and "flip" not in s.level_of  # the sampling grid (N, *S, dims)
