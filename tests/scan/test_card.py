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
