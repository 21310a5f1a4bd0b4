"""The report's linked planes of a NIfTI input, opened from file:// under the report's CSP:
a slider changes the shown slice, a click in one plane moves the other planes' sliders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("nibabel")
pytest.importorskip("torch")

from tests.browser.conftest import screenshot  # noqa: E402
from tests.volumes import files as F  # noqa: E402
from tests.volumes.test_cli_volumes import KW, UNET, convscope  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHAPE = (13, 11, 9)


@pytest.fixture(scope="module")
def volume_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("planes-browser")
    scan = F.write_nifti(folder / "scan.nii.gz", F.marked_volume(SHAPE), "LAS")
    out = folder / "rep"
    r = convscope("report", UNET, str(scan), "-o", str(out), "--kwargs", KW, "--layer", "down.0.0", "--no-progress",
                  "--no-unet", "--window", "500,1000")
    assert r.returncode == 0, r.stderr
    return out


def _state(page: Any) -> dict:
    return page.evaluate("""() => {
      const out = {};
      document.querySelectorAll('#planes-0 figure.plane').forEach(f => {
        const img = f.querySelector('img');
        out[f.dataset.plane] = {index: Number(f.dataset.index), slider: Number(f.querySelector('input').value),
                                src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0};
      });
      return out;
    }""")


def test_slider_and_click_drive_the_linked_planes(page: Any, volume_report: Path) -> None:
    page.goto((volume_report / "index.html").as_uri())
    page.wait_for_function("() => Array.from(document.querySelectorAll('#planes-0 img')).every(i => i.complete && i.naturalWidth > 0)",
                           timeout=30_000)
    start = _state(page)
    assert {p: s["index"] for p, s in start.items()} == {"axial": 4, "coronal": 5, "sagittal": 6}  # the centre
    assert start["axial"]["src"] == "planes/image-0/axial-0004.png"

    page.locator('#planes-0 figure[data-plane="axial"] input.plane-slider').fill("8")
    page.wait_for_function("() => document.querySelector('#planes-0 figure[data-plane=axial] img').complete")
    moved = _state(page)
    assert moved["axial"]["index"] == 8 and moved["axial"]["src"] == "planes/image-0/axial-0008.png"
    assert moved["axial"]["loaded"]
    assert moved["coronal"] == start["coronal"] and moved["sagittal"] == start["sagittal"]

    # a click at 1/4 width, 1/4 height of the coronal plane: column -> x = 12 - floor(13/4) = 9 (towards the
    # patient's right, image left), row -> z = 8 - floor(9/4) = 6
    box = page.locator('#planes-0 figure[data-plane="coronal"] .plane-box').bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.26, box["y"] + box["height"] * 0.26)
    clicked = _state(page)
    assert clicked["sagittal"]["index"] == 9 and clicked["sagittal"]["slider"] == 9
    assert clicked["axial"]["index"] == 6 and clicked["axial"]["slider"] == 6
    assert clicked["coronal"]["index"] == 5  # the clicked plane stays

    page.locator("#planes-0 input.planes-mip").check()
    assert _state(page)["axial"]["src"] == "planes/image-0/axial-mip.png"
    screenshot(page, "report-linked-planes")
    assert page.problems == []
