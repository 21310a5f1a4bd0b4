"""`convscope serve --scan DIR` in chromium: clicking a channel shows its dataset-scan card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import convscope as cs
from tests.browser.conftest import screenshot
from tests.report.nets import small_unet, unet_image

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_clicking_a_channel_shows_its_scan_card(page: Any, tmp_path: Path) -> None:
    from convscope.server.run import ViewerServer

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(unet_image(i)).save(folder / f"img{i}.png")
    scope = cs.Scope(small_unet())
    scope.scan(folder, top_k=2, batch_size=2, out=tmp_path / "scan")
    server = ViewerServer.create(scope, images=folder, host="127.0.0.1", port=0, scan=tmp_path / "scan").start()
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_selector("#channel-grid button.channel")
        page.locator("#channel-grid button.channel").first.click()
        page.wait_for_selector("#detail-scan-figure:not([hidden])")
        size = page.evaluate("() => { const i = document.getElementById('detail-scan'); return [i.naturalWidth, i.naturalHeight]; }")
        assert size[0] > 200 and size[1] > 100
        screenshot(page, "serve-scan-card")
        assert page.problems == []
    finally:
        server.stop()
