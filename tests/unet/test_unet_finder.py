"""The U-Net finder on a zoo of U-Net styles (exact levels and skips) and on networks that are not U-Nets."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.core.graph import Graph, Node
from convscope.core.unet import UNetStructure, find_unet
from convscope.errors import NotAUNet

torch = pytest.importorskip("torch")

from convscope.adapters.torch_graph import trace_torch  # noqa: E402

from . import unet_zoo as Z  # noqa: E402


def structure_of(model: torch.nn.Module, shape: tuple[int, ...]) -> tuple[Graph, UNetStructure]:
    torch.manual_seed(0)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    graph = trace_torch(model, x).graph
    return graph, find_unet(graph)


def skips(s: UNetStructure) -> list[tuple[int, str, str, str]]:
    return [(k.level, k.source, k.merge, k.merge_kind) for k in s.skips]


def levels(s: UNetStructure) -> list[tuple[int, tuple[int, ...], str | None, str | None]]:
    return [(lvl.index, lvl.shape, lvl.encoder_output, lvl.decoder_output) for lvl in s.levels]


# -- classic concat + transposed conv, 2 to 6 levels -------------------------------------------


@pytest.mark.parametrize("n_levels", [2, 3, 4, 5, 6])
def test_classic_unet_levels_and_skips(n_levels: int) -> None:
    size = 2 ** (n_levels + 1)
    _, s = structure_of(Z.UNet(n_levels), (1, 1, size, size))
    depth = n_levels - 1
    assert s.num_levels == n_levels and s.depth == depth
    assert levels(s) == [
        (i, (4 * (i + 1), size >> i, size >> i), f"down.{i}.5", f"dec.{depth - 1 - i}.5") for i in range(depth)
    ]
    merges = ["cat"] + [f"cat#{j}" for j in range(1, depth)]
    assert skips(s) == [(i, f"down.{i}.5", merges[depth - 1 - i], "concat") for i in range(depth)]
    assert s.bottleneck_output == f"down.{depth}.5"
    assert s.bottleneck_shape == (4 * n_levels, size >> depth, size >> depth)
    assert s.output == "head" and s.side_outputs == ()


def test_skip_branches_enter_the_merge_from_encoder_and_transposed_conv() -> None:
    _, s = structure_of(Z.UNet(3), (1, 1, 16, 16))
    assert [(k.skip_input, k.decoder_input, k.upsample, k.skip_position, k.decoder_position) for k in s.skips] == [
        ("down.0.5", "ups.1", "ups.1", 0, 1),
        ("down.1.5", "ups.0", "ups.0", 0, 1),
    ]


def test_level_node_lists_split_encoder_decoder_and_bottleneck() -> None:
    _, s = structure_of(Z.UNet(3), (1, 1, 16, 16))
    assert s.levels[0].encoder == tuple(f"down.0.{i}" for i in range(6))
    assert s.levels[0].decoder == ("ups.1", "cat#1", *(f"dec.1.{i}" for i in range(6)), "head")
    assert s.levels[1].encoder == ("pool", *(f"down.1.{i}" for i in range(6)))
    assert s.bottleneck == ("pool#1", *(f"down.2.{i}" for i in range(6)))
    assert s.downsamples == ("pool", "pool#1") and s.upsamples == ("ups.0", "ups.1")


def test_additive_skips_with_upsample_modules() -> None:
    _, s = structure_of(Z.UNet(3, up="upsample", merge="add"), (1, 1, 16, 16))
    assert skips(s) == [(0, "down.0.5", "add#1", "add"), (1, "down.1.5", "add", "add")]
    assert [(k.decoder_input, k.upsample) for k in s.skips] == [("ups.1.1", "ups.1.0"), ("ups.0.1", "ups.0.0")]


def test_interpolate_upsampling() -> None:
    _, s = structure_of(Z.UNet(3, up="interpolate"), (1, 1, 16, 16))
    assert skips(s) == [(0, "down.0.5", "cat#1", "concat"), (1, "down.1.5", "cat", "concat")]
    assert [k.upsample for k in s.skips] == ["interpolate#1", "interpolate"]


def test_2015_valid_convs_with_centre_cropped_skips() -> None:
    _, s = structure_of(Z.UNet2015(), (1, 1, 60, 60))
    assert levels(s) == [(0, (4, 56, 56), "enc1.5", "dec1.5"), (1, (8, 24, 24), "enc2.5", "dec2.5")]
    assert skips(s) == [(0, "enc1.5", "cat#1", "concat"), (1, "enc2.5", "cat", "concat")]
    assert [k.skip_input for k in s.skips] == ["getitem#1", "getitem"]  # the crops, as they enter the merge
    assert s.bottleneck_shape == (16, 8, 8)


def test_odd_sizes_fixed_by_padding() -> None:
    _, s = structure_of(Z.OddPadUNet(), (1, 1, 33, 35))
    assert levels(s) == [(0, (4, 33, 35), "enc1.5", "dec1.5"), (1, (8, 16, 17), "enc2.5", "dec2.5")]
    assert skips(s) == [(0, "enc1.5", "cat#1", "concat"), (1, "enc2.5", "cat", "concat")]
    assert [(k.decoder_input, k.upsample) for k in s.skips] == [("pad#1", "up1"), ("pad", "up2")]


def test_3d_unet() -> None:
    _, s = structure_of(Z.UNet(3, dims=3), (1, 1, 8, 8, 8))
    assert s.spatial_dims == 3
    assert levels(s) == [(0, (4, 8, 8, 8), "down.0.5", "dec.1.5"), (1, (8, 4, 4, 4), "down.1.5", "dec.0.5")]
    assert skips(s) == [(0, "down.0.5", "cat#1", "concat"), (1, "down.1.5", "cat", "concat")]


def test_1d_unet() -> None:
    _, s = structure_of(Z.UNet(3, dims=1), (1, 1, 32))
    assert s.spatial_dims == 1
    assert skips(s) == [(0, "down.0.5", "cat#1", "concat"), (1, "down.1.5", "cat", "concat")]


def test_blocks_nested_in_moduledict_modulelist_sequential_and_helpers() -> None:
    _, s = structure_of(Z.NestedContainersUNet(), (1, 3, 32, 32))
    assert skips(s) == [
        (0, "stages.stem.0.5", "decoder.up.2.cat", "concat"),
        (1, "stages.down.0.body.1.5", "decoder.up.1.cat", "concat"),
        (2, "stages.down.1.body.1.5", "decoder.up.0.cat", "concat"),
    ]
    assert [k.upsample for k in s.skips] == ["decoder.up.2.up", "decoder.up.1.up", "decoder.up.0.up"]
    assert s.bottleneck_output == "stages.down.2.body.1.5" and s.output == "outc.0"


def test_attention_gated_skips_keep_the_encoder_tensor_as_source() -> None:
    _, s = structure_of(Z.AttentionUNet(), (1, 1, 32, 32))
    assert skips(s) == [
        (0, "enc.0.5", "cat#2", "concat"),
        (1, "enc.1.5", "cat#1", "concat"),
        (2, "enc.2.5", "cat", "concat"),
    ]
    assert [k.skip_input for k in s.skips] == ["att.2.mul", "att.1.mul", "att.0.mul"]  # the gated tensor


def test_deep_supervision_side_outputs() -> None:
    _, s = structure_of(Z.DeepSupervisionUNet(), (1, 1, 32, 32))
    assert s.output == "head"
    assert s.side_outputs == ("interpolate", "interpolate#1")
    assert skips(s) == [
        (0, "down.0.5", "cat#2", "concat"),
        (1, "down.1.5", "cat#1", "concat"),
        (2, "down.2.5", "cat", "concat"),
    ]


UNETPP_SKIPS = [
    (0, "blocks.x00.5", "cat", "concat"),
    (0, "blocks.x00.5", "cat#3", "concat"),
    (0, "blocks.x01.5", "cat#3", "concat"),
    (0, "blocks.x00.5", "cat#5", "concat"),
    (0, "blocks.x01.5", "cat#5", "concat"),
    (0, "blocks.x02.5", "cat#5", "concat"),
    (1, "blocks.x10.5", "cat#1", "concat"),
    (1, "blocks.x10.5", "cat#4", "concat"),
    (1, "blocks.x11.5", "cat#4", "concat"),
    (2, "blocks.x20.5", "cat#2", "concat"),
]


def test_unetplusplus_reports_every_dense_nested_skip() -> None:
    _, s = structure_of(Z.UNetPlusPlus(), (1, 1, 16, 16))
    assert skips(s) == UNETPP_SKIPS
    assert levels(s)[0][2:] == ("blocks.x00.5", "blocks.x03.5")
    assert s.primary_skip(0).merge == "cat#5" and s.primary_skip(0).source == "blocks.x00.5"


def test_unetplusplus_with_deep_supervision_picks_the_last_head() -> None:
    _, s = structure_of(Z.UNetPlusPlus(deep_supervision=True), (1, 1, 16, 16))
    assert s.output == "heads.2" and s.side_outputs == ("heads.0", "heads.1")
    assert skips(s) == UNETPP_SKIPS


def test_residual_adds_inside_a_level_are_not_skips() -> None:
    _, s = structure_of(Z.ResidualDecoderUNet(), (1, 1, 16, 16))
    assert skips(s) == [(0, "e1.relu", "cat#1", "concat"), (1, "e2.relu", "cat", "concat")]


# -- not U-Nets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "shape", "reason"),
    [
        (Z.PlainCNN, (1, 1, 16, 16), "no downsampling"),
        (Z.ResNetFCN, (1, 1, 16, 16), "no upsampling after the lowest resolution"),
        (Z.EncoderOnly, (1, 1, 16, 16), "no upsampling after the lowest resolution"),
        (Z.ResNetClassifier, (1, 1, 16, 16), "not a spatial map"),
        (Z.EncoderDecoderNoSkip, (1, 1, 16, 16), "no skip connection"),
    ],
)
def test_not_a_unet_says_what_was_found(model: type, shape: tuple[int, ...], reason: str) -> None:
    with pytest.raises(NotAUNet, match=reason):
        structure_of(model(), shape)


def test_resnet_message_names_the_resolutions() -> None:
    with pytest.raises(NotAUNet, match=r"from 16x16 to 4x4"):
        structure_of(Z.ResNetFCN(), (1, 1, 16, 16))


def test_encoder_decoder_message_mentions_ignored_residual_adds() -> None:
    with pytest.raises(NotAUNet, match=r"2 residual add\(s\) within one resolution were ignored"):
        structure_of(Z.EncoderDecoderNoSkip(), (1, 1, 16, 16))


def test_not_a_unet_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        structure_of(Z.PlainCNN(), (1, 1, 8, 8))


# -- a hand-built graph, as a Keras/ONNX backend would fill it ---------------------------------


def test_finder_works_on_a_framework_free_graph() -> None:
    N = Node
    nodes = (
        N("in", "input", "input_1", (3, 32, 32)),
        N("c1", "conv", "block1_conv", (8, 32, 32), ("in",), attrs={"stride": (1, 1)}),
        N("p1", "pool", "pool1", (8, 16, 16), ("c1",)),
        N("c2", "conv", "block2_conv", (16, 16, 16), ("p1",)),
        N("p2", "pool", "pool2", (16, 8, 8), ("c2",)),
        N("b", "conv", "bottleneck_conv", (32, 8, 8), ("p2",)),
        N("u2", "conv_transpose", "up2", (16, 16, 16), ("b",)),
        N("m2", "concat", "concatenate", (32, 16, 16), ("u2", "c2")),
        N("d2", "conv", "dec2_conv", (16, 16, 16), ("m2",)),
        N("u1", "upsample", "up1", (16, 32, 32), ("d2",)),
        N("u1c", "conv", "up1_conv", (8, 32, 32), ("u1",)),
        N("m1", "add", "add", (8, 32, 32), ("c1", "u1c")),
        N("out", "conv", "logits", (2, 32, 32), ("m1",)),
    )
    s = find_unet(Graph(nodes=nodes, input_ids=("in",), output_ids=("out",)))
    assert [(k.level, k.source, k.merge, k.merge_kind, k.skip_input, k.decoder_input) for k in s.skips] == [
        (0, "c1", "m1", "add", "c1", "u1c"),
        (1, "c2", "m2", "concat", "c2", "u2"),
    ]
    assert s.bottleneck == ("p2", "b") and s.output == "out"


def test_stem_downsampling_leaves_the_top_level_without_skip() -> None:
    _, s = structure_of(Z.StemUNet(), (1, 3, 32, 32))
    assert skips(s) == [(1, "stem.2", "cat#1", "concat"), (2, "layer1.relu#1", "cat", "concat")]
    assert levels(s) == [
        (0, (4, 32, 32), None, "blocks.2.5"),
        (1, (8, 16, 16), "stem.2", "blocks.1.5"),
        (2, (8, 8, 8), "layer1.relu#1", "blocks.0.5"),
    ]
    assert s.bottleneck_output == "layer2.relu#1"


def test_global_context_at_the_bottleneck_is_not_the_lowest_level() -> None:
    _, s = structure_of(Z.GlobalContextUNet(), (1, 1, 16, 16))
    assert skips(s) == [(0, "down.0.5", "cat#1", "concat"), (1, "down.1.5", "cat", "concat")]
    assert s.bottleneck_output == "add" and s.bottleneck_shape == (12, 4, 4)
