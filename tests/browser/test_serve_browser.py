"""`convscope serve` in chromium: pick a layer, hover and click a channel, upload an image, U-Net blocks."""

from __future__ import annotations

from typing import Any

import pytest

import convscope as cs
from tests.browser.conftest import screenshot, select_layer
from tests.report.nets import EVIL, evil_net, rgb_image, unet_image
from tests.server.conftest import png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

THUMBS_LOADED = """() => {
  const imgs = Array.from(document.querySelectorAll('#channel-grid img'));
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def test_viewer_layer_channel_detail_and_upload(page: Any, unet_server: Any) -> None:
    page.goto(unet_server.url)
    page.wait_for_selector("body[data-ready=true]")
    assert "token=" not in page.url  # the secret leaves the address bar once the cookie is set

    select_layer(page, "enc2.conv")
    page.wait_for_function("() => document.querySelectorAll('#channel-grid button.channel').length === 16")
    page.wait_for_function(THUMBS_LOADED)
    assert page.is_hidden("#slice-control")  # 2-D maps: no slice slider

    channel = page.locator('#channel-grid button[data-channel="3"]')
    channel.hover()
    page.wait_for_selector("#tooltip:not([hidden])")
    assert "Channel: 3" in page.text_content("#tooltip")

    channel.click()
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_function("() => ['detail-map', 'detail-overlay'].every(id => document.getElementById(id).naturalWidth > 0)")
    assert "channel 3" in page.text_content("#detail-title")
    assert page.evaluate("document.getElementById('detail-map').naturalWidth") >= 256
    screenshot(page, "viewer-channel-detail")

    before = page.get_attribute("#channel-grid", "data-image")
    page.set_input_files("#upload-input", files=[{"name": "uploaded.png", "mimeType": "image/png", "buffer": png_bytes(unet_image(7))}])
    page.click("#upload-button")
    page.wait_for_function("before => document.getElementById('channel-grid').dataset.image !== before", arg=before)
    after = page.get_attribute("#channel-grid", "data-image")
    page.wait_for_function(THUMBS_LOADED)
    srcs = page.evaluate("Array.from(document.querySelectorAll('#channel-grid img')).map(i => i.getAttribute('src'))")
    assert srcs and all(f"/api/images/{after}/" in src for src in srcs)
    assert "Uploaded uploaded.png" in page.text_content("#upload-status")
    assert page.evaluate("document.getElementById('image-select').selectedOptions[0].textContent") == "uploaded.png (uploaded)"
    screenshot(page, "viewer-after-upload")
    assert page.problems == []


def test_viewer_keyboard_and_unet_blocks(page: Any, unet_server: Any) -> None:
    page.goto(unet_server.url)
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("#unet:not([hidden])")
    page.wait_for_function("() => document.getElementById('unet-img').naturalWidth > 0")
    assert page.text_content("#layer-title") == "enc1.conv"
    page.locator("#layer-view").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('layer-title').textContent === 'enc1.relu'")

    page.fill("#layer-filter", "bottleneck")
    options = page.evaluate("Array.from(document.querySelectorAll('#layer-select option')).map(o => o.textContent)")
    assert options and all(o.startswith("bottleneck.") for o in options)

    block = page.locator('.unet-block[title="dec1.relu2"]')
    assert block.evaluate("b => getComputedStyle(b).backgroundColor") == "rgba(0, 0, 0, 0)"  # the figure shows through
    block.click()
    page.wait_for_function("() => document.getElementById('layer-title').textContent === 'dec1.relu2'")
    page.wait_for_function(THUMBS_LOADED)
    page.locator("#unet").scroll_into_view_if_needed()
    screenshot(page, "viewer-unet")
    assert page.problems == []


def test_viewer_shows_hostile_layer_names_as_text(page: Any) -> None:
    from convscope.server.run import ViewerServer

    server = ViewerServer.create(cs.Scope(evil_net()), host="127.0.0.1", port=0).start()
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        assert page.text_content("#layer-title") == EVIL
        page.set_input_files("#upload-input", files=[{"name": "<b>x.png", "mimeType": "image/png", "buffer": png_bytes(rgb_image(1))}])
        page.click("#upload-button")
        page.wait_for_function(THUMBS_LOADED)
        assert EVIL in page.text_content("#layer-select")
        assert page.evaluate("document.querySelectorAll('img[src=\"x\"], b').length") == 0
        assert page.is_hidden("#unet")  # not a U-Net: the section stays hidden
        screenshot(page, "viewer-hostile-name")
        assert page.problems == []
    finally:
        server.stop()
