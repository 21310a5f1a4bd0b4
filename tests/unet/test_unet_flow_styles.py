"""The flow figure stays readable on every style of the zoo (issue 10): each level shows the tensor the
skip leaves from and the tensor the decoder produces there, every skip found has its own arrow (dense
UNet++ skips, several per level, the bottom level's skip as a loop at the bottleneck) with its energy
and gradient share, no two texts overlap, and abbreviated names carry the full name on hover.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from convscope.render.flow import SKIP_COLOR
from convscope.render.scene import Line, Polygon, Text, font

torch = pytest.importorskip("torch")

from convscope.unet_flow import UNetFlow, _share_text, build_unet_flow, unet_backend_for  # noqa: E402

from . import unet_zoo as Z  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"

STYLES = [
    ("unet5", lambda: Z.UNet(5), (1, 1, 64, 64)),
    ("unet-3d", lambda: Z.UNet(3, dims=3), (1, 1, 8, 8, 8)),
    ("unet-1d", lambda: Z.UNet(3, dims=1), (1, 1, 32)),
    ("unet2015-crop", Z.UNet2015, (1, 1, 60, 60)),
    ("odd-pad", Z.OddPadUNet, (1, 1, 33, 35)),
    ("nested-containers", Z.NestedContainersUNet, (1, 3, 32, 32)),
    ("attention", Z.AttentionUNet, (1, 1, 32, 32)),
    ("deep-supervision", Z.DeepSupervisionUNet, (1, 1, 32, 32)),
    ("unet++", Z.UNetPlusPlus, (1, 1, 16, 16)),
    ("unet++-nested-cat", Z.NestedCatUNetPlusPlus, (1, 1, 16, 16)),
    ("residual-decoder", Z.ResidualDecoderUNet, (1, 1, 16, 16)),
    ("stem", Z.StemUNet, (1, 3, 32, 32)),
    ("global-context", Z.GlobalContextUNet, (1, 1, 16, 16)),
    ("resunit-2d", lambda: Z.ResUnitUNet(2, (4, 8, 16)), (1, 1, 16, 16)),
    ("resunit-3d-4lvl", lambda: Z.ResUnitUNet(3, (2, 4, 8, 8), shortcut_k=1), (1, 1, 16, 16, 16)),
    ("vit-2d", lambda: Z.ViTUNet(2, 3), (1, 1, 32, 32)),
    ("vit-3d-mha", lambda: Z.ViTUNet(3, 3, size=16, dim=8, torch_mha=True), (1, 1, 16, 16, 16)),
    ("swin-2d", lambda: Z.SwinUNet(2, 2), (1, 1, 16, 16)),
    ("swin-direct", lambda: Z.SwinUNet(2, 1, direct_skip=True), (1, 1, 16, 16)),
    ("linknet-add", lambda: Z.LinkNet(2, 3, 4), (1, 1, 16, 16)),
    ("multi-scale-stack", lambda: Z.MultiScaleHeadUNet(2, 4, "stack", 3), (1, 1, 16, 16)),
    ("padded-3d", lambda: Z.PaddedUNet(3), (1, 1, 12, 12, 12)),
    ("deeplab-v3+", lambda: Z.DeepLabV3Plus(2), (1, 1, 32, 32)),
    ("voxelmorph", lambda: Z.VoxelMorphLike(2, (4, 8, 8), size=16), (1, 2, 16, 16)),
]
IDS = [name for name, *_ in STYLES]

_CACHE: dict[str, tuple[UNetFlow, object]] = {}


def flow_and_picture(name: str):
    if name not in _CACHE:
        _, factory, shape = next(s for s in STYLES if s[0] == name)
        torch.manual_seed(0)
        model = factory().eval()
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        flow = build_unet_flow(unet_backend_for(model), x, None)
        _CACHE[name] = (flow, flow.figure())
    return _CACHE[name]


def _box(t: Text) -> tuple[float, float, float, float]:
    left, top, right, bottom = font(t.size).getbbox(t.text)
    return t.x + left, t.y + top, t.x + right, t.y + bottom


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5


@pytest.mark.parametrize("name", IDS)
def test_every_skip_has_its_own_arrow_in_the_scene_png_and_svg(name: str) -> None:
    flow, picture = flow_and_picture(name)
    n = len(flow.structure.skips)
    scene = picture.figure
    assert picture.meta["skips_drawn"] == n and picture.meta["links_missing"] == []
    heads = [i for i in scene.items if isinstance(i, Polygon) and i.group == "skip"]
    lines = [i for i in scene.items if isinstance(i, Line) and i.group == "skip"]
    assert len(heads) == len(lines) == n
    # SVG: one line and one head per skip, marked with their class
    svg = picture.to_svg().decode()
    root = ET.fromstring(svg)
    assert sum(el.get("class") == "skip" for el in root.iter(f"{SVG}polygon")) == n
    assert sum(el.get("class") == "skip" for el in root.iter(f"{SVG}polyline")) == n
    # PNG: every head is painted in the skip colour (its centroid), every arrow starts at a distinct point
    pixels = picture.figure_pixels()
    for head in heads:
        cx = round(sum(p[0] for p in head.points) / 3)
        cy = round(sum(p[1] for p in head.points) / 3)
        assert tuple(pixels[cy, cx]) == SKIP_COLOR
    arrows = picture.meta["skip_arrows"]
    assert len({(round(a["tail"][0]), round(a["tail"][1]), round(a["head"][1])) for a in arrows}) == n


@pytest.mark.parametrize("name", IDS)
def test_each_skip_is_labelled_with_its_shares_and_no_texts_overlap(name: str) -> None:
    flow, picture = flow_and_picture(name)
    texts = picture.figure.texts()
    labels = [t.text for t in texts if t.role == "skip-label"]
    want = [f"{k.merge_kind} | E {_share_text(m.energy_share)} | G {_share_text(m.gradient_share)}"
            for k, m in zip(flow.structure.skips, flow.metrics)]
    assert sorted(t for t in labels if " | E " in t) == sorted(want)
    assert len(labels) == 2 * len(want)  # source -> merge and the shares, for every skip
    for a, b in itertools.combinations(texts, 2):
        assert not _overlap(_box(a), _box(b)), (a.text, b.text)
    for t in texts:  # everything inside the figure
        x0, y0, x1, y1 = _box(t)
        assert 0 <= x0 and x1 <= picture.figure.width and 0 <= y0 and y1 <= picture.figure.height, t.text


@pytest.mark.parametrize("name", IDS)
def test_each_level_shows_the_skip_source_and_the_decoder_output(name: str) -> None:
    flow, picture = flow_and_picture(name)
    s = flow.structure
    names = {t.title: t for t in picture.figure.texts() if t.role == "block-name"}
    blocks = picture.meta["blocks"]
    for lvl in s.levels:
        if lvl.encoder_output is not None:
            assert flow.name(lvl.encoder_output) in names and f"enc{lvl.index}" in blocks
        if lvl.decoder_output is not None:
            assert flow.name(lvl.decoder_output) in names and f"dec{lvl.index}" in blocks
        if s.skips_at(lvl.index):  # every skip runs from its level's encoder block to its decoder block
            assert f"enc{lvl.index}" in blocks and f"dec{lvl.index}" in blocks
    # the arrows of a level lie between that level's two blocks, in their rows
    for arrow, skip in zip(picture.meta["skip_arrows"], s.skips):
        if arrow["loop"]:
            continue
        ex0, ey0, ex1, ey1 = blocks[f"enc{skip.level}"]
        dx0, dy0, dx1, dy1 = blocks[f"dec{skip.level}"]
        assert arrow["tail"][0] >= ex1 and arrow["head"][0] <= dx0
        assert ey0 < arrow["tail"][1] < ey1 and dy0 < arrow["head"][1] < dy1
    if name.startswith(("vit", "swin")):  # transformer internals (blocks, window stages) never appear as blocks
        assert not any(title.startswith(("blocks.", "stages.", "merges.")) for title in names)


def test_dense_unetplusplus_skips_get_one_lane_each_with_their_source_named() -> None:
    flow, picture = flow_and_picture("unet++")
    level0 = [a for a, k in zip(picture.meta["skip_arrows"], flow.structure.skips) if k.level == 0]
    assert len(level0) == 6 and len({a["head"][1] for a in level0}) == 6
    lanes = sorted(a["head"][1] for a in level0)
    assert min(np.diff(lanes)) >= 40  # two label lines and the arrow fit in each lane
    sources = [t.text.split(" -> ")[0] for t in picture.figure.texts() if t.role == "skip-label" and " -> " in t.text]
    assert sources.count("blocks.x01.5") == 2 and sources.count("blocks.x02.5") == 1  # dense nodes as sources
    rows = {k: v[3] - v[1] for k, v in picture.meta["blocks"].items()}
    assert rows["enc0"] == rows["dec0"] > rows["enc2"]  # the level-0 row grew for its six lanes


def test_bottom_skip_is_a_loop_at_the_bottleneck() -> None:
    flow, picture = flow_and_picture("resunit-2d")
    bottom = flow.structure.bottom_skip
    assert bottom is not None
    x0, y0, x1, y1 = picture.meta["blocks"]["bottleneck"]
    loops = [a for a in picture.meta["skip_arrows"] if a["loop"]]
    assert len(loops) == 1 and loops[0]["src"] == loops[0]["dst"] == "bottleneck"
    assert loops[0]["head"][0] == pytest.approx(x1 + 2) and y0 < loops[0]["tail"][1] < loops[0]["head"][1] < y1
    line = next(i for i in picture.figure.items if isinstance(i, Line) and i.group == "skip" and len(i.points) == 4)
    assert max(p[0] for p in line.points) > x1 + 20  # it goes out of the block and comes back
    labels = [t for t in picture.figure.texts() if t.role == "skip-label" and t.x > x1]
    full = f"{flow.name(bottom.source)} -> {flow.name(bottom.merge)}"
    shown = labels[0].text  # the whole label, or abbreviated from the left with the whole one on hover
    assert shown == full or (shown.startswith("..") and full.endswith(shown[2:]) and full in labels[0].title)
    assert "bottom skip" in labels[0].title
    pixels = picture.figure_pixels()
    assert tuple(pixels[round(line.points[1][1]), round(line.points[1][0]) - 3]) == SKIP_COLOR


def test_long_names_are_abbreviated_from_the_left_with_the_full_text_on_hover() -> None:
    _, picture = flow_and_picture("nested-containers")
    texts = picture.figure.texts()
    short = [t for t in texts if t.text.startswith("..")]
    assert short, "this net's skip labels are too long for level 0's gap"
    for t in short:
        assert t.title and (t.title.endswith(t.text[2:]) or t.text[2:] in t.title)
    root = ET.fromstring(picture.to_svg())
    hovers = {el.text: el.find(f"{SVG}title") for el in root.iter(f"{SVG}text")}
    for t in short:
        assert hovers[t.text] is not None and hovers[t.text].text == t.title
    # the skip labels name the tensors completely on hover
    skip = next(t for t in short if t.role == "skip-label")
    assert re.search(r"level \d skip: \S+ -> \S+ \(concat\), energy share", skip.title)


def test_level_panels_of_a_dense_level_say_which_skip_they_show() -> None:
    flow, _ = flow_and_picture("unet++")
    title = next(t.title for t in flow.level(0).panels(top=0, skip=2).figure.texts() if t.role == "title")
    assert "skip 3 of 6: blocks.x01.5 -> cat#3" in title
    single = next(t.title for t in flow.level(2).panels(top=0).figure.texts() if t.role == "title")
    assert " of " not in single


def test_report_blocks_fall_back_to_the_names_the_figure_shows() -> None:
    from convscope.report.builder import unet_blocks

    flow, picture = flow_and_picture("unet5")
    names = picture.meta["block_names"]
    assert names["enc0"] == flow.name(flow.structure.levels[0].encoder_output)
    blocks = {b["title"]: b for b in unet_blocks(object(), picture, {names["enc0"]: "layer-3"})}
    assert blocks[names["enc0"]]["layer_id"] == "layer-3"
