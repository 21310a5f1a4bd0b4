"""The viewer says how an upload was fitted, shows a busy state, and a classifier's top-5 (issue 9)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import convscope as cs
from tests.report.nets import small_unet
from tests.server.conftest import png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class SlowClassifier(nn.Module):
    """RGB -> conv -> ReLU -> global pool -> 7 classes; each forward pass sleeps ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, 7)
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return self.head(self.pool(self.relu(self.conv(x))).flatten(1))


def _server(model: nn.Module) -> Any:
    from convscope.server.run import ViewerServer

    return ViewerServer.create(cs.Scope(model), host="127.0.0.1", port=0).start()


def _all_console_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def _upload(page: Any, name: str, data: bytes) -> None:
    page.set_input_files("#upload-input", files=[{"name": name, "mimeType": "image/png", "buffer": data}])
    page.click("#upload-button")


def test_classifier_shows_top5_and_never_asks_for_a_unet(page: Any) -> None:
    torch.manual_seed(0)
    server = _server(SlowClassifier().eval())
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    errors = _all_console_errors(page)
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        rgb = (np.random.default_rng(3).random((40, 56, 3)) * 255).astype(np.uint8)
        _upload(page, "cat.png", png_bytes(rgb))
        page.wait_for_selector("#predictions:not([hidden])")
        rows = page.evaluate("Array.from(document.querySelectorAll('#prediction-list li')).map(li => li.textContent)")
        assert len(rows) == 5 and all(row.startswith("class ") and row.endswith("%") for row in rows)
        assert "softmax" in page.text_content("#prediction-note") and "of 7 classes" in page.text_content("#prediction-note")
        page.wait_for_function("() => document.body.getAttribute('aria-busy') !== 'true' && document.getElementById('busy').hidden")
        assert not [url for url in requests if "/unet" in url]  # no U-Net request for a classifier
        assert errors == [] and page.problems == []
        # the numbers are the model's: softmax of its scores for this image
        scope = cs.Scope(server.state.scope.model)
        logits = scope.activations(rgb).output[0]
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        best = int(np.argmax(probs))
        assert rows[0].startswith(f"class {best}: ")
    finally:
        server.stop()


def test_upload_keeps_its_size_and_the_gray_conversion_is_announced(page: Any) -> None:
    server = _server(small_unet())
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        rgb = (np.random.default_rng(1).random((48, 80, 3)) * 255).astype(np.uint8)
        _upload(page, "wide.png", png_bytes(rgb))
        page.wait_for_function("() => document.getElementById('upload-status').textContent.startsWith('Uploaded')")
        status = page.text_content("#upload-status")
        assert "used at its own size, 48x80" in status
        assert "converted from RGB to grayscale" in status
        page.wait_for_function("() => document.getElementById('image-notes').textContent.includes('48x80')")
        page.wait_for_function("() => document.getElementById('layer-meta').textContent.includes('48×80')")
        assert page.problems == []
    finally:
        server.stop()


def test_busy_state_never_shows_the_old_image_under_the_new_name(page: Any) -> None:
    torch.manual_seed(0)
    server = _server(SlowClassifier(delay=1.0).eval())
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        _upload(page, "first.png", png_bytes((np.random.default_rng(5).random((32, 32, 3)) * 255).astype(np.uint8)))
        page.wait_for_function("() => document.querySelectorAll('#channel-grid button.channel').length > 0")
        first = page.get_attribute("#channel-grid", "data-image")
        page.wait_for_function("() => document.getElementById('busy').hidden")
        _upload(page, "second.png", png_bytes((np.random.default_rng(6).random((32, 32, 3)) * 255).astype(np.uint8)))
        page.wait_for_selector("#busy:not([hidden])")
        assert "second.png" in page.text_content("#busy")
        assert page.get_attribute("#main", "aria-busy") == "true"
        shown = page.evaluate("Array.from(document.querySelectorAll('#channel-grid button.channel')).length")
        assert shown == 0 or page.get_attribute("#channel-grid", "data-image") != first
        page.wait_for_function("() => document.getElementById('busy').hidden")
        assert page.get_attribute("#channel-grid", "data-image") != first
        assert page.problems == []
    finally:
        server.stop()


def _options(page: Any) -> list[str]:
    return page.evaluate("Array.from(document.querySelectorAll('#layer-select option')).map(o => o.textContent)")


def test_viewer_filter_takes_the_same_globs_and_kinds_as_the_cli(page: Any) -> None:
    server = _server(small_unet())
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        scope = server.state.scope
        offered = [layer.name for layer in server.state.layers]
        page.fill("#layer-filter", "enc*.conv*")
        expected = [n for n in scope.select("enc*.conv*", kind="all") if n in offered]
        assert [o.split("  ")[0] for o in _options(page)] == expected and expected
        page.fill("#layer-filter", "activation")
        kinds = {layer.name: layer.info.kind for layer in server.state.layers}
        shown = [o.split("  ")[0] for o in _options(page)]
        assert shown == [n for n in offered if kinds[n] == "activation" or "activation" in n.lower()]
        page.fill("#layer-filter", "kind:conv")
        assert [o.split("  ")[0] for o in _options(page)] == [n for n in offered if kinds[n] in ("conv", "conv_transpose")]
        assert page.problems == []
    finally:
        server.stop()


def test_report_filter_takes_the_same_globs_and_kinds(page: Any, tmp_path: Any) -> None:
    scope = cs.Scope(small_unet())
    index = scope.report(np.zeros((1, 64, 64), np.float32), tmp_path / "r", progress=False, unet=False)
    page.goto(index.resolve().as_uri())
    shown = "() => Array.from(document.querySelectorAll('#layer-links li')).filter(li => !li.hidden).map(li => li.dataset.name)"
    page.fill("#layer-filter", "dec?.conv*")
    names = page.evaluate(shown)
    assert names and all(n.startswith("dec") and ".conv" in n for n in names)
    page.fill("#layer-filter", "conv")
    rows = page.evaluate("() => Array.from(document.querySelectorAll('#layer-links li')).filter(li => !li.hidden)"
                         ".map(li => [li.dataset.name, li.dataset.kind])")
    # the kind (transposed convolutions included, as --kind conv), or a name containing the word
    assert rows and all(kind in ("conv", "conv_transpose") or "conv" in name.lower() for name, kind in rows)
    assert any(kind == "conv_transpose" for _name, kind in rows)
    page.fill("#layer-filter", "kind:activation")
    assert set(page.evaluate("() => Array.from(document.querySelectorAll('#layer-links li')).filter(li => !li.hidden).map(li => li.dataset.kind)")) == {"activation"}
    assert page.problems == []
