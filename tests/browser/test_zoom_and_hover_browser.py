"""In chromium: the viewer's kernel picture (an O x I matrix for 1x1 kernels) zooms on click with
sharp pixels, and the report's hover regions over shortened names and skip labels sit on the figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import convscope as cs
from tests.browser.conftest import screenshot, select_layer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


SIZES = """() => { const i = document.getElementById('kernel-img'); const f = document.getElementById('kernel-frame');
  return {natural: i.naturalWidth, shown: i.clientWidth, zoomed: f.classList.contains('zoomed'),
          rendering: getComputedStyle(i).imageRendering, frame: f.clientWidth, scroll: f.scrollWidth,
          level: document.getElementById('kernel-zoom-level').textContent,
          inDisabled: document.getElementById('kernel-zoom-in').disabled}; }"""


def test_kernel_matrix_zooms_on_click_and_stays_sharp(page: Any, unet_server: Any) -> None:
    page.goto(unet_server.url)
    page.wait_for_selector("body[data-ready=true]")
    select_layer(page, "head")  # 1x1 kernels: drawn as one out x in matrix
    page.wait_for_function("() => document.getElementById('kernel-img').naturalWidth > 0")
    fitted = page.evaluate(SIZES)
    assert not fitted["zoomed"] and fitted["rendering"] == "pixelated"
    assert page.get_attribute("#kernel-img", "title").startswith("Click to enlarge")

    page.click("#kernel-img")
    zoomed = page.evaluate(SIZES)
    assert zoomed["zoomed"] and zoomed["shown"] >= 2 * fitted["shown"]
    factor = round(zoomed["shown"] / zoomed["natural"])
    assert factor >= 2 and zoomed["shown"] == pytest.approx(factor * zoomed["natural"], abs=1)  # whole PNG pixels
    assert zoomed["rendering"] == "pixelated" and f"{factor}\u00d7" in zoomed["level"]

    for _ in range(12):  # zoom in to the largest size: the frame scrolls
        if page.evaluate(SIZES)["inDisabled"]:
            break
        page.click("#kernel-zoom-in")
    big = page.evaluate(SIZES)
    assert big["inDisabled"] and big["scroll"] > big["frame"]
    screenshot(page, "viewer-kernel-zoom")
    # on the page, a 4x4 window of the PNG is exactly its nearest-neighbour enlargement (no smoothing)
    import io

    factor = round(big["shown"] / big["natural"])
    layer_id = page.evaluate("document.getElementById('layer-select').value")
    png = np.asarray(Image.open(io.BytesIO(unet_server.state.kernels_png(layer_id))).convert("RGB")).astype(int)
    score, r, c = max((len(np.unique(png[i:i + 4, j:j + 4].reshape(-1, 3), axis=0)), i, j)
                      for i in range(0, png.shape[0] - 4) for j in range(0, png.shape[1] - 4))
    assert score >= 3  # a window with several weights' colours
    box = page.evaluate("""([r, c, f]) => { const frame = document.getElementById('kernel-frame');
        frame.scrollLeft = c * f - 8; frame.scrollTop = r * f - 8; frame.scrollIntoView({block: 'start'});
        const i = document.getElementById('kernel-img').getBoundingClientRect();
        return {x: i.left + c * f, y: i.top + r * f}; }""", [r, c, factor])
    shot = page.screenshot(clip={"x": box["x"], "y": box["y"], "width": 4 * factor, "height": 4 * factor})
    seen = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)
    want = np.repeat(np.repeat(png[r:r + 4, c:c + 4], factor, axis=0), factor, axis=1)
    assert np.abs(seen - want).max() <= 2

    page.click("#kernel-zoom-out")
    assert page.evaluate(SIZES)["shown"] == pytest.approx(big["shown"] / 2, abs=1)
    page.click("#kernel-zoom-fit")
    back = page.evaluate(SIZES)
    assert not back["zoomed"] and back["shown"] == pytest.approx(fitted["shown"], abs=1)

    select_layer(page, "enc1.conv")  # another layer starts fitted again
    page.wait_for_function("() => !document.getElementById('kernel-frame').classList.contains('zoomed')")
    assert page.problems == []


def test_report_hover_regions_sit_on_the_flow_figure(page: Any, tmp_path: Path) -> None:
    from tests.unet import unet_zoo as Z

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    index = cs.Scope(Z.NestedContainersUNet().eval()).report(image, tmp_path / "r", top=4, progress=False)
    page.goto(index.as_uri())
    page.wait_for_function("() => document.querySelectorAll('.flow-note.placed').length > 0")
    notes = page.evaluate("""() => Array.from(document.querySelectorAll('.flow-note')).map(n => {
        const r = n.getBoundingClientRect(); const img = n.parentElement.querySelector('img').getBoundingClientRect();
        return {title: n.title, placed: n.classList.contains('placed'), w: r.width, h: r.height,
                inside: r.left >= img.left - 1 && r.right <= img.right + 1 && r.top >= img.top - 1 && r.bottom <= img.bottom + 1}; })""")
    assert notes and all(n["placed"] and n["w"] > 5 and n["h"] > 5 and n["inside"] for n in notes)
    assert sum("skip:" in n["title"] for n in notes) == 3
    # the region is what the pointer finds over the label, so the browser shows its title
    first = page.locator(".flow-note").first
    first.scroll_into_view_if_needed()
    hit = first.evaluate("""n => { const r = n.getBoundingClientRect();
        return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2) === n; }""")
    assert hit
    assert page.problems == []
