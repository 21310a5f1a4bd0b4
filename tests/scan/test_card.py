"""The channel card picture: crops placed where expected, histogram drawn, crop cutting."""

from __future__ import annotations

import numpy as np

from convscope.render.scan_card import crop_thumbnail, render_channel_card


def test_card_places_crops_and_bars():
    crops = [np.full((72, 72, 3), (10 * i, 200, 50), dtype=np.uint8) for i in range(5)]
    hist = np.zeros(66, dtype=np.int64)
    hist[10] = 5
    pic = render_channel_card("layer  channel 0", crops, ["1"] * 5, hist, np.linspace(-1, 1, 65), ["x"], None)
    px = pic.pixels
    assert px.shape[1] == 200 + 4 * 78 + 6 and pic.meta["examples"] == 5
    # crop 0 at column 0 row 0 and crop 4 at column 0 row 1 of the grid
    assert tuple(px[42 + 36, 206 + 36]) == (0, 200, 50)
    assert tuple(px[42 + 88 + 36, 206 + 36]) == (40, 200, 50)
    # the one non-empty histogram bar is drawn in the bar colour
    assert (px[40:120, 8:192] == (70, 110, 180)).all(axis=-1).any()


def test_crop_thumbnail_cuts_the_box_and_fits():
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[10:20, 30:50] = 255
    thumb = crop_thumbnail(image, (10, 30, 20, 50), size=72)
    assert thumb.shape == (36, 72, 3) and (thumb == 255).all()
    assert crop_thumbnail(image, None, size=30).shape == (20, 30, 3)


def test_3d_card_slices_of_a_scan_are_axial_and_radiological() -> None:
    """A scan's example is cut in the axial plane through its arg-max, drawn like plane_slice
    (rows A->P, columns R->L); its receptive-field box follows the flips. Arrays keep the first axis."""
    from convscope.core.view import MiddleView, plane_slice
    from convscope.scan.cards import card_slice

    shape = (10, 8, 6)  # X, Y, Z (RAS+)
    amap = np.zeros(shape, np.float32)
    amap[7, 6, 2] = 5.0  # RAS+: towards the patient's right (high X) and anterior (high Y), slice z = 2
    sample = np.zeros((1, *shape), np.float32)
    sample[0, 7, 6, 2] = 1.0
    box = np.array([6, 5, 1, 9, 8, 4])  # x 6..8, y 5..7, z 1..3 (ends exclusive)
    view = MiddleView(plane="axial", spatial=shape)
    map2d, picture, crop = card_slice(amap, sample, (7, 6, 2), box, view)
    np.testing.assert_array_equal(map2d, plane_slice(amap, "axial", 2))
    row, col = np.unravel_index(int(np.argmax(map2d)), map2d.shape)
    assert (row, col) == (8 - 1 - 6, 10 - 1 - 7)  # anterior near the top, the patient's right on the image's left
    assert picture.shape == (8, 10, 3) and picture[row, col].max() == 255  # the input slice through z = 2
    assert crop == [8 - 8, 10 - 9, 8 - 5, 10 - 6]
    assert crop[0] <= row < crop[2] and crop[1] <= col < crop[3]
    # a plain array: the first axis, as stored
    map2d, picture, crop = card_slice(amap, sample, (7, 6, 2), box, None)
    np.testing.assert_array_equal(map2d, amap[7])
    assert crop == [5, 1, 8, 4] and picture.shape == (8, 6, 3)


def test_captions_name_each_example_under_its_score_cut_to_the_crop():
    from PIL import Image, ImageDraw

    from convscope.render.scan_card import _font, fit_text
    from convscope.scan.cards import example_label

    crops = [np.full((72, 72, 3), 90, dtype=np.uint8) for _ in range(2)]
    hist = np.zeros(66, dtype=np.int64)
    one = render_channel_card("t", crops, ["1.5"] * 2, hist, np.linspace(-1, 1, 65), ["x"], None)
    two = render_channel_card("t", crops, ["1.5\nax12 a-very-long-file-name.nii.gz"] * 2, hist, np.linspace(-1, 1, 65),
                              ["x"], None)
    assert two.pixels.shape[0] >= one.pixels.shape[0]
    below = two.pixels[42 + 72 + 14: 42 + 72 + 26, 206:206 + 72]  # the name's line under crop 0
    assert (below != below[0, 0]).any()  # text was drawn there
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    cut = fit_text(draw, "ax12 a-very-long-file-name.nii.gz", _font(10), 72)
    assert cut.endswith("…") and cut.startswith("ax12 ") and draw.textlength(cut, font=_font(10)) <= 72
    assert example_label("scans/ct.nii.gz#axial:0012@abcd") == "ax12 ct.nii.gz"
    assert example_label("a/b/img0001.png@abcd") == "img0001.png"
    assert example_label("patient/series1@abcd") == "series1"


def test_a_filter_with_many_inputs_is_a_square_grid_with_the_colours_of_its_row():
    from types import SimpleNamespace

    from convscope.render.grid import render_kernel_grid
    from convscope.scan.cards import _kernel_picture

    weights = np.random.default_rng(0).standard_normal((2, 64, 3, 3)).astype(np.float32)
    scope = SimpleNamespace(adapter=SimpleNamespace(kernel=lambda layer: SimpleNamespace(weights=weights)))
    pic = _kernel_picture(scope, "conv", 1, {})
    row = render_kernel_grid(weights[1:2], max_side=4096).pixels[:, :, :3]
    assert row.shape[1] > 20 * row.shape[0]  # one row of 64 cells
    assert 0.5 < pic.shape[0] / pic.shape[1] < 2  # wrapped near-square
    colours = lambda a: {tuple(c) for c in a.reshape(-1, 3)}  # noqa: E731
    assert colours(pic) == colours(row)  # the same scale: every weight keeps its colour
    few = np.random.default_rng(1).standard_normal((1, 3, 3, 3)).astype(np.float32)
    scope.adapter.kernel = lambda layer: SimpleNamespace(weights=few)
    assert _kernel_picture(scope, "c", 0, {}).shape[1] > _kernel_picture(scope, "c", 0, {}).shape[0]  # 3 inputs: a row
