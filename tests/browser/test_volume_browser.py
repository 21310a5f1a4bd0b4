"""`convscope serve` with a NIfTI scan in chromium: three linked planes, crosshair, MIP, overlay opacity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convscope as cs
from tests.browser.conftest import screenshot

pytest.importorskip("nibabel")
pytestmark = [pytest.mark.browser, pytest.mark.slow]

PLANES_LOADED = """() => {
  const imgs = Array.from(document.querySelectorAll('#volume figure img'));
  return imgs.length === 3 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture
def volume_server(tmp_path: Path) -> Iterator[Any]:
    from convscope.server.run import ViewerServer
    from tests.volumes import files as F

    folder = tmp_path / "imgs"
    folder.mkdir()
    F.write_nifti(folder / "scan.nii.gz", F.marked_volume((16, 12, 8)), "PSR")
    server = ViewerServer.create(cs.Scope("demo:unet3d"), images=folder, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        server.stop()


def test_three_linked_planes(page: Any, volume_server: Any) -> None:
    page.goto(volume_server.url)
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("#volume:not([hidden])")
    page.wait_for_function(PLANES_LOADED)
    letters = page.evaluate("() => Array.from(document.querySelectorAll('#volume figure[data-plane=axial] .edge')).map(e => e.textContent)")
    assert letters == ["R", "L", "A", "P"]
    before = page.evaluate("() => document.querySelector('#volume figure[data-plane=sagittal] input').value")
    box = page.locator("#volume figure[data-plane=axial] img").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.1)  # patient left-anterior
    page.wait_for_function("v => document.querySelector('#volume figure[data-plane=sagittal] input').value !== v", arg=before)
    sagittal = int(page.evaluate("() => document.querySelector('#volume figure[data-plane=sagittal] input').value"))
    coronal = int(page.evaluate("() => document.querySelector('#volume figure[data-plane=coronal] input').value"))
    assert sagittal <= 2 and coronal >= 10  # x near the left (low x), y near the anterior (high y)
    page.wait_for_function(PLANES_LOADED)
    page.check("#volume-mip")
    page.wait_for_function("() => document.querySelector('#volume figure[data-plane=axial] img').src.includes('mip=true')")
    page.wait_for_function(PLANES_LOADED)
    screenshot(page, "volume-planes")
    assert page.problems == []
