"""Figures in PNG, SVG and PDF from one scene: crisp pixels, editable text, TrueType fonts, colour
bars whose numbers are the map's range, scale bars, composition (issues 9 and 15)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.errors import ConvscopeError
from convscope.render import Picture, compose, map_figure, render_activation_grid, render_kernel_grid, render_overlay
from convscope.render.flow import FlowBlock, FlowLink, render_flow_figure
from convscope.render.scene import format_value, parse_formats

SVG = "{http://www.w3.org/2000/svg}"
POPPLER = shutil.which("pdftoppm") is not None and shutil.which("pdffonts") is not None
needs_poppler = pytest.mark.skipif(not POPPLER, reason="poppler-utils missing (scripts/ensure-poppler.sh installs it)")


def _maps(seed: int = 0, shape: tuple[int, ...] = (6, 10, 12)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _texts(picture: Picture, role: str) -> list[str]:
    return [t.text for t in picture.figure.texts() if t.role == role]


def _svg(picture: Picture) -> ET.Element:
    return ET.fromstring(picture.to_svg())


def _svg_texts(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter(f"{SVG}text")]


def _flow_picture(long_name: str = "enc.stage1") -> Picture:
    rng = np.random.default_rng(0)
    thumb = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    blocks = [
        FlowBlock("input", "input", 0, "input", "1x32x32", thumb),
        FlowBlock("enc0", "encoder", 0, long_name, "8x32x32", thumb),
        FlowBlock("bottleneck", "bottleneck", 1, "bottleneck.conv", "16x16x16", thumb),
        FlowBlock("dec0", "decoder", 0, "decoder.up0.conv", "8x32x32", thumb),
        FlowBlock("output", "output", 0, "output: head", "2x32x32", thumb),
    ]
    links = [FlowLink("input", "enc0", "io"), FlowLink("enc0", "bottleneck", "down"),
             FlowLink("bottleneck", "dec0", "up"), FlowLink("dec0", "output", "io")]
    links += [FlowLink("enc0", "dec0", "skip", f"concat skip {i}\nE 0.5 | G 0.5") for i in range(4)]
    return render_flow_figure(blocks, links, depth=1, title="U-Net flow", thumb=64)


# -- formats and saving ------------------------------------------------------------------------


def test_picture_saves_png_svg_and_pdf_by_suffix(tmp_path: Path) -> None:
    picture = render_activation_grid(_maps(), title="layer.one")
    for suffix in ("png", "svg", "pdf"):
        path = picture.save(tmp_path / f"grid.{suffix}")
        assert path.stat().st_size > 100
    assert (tmp_path / "grid.pdf").read_bytes().startswith(b"%PDF")
    with Image.open(tmp_path / "grid.png") as img:
        assert img.size == (picture.figure.width, picture.figure.height)
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.pdf"):
        picture.save(tmp_path / "grid.jpg")


def test_format_lists_parse_and_refuse_unknown_names() -> None:
    assert parse_formats("pdf,svg,pdf") == ("pdf", "svg")
    assert parse_formats(None) == ("png",)
    with pytest.raises(ConvscopeError, match="unknown --format 'tiff'"):
        parse_formats("png,tiff")


def test_png_of_a_bare_picture_is_its_pixels() -> None:
    pixels = (np.arange(5 * 7 * 3) % 256).astype(np.uint8).reshape(5, 7, 3)
    picture = Picture(pixels=pixels)
    np.testing.assert_array_equal(picture.figure_pixels(), pixels)


# -- SVG ---------------------------------------------------------------------------------------


def test_svg_parses_has_the_names_as_text_and_crisp_images() -> None:
    root = _svg(_flow_picture())
    texts = _svg_texts(root)
    for name in ("enc.stage1", "bottleneck.conv", "decoder.up0.conv", "U-Net flow"):
        assert name in texts
    images = list(root.iter(f"{SVG}image"))
    assert images
    for image in images:
        assert "image-rendering:pixelated" in image.get("style", "")
        assert image.get("image-rendering") == "pixelated"
        assert image.get("preserveAspectRatio") == "none"


def test_svg_grid_labels_are_text_not_pixels() -> None:
    picture = render_activation_grid(_maps(), labels=True, title="enc")
    labels = [el.text for el in _svg(picture).iter(f"{SVG}text") if el.get("class") == "label"]
    assert labels == [str(i) for i in range(6)]


def test_long_names_are_abbreviated_from_the_left_with_the_full_name_on_hover() -> None:
    long_name = "model.features.denseblock4.denselayer16.conv2"
    picture = _flow_picture(long_name)
    shown = [t for t in picture.figure.texts() if t.role == "block-name" and t.title == long_name]
    assert len(shown) == 1
    assert shown[0].text.startswith("..") and long_name.endswith(shown[0].text[2:])
    assert shown[0].text.endswith("denselayer16.conv2")  # the distinctive end survives
    root = _svg(picture)
    hover = [el.find(f"{SVG}title").text for el in root.iter(f"{SVG}text") if el.find(f"{SVG}title") is not None]
    assert long_name in hover


def test_every_skip_between_two_blocks_gets_its_arrow() -> None:
    picture = _flow_picture()
    assert picture.meta["skips_drawn"] == 4
    from convscope.render.scene import Line

    skip_lines = [i for i in picture.figure.items if isinstance(i, Line) and i.group == "skip"]
    assert len(skip_lines) == 4
    assert len({line.points[0][1] for line in skip_lines}) == 4  # at four different heights


# -- PDF ---------------------------------------------------------------------------------------


def _pdf_fonts_python(data: bytes) -> tuple[list[bytes], int]:
    """Font subtypes in the PDF and the number of embedded TrueType programs (a dependency-free check)."""
    subtypes = re.findall(rb"/Subtype\s*/(Type3|TrueType|Type1|Type0|CIDFontType2|CIDFontType0)", data)
    return subtypes, len(re.findall(rb"/FontFile2", data))


def test_pdf_fonts_are_embedded_truetype_never_type3() -> None:
    data = _flow_picture().to_pdf()
    subtypes, embedded = _pdf_fonts_python(data)
    assert b"Type3" not in subtypes
    assert embedded >= 1


@needs_poppler
def test_pdffonts_reports_no_type3(tmp_path: Path) -> None:
    path = _flow_picture().save(tmp_path / "flow.pdf")
    listing = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    rows = listing.strip().splitlines()[2:]
    assert rows, listing
    assert all("Type 3" not in row and "TrueType" in row for row in rows), listing


def _rendered_pdf(path: Path, scale: int = 4) -> np.ndarray:
    """The PDF's first page rendered by poppler at ``scale`` x 96 dpi, sampled at pixel centres."""
    prefix = path.with_suffix("")
    subprocess.run(["pdftoppm", "-r", str(96 * scale), "-png", "-singlefile", "-f", "1", "-l", "1", str(path),
                    str(prefix)], check=True)
    with Image.open(prefix.with_suffix(".png")) as img:
        big = np.asarray(img.convert("RGB"))
    half = scale // 2
    return big[half::scale, half::scale]


