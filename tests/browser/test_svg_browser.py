"""A browser shows convscope's SVG pixels crisp when zoomed (``image-rendering: pixelated``), and a
non-square box keeps its aspect (issue 15)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from PIL import Image

from convscope.render import Picture, map_figure

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _shot(page: Any, svg: bytes, width: int, height: int, tmp_path: Any) -> np.ndarray:
    data = base64.b64encode(svg).decode()
    page.set_content(f'<body style="margin:0;background:#fff"><img id="i" style="width:{width}px;height:{height}px;'
                     f'display:block" src="data:image/svg+xml;base64,{data}"></body>')
    page.wait_for_function("() => document.getElementById('i').complete")
    path = tmp_path / "shot.png"
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": width, "height": height})
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_zoomed_svg_pixels_stay_sharp(page: Any, tmp_path: Any) -> None:
    checker = np.zeros((4, 4, 3), np.uint8)
    checker[::2, ::2] = 255
    checker[1::2, 1::2] = 255
    shot = _shot(page, Picture(pixels=checker).to_svg(), 160, 160, tmp_path)
    assert set(np.unique(shot).tolist()) <= {0, 255}  # no interpolated grey at 40x
    assert shot[5, 5, 0] == 255 and shot[5, 45, 0] == 0


def test_non_square_pixels_keep_their_aspect(page: Any, tmp_path: Any) -> None:
    amap = np.zeros((2, 2), np.float32)
    amap[0, 0] = 1.0
    picture = map_figure(amap, cmap="gray", spacing=(2.0, 1.0), display=200)  # pixels twice as tall as wide
    raster = next(i for i in picture.figure.items if type(i).__name__ == "Raster" and i.group == "")
    assert (raster.w, raster.h) == pytest.approx((100.0, 200.0))
    shot = _shot(page, picture.to_svg(), picture.figure.width, picture.figure.height, tmp_path)
    x0, y0 = int(raster.x), int(raster.y)
    # each map pixel is a 50 x 100 px block (1 x 2, its physical aspect), with sharp edges
    assert shot[y0 + 2 : y0 + 98, x0 + 2 : x0 + 48, 0].min() == 255
    assert shot[y0 + 2 : y0 + 98, x0 + 52 : x0 + 98, 0].max() == 0
    assert shot[y0 + 102 : y0 + 198, x0 + 2 : x0 + 48, 0].max() == 0
