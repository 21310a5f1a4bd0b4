"""The viewer's CAM panel in chromium: click a pixel or drag a box on the output, pick a class; the maps at
every U-Net level update. Classifiers: a CAM next to each of the top-5 predictions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import convscope as cs
from tests.browser.conftest import screenshot
from tests.report.nets import small_unet, unet_image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CAMS_LOADED = """() => {
  const imgs = Array.from(document.querySelectorAll('#cam-maps img'));
  return !document.getElementById('cam').hidden && imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def _server(scope: cs.Scope, folder: Path) -> Any:
    from convscope.server.run import ViewerServer

    return ViewerServer.create(scope, images=folder, host="127.0.0.1", port=0).start()


@pytest.fixture
def unet_server(tmp_path: Path) -> Iterator[Any]:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(unet_image(0)).save(folder / "first.png")
    server = _server(cs.Scope(small_unet()), folder)
    try:
        yield server
    finally:
        server.stop()


def _cam_urls(page: Any) -> list[str]:
    return page.evaluate("() => Array.from(document.querySelectorAll('#cam-maps img')).map(i => i.getAttribute('src'))")


def test_click_and_drag_on_the_output_update_every_level(page: Any, unet_server: Any) -> None:
    page.goto(unet_server.url)
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_function(CAMS_LOADED)
    roles = page.evaluate("() => Array.from(document.querySelectorAll('#cam-maps img')).map(i => i.dataset.role)")
    assert roles[0] == "encoder 0" and "bottleneck" in roles and roles[-1] == "decoder 0" and len(roles) >= 7
    assert "over all" in page.text_content("#cam-meta")

    # a click: the pixel under the pointer, in output pixels (the 64x64 picture drawn 256 px wide: 4 px a pixel)
    page.locator("#cam-input").scroll_into_view_if_needed()
    box = page.locator("#cam-input").bounding_box()
    page.mouse.click(box["x"] + 20 * box["width"] / 64 + 1, box["y"] + 10 * box["height"] / 64 + 1)
    page.wait_for_function("() => document.getElementById('cam-meta').textContent.includes('pixel [10,20]')")
    page.wait_for_function(CAMS_LOADED)
    urls = _cam_urls(page)
    assert len(urls) == len(roles) and all("pixel=10,20" in u for u in urls)

    # a drag: a box from (x 8, y 4) to (x 40, y 30), ends exclusive
    page.mouse.move(box["x"] + 8 * box["width"] / 64 + 1, box["y"] + 4 * box["height"] / 64 + 1)
    page.mouse.down()
    page.mouse.move(box["x"] + 24 * box["width"] / 64, box["y"] + 16 * box["height"] / 64, steps=4)
    page.mouse.move(box["x"] + 39 * box["width"] / 64 + 1, box["y"] + 29 * box["height"] / 64 + 1, steps=4)
    page.mouse.up()
    page.wait_for_function("() => document.getElementById('cam-meta').textContent.includes('box_x0_y0_x1_y1 [8,4,40,30]')")
    page.wait_for_function(CAMS_LOADED)
    assert all("box=8,4,40,30" in u for u in _cam_urls(page))
    assert page.is_visible("#cam-box")

    # another method: the maps follow
    page.select_option("#cam-method", "layercam")
    page.wait_for_function("() => document.getElementById('cam-meta').textContent.startsWith('layercam')")
    page.wait_for_function(CAMS_LOADED)
    assert all("method=layercam" in u for u in _cam_urls(page))
    page.click("#cam-whole")
    page.wait_for_function("() => document.getElementById('cam-meta').textContent.includes('over all')")
    screenshot(page, "viewer-cam-unet")
    assert page.problems == []


def test_classifier_shows_a_cam_per_top5_class(page: Any, tmp_path: Path) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 9)).eval()
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(1).random((24, 24, 3)) * 255).astype(np.uint8)).save(folder / "rgb.png")
    server = _server(cs.Scope(model), folder)
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_function("""() => {
          const imgs = Array.from(document.querySelectorAll('#prediction-list img'));
          return imgs.length === 5 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""")
        shown = page.evaluate("() => Array.from(document.querySelectorAll('#prediction-list li')).map(li => "
                              "[li.querySelector('span').textContent, li.querySelector('img').dataset.camClass])")
        assert all(text.startswith(f"class {cls}:") for text, cls in shown)  # each CAM sits next to its class
        assert page.is_hidden("#cam")  # no pixel picking for a vector output
        screenshot(page, "viewer-cam-classifier")
        assert page.problems == []
    finally:
        server.stop()


def test_3d_unet_cam_drawn_on_the_linked_planes(page: Any, tmp_path: Path) -> None:
    pytest.importorskip("nibabel")
    from tests.volumes import files as F

    folder = tmp_path / "scans"
    folder.mkdir()
    F.write_nifti(folder / "scan.nii.gz", F.marked_volume((16, 12, 8)), "PSR")
    server = _server(cs.Scope("demo:unet3d"), folder)
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_function(CAMS_LOADED)
        page.wait_for_selector("#volume:not([hidden])")
        options = page.evaluate("() => Array.from(document.querySelectorAll('#volume-cam option')).map(o => o.textContent)")
        assert "decoder 0" in options and "bottleneck" in options
        page.select_option("#volume-cam", label="decoder 0")
        page.wait_for_function("""() => Array.from(document.querySelectorAll('#volume .plane-box img')).every(
          i => i.getAttribute('src').includes('cam_map=') && i.complete && i.naturalWidth > 0)""")
        screenshot(page, "viewer-cam-volume")
        assert page.problems == []
    finally:
        server.stop()
