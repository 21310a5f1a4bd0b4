"""The HTML report opened from file:// in chromium: images load, navigation works, names stay text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import convscope as cs
from tests.browser.conftest import screenshot
from tests.report.nets import EVIL, evil_net, rgb_image, small_unet, unet_image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOAD_ALL_IMAGES = """async () => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  for (let y = 0; y < document.documentElement.scrollHeight; y += 500) {
    window.scrollTo(0, y);
    await new Promise(r => setTimeout(r, 10));
  }
  document.querySelectorAll('img').forEach(img => { img.loading = 'eager'; });
}"""


@pytest.fixture(scope="module")
def unet_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scope = cs.Scope(small_unet())
    return scope.report([unet_image(0), unet_image(1)], tmp_path_factory.mktemp("browser-report"), top=4, progress=False)


def test_report_from_file_has_no_broken_image(page: Any, unet_report: Path) -> None:
    page.goto(unet_report.as_uri())
    page.evaluate(LOAD_ALL_IMAGES)
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=60_000)
    count = page.evaluate("document.images.length")
    broken = page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src'))")
    assert count > 100
    assert broken == []
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "report-top")
    assert page.problems == []


def test_report_arrow_keys_move_between_layers(page: Any, unet_report: Path) -> None:
    page.goto(unet_report.as_uri())
    page.keyboard.press("ArrowRight")
    assert page.evaluate("location.hash") == "#layer-0"
    assert page.get_attribute('#layer-links a[data-target="layer-0"]', "aria-current") == "true"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("location.hash") == "#layer-2"
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("location.hash") == "#layer-1"
    assert page.evaluate("document.activeElement.id") == "layer-1-title"
    screenshot(page, "report-arrow-keys")
    assert page.problems == []


def test_report_filter_box_hides_other_layers(page: Any, unet_report: Path) -> None:
    page.goto(unet_report.as_uri())
    page.fill("#layer-filter", "dec2.")
    visible = page.evaluate("Array.from(document.querySelectorAll('section.layer')).filter(s => !s.hidden).map(s => s.dataset.name)")
    assert visible == ["dec2.conv", "dec2.relu", "dec2.conv2", "dec2.relu2"]
    listed = page.evaluate("Array.from(document.querySelectorAll('#layer-links li')).filter(l => !l.hidden).length")
    assert listed == 4
    assert page.text_content("#filter-status") == "4 of 32 layers match"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#" + page.evaluate("document.querySelector('section.layer:not([hidden])').id")
    page.keyboard.press("ArrowRight")  # focus is on the heading now: arrows step through the visible layers only
    assert page.evaluate("document.querySelector(location.hash).dataset.name") == "dec2.relu"
    screenshot(page, "report-filter")
    page.fill("#layer-filter", "no such layer")
    assert page.is_visible("#no-match")
    assert page.problems == []


def test_report_unet_blocks_link_to_layers(page: Any, unet_report: Path) -> None:
    page.goto(unet_report.as_uri() + "#unet")
    block = page.locator('.flow-block[title="dec1.relu2"]').first
    block.wait_for(state="visible")
    block.click()
    assert page.evaluate("document.querySelector(location.hash).dataset.name") == "dec1.relu2"
    assert page.problems == []


def test_report_shows_hostile_layer_names_as_text(page: Any, tmp_path: Path) -> None:
    index = cs.Scope(evil_net()).report(rgb_image(0), tmp_path, top=8, progress=False)
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    assert EVIL in page.text_content("#layer-links")
    assert EVIL in page.text_content("#layer-0-title")
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    screenshot(page, "report-hostile-name")
    assert page.problems == []