def _blur(image: np.ndarray) -> np.ndarray:
    padded = np.pad(image.astype(np.float32), ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    return sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0


@needs_poppler
@pytest.mark.parametrize("which", ["flow", "grid", "kernels"])
def test_pdf_page_matches_the_png_figure(tmp_path: Path, which: str) -> None:
    if which == "flow":
        picture = _flow_picture()
    elif which == "grid":
        picture = render_activation_grid(_maps(), labels=True, shared=True, title="encoder.block1.conv2")
    else:
        picture = render_kernel_grid(_maps(1, (4, 3, 3, 3)), labels=True, rgb=True, title="stem.conv")
    png = picture.figure_pixels().astype(np.int16)
    rendered = _rendered_pdf(picture.save(tmp_path / f"{which}.pdf")).astype(np.int16)
    assert rendered.shape[:2] == png.shape[:2]
    # the same font in both (Pillow's, embedded in the PDF): differences are antialiasing of glyph
    # and line edges only, so they vanish under a 3x3 box blur
    diff = np.abs(_blur(rendered) - _blur(png)).max(axis=2)
    assert diff.mean() < 4.0, diff.mean()
    assert (diff > 64).mean() < 0.03, (diff > 64).mean()  # glyph advances: Pillow hints to whole pixels
    # the data pixels themselves are exact: compare the raster's interior
    raster = next(i for i in picture.figure.items if type(i).__name__ == "Raster")
    x0, y0 = int(raster.x) + 1, int(raster.y) + 1
    x1, y1 = int(raster.x + raster.w) - 1, int(raster.y + raster.h) - 1
    assert np.abs(rendered[y0:y1, x0:x1].astype(np.int16) - png[y0:y1, x0:x1]).max(axis=2).mean() < 2.0


def test_pdf_rasters_are_preupsampled_nearest() -> None:
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[0, 0] = 255
    data = Picture(pixels=pixels).to_pdf(dpi=288)  # 3 device pixels per figure pixel
    sizes = re.findall(rb"/Width (\d+)\s*/Height (\d+)|/Height (\d+)\s*/Width (\d+)", data)
    widths = {int(m[0] or m[3]) for m in sizes}
    assert widths == {6}  # the 2x2 image is embedded as 6x6 identical blocks


# -- colour bars -------------------------------------------------------------------------------


def test_shared_grid_colour_bar_ends_are_the_maps_range() -> None:
    maps = _maps()
    picture = render_activation_grid(maps, shared=True)
    assert _texts(picture, "colorbar-high") == [format_value(float(maps.max()))]
    assert _texts(picture, "colorbar-low") == [format_value(float(maps.min()))]
    assert picture.meta["scale_range"] == pytest.approx([float(maps.min()), float(maps.max())])
    svg_texts = _svg_texts(_svg(picture))
    assert format_value(float(maps.max())) in svg_texts and format_value(float(maps.min())) in svg_texts


def test_symmetric_shared_bar_is_centred_on_zero() -> None:
    maps = _maps()
    limit = float(np.abs(maps).max())
    picture = render_activation_grid(maps, shared=True, scale="symmetric", cmap="RdBu_r")
    assert _texts(picture, "colorbar-high") == [format_value(limit)]
    assert _texts(picture, "colorbar-low") == [format_value(-limit)]
    assert _texts(picture, "colorbar-mid") == ["0"]


def test_per_channel_grids_never_show_one_cells_numbers_for_all() -> None:
    picture = render_activation_grid(_maps())
    assert _texts(picture, "colorbar-high") == ["max"] and _texts(picture, "colorbar-low") == ["min"]
    assert "per channel" in " ".join(_texts(picture, "colorbar-scope"))
    assert picture.meta["scale_range"] is None
    kernels = render_kernel_grid(_maps(2, (4, 2, 3, 3)))
    assert _texts(kernels, "colorbar-mid") == ["0"] and _texts(kernels, "colorbar-high") == ["+max|x|"]
    assert "per filter" in " ".join(_texts(kernels, "colorbar-scope"))


def test_one_channel_grid_has_numbers() -> None:
    maps = _maps(3, (1, 8, 8))
    picture = render_activation_grid(maps)
    assert _texts(picture, "colorbar-high") == [format_value(float(maps.max()))]


def test_overlay_bar_is_the_range_its_colours_were_normalised_on() -> None:
    image = np.full((32, 32, 3), 120, np.uint8)
    amap = np.linspace(-2.0, 3.0, 64, dtype=np.float32).reshape(8, 8)
    picture = render_overlay(image, amap, alpha=0.4)
    low, high = picture.meta["scale_range"]
    assert _texts(picture, "colorbar-high") == [format_value(high)]
    assert _texts(picture, "colorbar-low") == [format_value(low)]
    assert -2.0 <= low < high <= 3.0
    assert "alpha 0.4" in " ".join(_texts(picture, "colorbar-scope"))


def test_map_figure_bar_ends_equal_the_map_range_and_keeps_physical_aspect() -> None:
    amap = np.arange(12 * 20, dtype=np.float32).reshape(12, 20)
    picture = map_figure(amap, title="grad-cam layer4", spacing=(2.0, 0.5), display=300)
    assert _texts(picture, "colorbar-high") == [format_value(float(amap.max()))]
    assert _texts(picture, "colorbar-low") == [format_value(0.0)]
    raster = next(i for i in picture.figure.items if type(i).__name__ == "Raster" and i.group == "")
    assert raster.w / raster.h == pytest.approx((20 * 0.5) / (12 * 2.0))  # non-square pixels kept
    bar = picture.figure.meta["scalebar"]
    assert bar["px"] == pytest.approx(bar["length"] * 300 / 24.0)  # 300 px for the 24 mm long side
    assert _texts(picture, "scalebar") == [f"{bar['length']:g} mm"]
    image = next(el for el in _svg(picture).iter(f"{SVG}image") if el.find(f"{SVG}title").text == "grad-cam layer4")
    assert float(image.get("width")) / float(image.get("height")) == pytest.approx(10 / 24, rel=1e-3)


def test_level_panels_and_flow_carry_colour_scales() -> None:
    from convscope.render.colormap import get_colormap
    from convscope.render.flow import PanelColumn, render_level_panels

    mean = np.zeros((8, 8, 3), np.uint8)
    picture = render_level_panels([PanelColumn("encoder output", "enc0", "8x8x8", mean, mean_range=(-1.5, 2.25),
                                               lut=get_colormap("viridis"))])
    assert _texts(picture, "colorbar-low") == ["-1.5"] and _texts(picture, "colorbar-high") == ["2.25"]
    rng = np.random.default_rng(0)
    thumb = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    flow = render_flow_figure([FlowBlock("input", "input", 0, "input", "", thumb)], [], depth=1,
                              colorbar_lut=get_colormap("viridis"))
    assert _texts(flow, "colorbar-low") == ["min"] and _texts(flow, "colorbar-high") == ["max"]


# -- composition -------------------------------------------------------------------------------


def test_compose_letters_titles_and_physical_size(tmp_path: Path) -> None:
    a = render_activation_grid(_maps(0), shared=True, title="enc1")
    b = render_activation_grid(_maps(1), shared=True, title="enc2")
    figure = compose([a, b], titles=["first", "second"], width_mm=180, dpi=150)
    assert _texts(figure, "panel-letter") == ["a", "b"]
    assert _texts(figure, "panel-title") == ["first", "second"]
    assert len(figure.meta["colorbars"]) == 2  # different ranges: one bar per panel
    assert figure.width == round(180 / 25.4 * 150)
    data = figure.to_pdf()
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", data)
    assert box is not None and float(box.group(1)) == pytest.approx(180 / 25.4 * 72, abs=0.05)
    figure.save(tmp_path / "figure.svg")
    ET.parse(tmp_path / "figure.svg")


def test_compose_shares_one_bar_only_for_equal_scales() -> None:
    maps = _maps(0)
    a = render_activation_grid(maps, shared=True, channels=[0, 1, 2])
    b = render_activation_grid(maps, shared=True, channels=[0, 1, 2])
    shared = compose([a, b], shared_colorbar=True)
    assert len(_texts(shared, "colorbar-high")) == 1
    assert shared.meta["shared_colorbar"] is True
    c = render_activation_grid(_maps(5), shared=True)
    with pytest.raises(ConvscopeError, match="scaled differently"):
        compose([a, c], shared_colorbar=True)
    with pytest.raises(ConvscopeError, match="scaled differently"):
        compose([a, render_activation_grid(maps[:3], shared=True, scale="symmetric")], shared_colorbar=True)


def test_compose_refuses_nothing_and_mismatched_titles() -> None:
    with pytest.raises(ConvscopeError, match="at least one"):
        compose([])
    with pytest.raises(ConvscopeError, match="one per picture"):
        compose([render_activation_grid(_maps())], titles=["a", "b"])


# -- legibility (issue 9) ----------------------------------------------------------------------


def test_kernel_cells_have_a_readable_minimum_size_even_for_huge_layers() -> None:
    from convscope.render.grid import MIN_KERNEL_CELL

    picture = render_kernel_grid(np.zeros((96, 96, 3, 3), np.float32), max_side=256)
    assert max(picture.meta["cell_size"]) >= MIN_KERNEL_CELL
    assert picture.meta["scale_factor"] >= 2


@pytest.mark.parametrize("shape,rgb", [((40, 1, 3, 3), False), ((30, 3, 2, 2), True), ((300, 1, 1, 5), False)])
def test_kernel_labels_cover_at_most_a_corner(shape: tuple[int, ...], rgb: bool) -> None:
    from convscope.render.grid import _label_patch

    picture = render_kernel_grid(_maps(0, shape), labels=True, rgb=rgb, max_side=200)
    cell_h, cell_w = picture.meta["cell_size"]
    for label in [i for i in picture.figure.items if type(i).__name__ == "Label"]:
        patch = _label_patch(label.text)
        assert patch.shape[0] * 2 <= cell_h and patch.shape[1] * 2 <= cell_w, (label.text, cell_h, cell_w)


def test_tiny_kernels_with_many_filters_are_an_out_by_in_matrix() -> None:
    weights = _maps(0, (300, 64, 2, 2))
    picture = render_kernel_grid(weights, labels=True)
    assert picture.meta["layout"] == "matrix"
    f = picture.meta["scale_factor"]
    assert f >= 2 and picture.meta["cell_size"] == [2 * f, 2 * f]
    one = render_kernel_grid(_maps(0, (512, 256, 1, 1)), max_side=512)  # 2 px per weight at least
    assert one.meta["layout"] == "matrix" and one.pixels.shape[:2] == (512 * 2, 256 * 2)
    # the matrix keeps each kernel's weights in place: row o*2+i, column c*2+j is w[o, c, i, j]
    small = np.zeros((256, 1 + 1, 2, 2), np.float32)
    small[5, 1, 1, 0] = 1.0
    matrix = render_kernel_grid(small, shared=True)
    assert matrix.meta["layout"] == "matrix"
    f = matrix.meta["scale_factor"]
    from convscope.render.colormap import get_colormap

    hot = np.argwhere(np.all(matrix.pixels == get_colormap("RdBu_r")[-1], axis=2))  # the +1 weight
    assert hot.min(axis=0).tolist() == [(5 * 2 + 1) * f, (1 * 2 + 0) * f]


# -- CLI and import cost -----------------------------------------------------------------------


def test_png_and_svg_never_import_matplotlib(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from convscope.render import render_activation_grid\n"
        "p = render_activation_grid(np.ones((2, 4, 4), np.float32))\n"
        f"p.save({str(tmp_path / 'a.png')!r}); p.save({str(tmp_path / 'a.svg')!r})\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _decompressed_streams(data: bytes) -> bytes:
    out = []
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
        try:
            out.append(zlib.decompress(match.group(1)))
        except zlib.error:
            pass
    return b"\n".join(out)


def test_pdf_text_is_real_text_not_paths() -> None:
    streams = _decompressed_streams(_flow_picture().to_pdf())
    assert streams.count(b"BT") >= 5 and b"Tf" in streams  # text objects with a font


def test_big_grids_are_capped_by_averaging_blocks_of_each_cell() -> None:
    from convscope.render.grid import _block_mean

    maps = _maps(4, (16, 100, 100))
    picture = render_activation_grid(maps, max_side=200, min_cell=1, cmap="gray", shared=True)
    assert picture.meta["downsample"] == 3  # 4 x (34 + 1) + 1 = 141 <= 200 < 4 x (50 + 1) + 1
    assert max(picture.pixels.shape[:2]) <= 200
    assert picture.meta["cell_size"] == [34, 34]
    means = _block_mean(maps, 3)
    np.testing.assert_allclose(means[2, 5, 7], maps[2, 15:18, 21:24].mean(), rtol=1e-5)
    np.testing.assert_allclose(means[2, 33, 33], maps[2, 99:, 99:].mean(), rtol=1e-5)  # a partial edge block
    full = render_activation_grid(maps, max_side=None, min_cell=1)
    assert full.meta["downsample"] == 1 and full.meta["cell_size"] == [100, 100]


@pytest.mark.parametrize("shape, step", [((3, 12, 12), 3), ((2, 13, 10), 4), ((1, 5, 7), 2), ((2, 4, 9), 5)])
def test_block_mean_equals_the_mean_of_each_block_edges_included(shape: tuple[int, int, int], step: int) -> None:
    from convscope.render.grid import _block_mean

    maps = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    maps[0, 0, 0] = np.nan  # a NaN spoils its own block only
    got = _block_mean(maps, step)
    count, height, width = shape
    assert got.shape == (count, -(-height // step), -(-width // step)) and got.dtype == np.float32
    for c in range(count):
        for i in range(got.shape[1]):
            for j in range(got.shape[2]):
                want = maps[c, i * step : (i + 1) * step, j * step : (j + 1) * step].mean()
                np.testing.assert_allclose(got[c, i, j], want, rtol=1e-5, atol=1e-6)
    assert np.isnan(got[0, 0, 0]) and np.isfinite(got[0, 1:, :]).all()


def test_small_cells_are_kept_near_native_size_when_asked() -> None:
    picture = render_activation_grid(_maps(0, (64, 7, 7)), min_cell=16)
    assert picture.meta["scale_factor"] == 3 and picture.meta["cell_size"] == [21, 21]


def test_grid_with_spacing_keeps_the_physical_aspect_and_has_a_scale_bar() -> None:
    maps = _maps(0, (4, 10, 10))
    picture = render_activation_grid(maps, min_cell=1, cols=2, spacing=(3.0, 1.0))
    raster = next(i for i in picture.figure.items if type(i).__name__ == "Raster" and i.group == "")
    assert raster.h / raster.w == pytest.approx(3.0 * picture.pixels.shape[0] / picture.pixels.shape[1])
    bar = picture.figure.meta["scalebar"]
    assert bar["px"] == pytest.approx(bar["length"] * 1.0)  # 1 px per value along x, 1 mm per value
    with pytest.raises(ConvscopeError, match="spacing"):
        render_activation_grid(maps, spacing=(0.0, 1.0))


def test_odd_layer_names_survive_svg_and_pdf() -> None:
    name = "blk$1$.conv<2>&\x01x"  # dollars (no math), markup characters and a control character
    picture = render_activation_grid(_maps(), title=name)
    root = _svg(picture)
    assert any(t.startswith("blk$1$.conv<2>&") for t in _svg_texts(root))
    data = picture.to_pdf()
    assert data.startswith(b"%PDF") and b"Type3" not in data


def test_matrix_margin_labels_are_text_in_svg_and_drawn_the_same_in_png() -> None:
    picture = render_kernel_grid(_maps(0, (6, 5, 1, 1)), labels=True)
    labels = [el.text for el in _svg(picture).iter(f"{SVG}text") if el.get("class") == "label"]
    assert sorted(labels, key=int) == sorted([str(i) for i in range(6)] + [str(i) for i in range(5)], key=int)
    figure = picture.figure_pixels()
    raster = next(i for i in picture.figure.items if type(i).__name__ == "Raster" and i.group == "")
    x, y = int(raster.x), int(raster.y)
    h, w = picture.pixels.shape[:2]
    np.testing.assert_array_equal(figure[y : y + h, x : x + w], picture.pixels)  # labels as in the bare picture
