"""Playwright driving Debian's chromium (skipped with a reason when chromium or playwright is missing)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Screenshots land here (gitignored)."""

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("chromium is not installed (run scripts/ensure-browser.sh; CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    page = context.new_page()
    page.problems = []  # console errors, page errors, dialogs, CSP violations

    def on_console(msg: Any) -> None:
        # 4xx answers the page expects (e.g. "not a U-Net") show up as "Failed to load resource"
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            page.problems.append(f"console {msg.type}: {msg.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: page.problems.append(f"pageerror: {exc}"))

    def on_dialog(dialog: Any) -> None:
        page.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield page
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
# Note: pages run under a CSP without 'unsafe-eval', so page.wait_for_function must be given
# functions ("() => ..."), never bare expressions (Playwright evaluates those with eval()).


@pytest.fixture
def unet_server(tmp_path: Path) -> Iterator[Any]:
    """A live viewer of a small U-Net with one image in its ``--images`` folder."""
    from PIL import Image

    import convscope as cs
    from convscope.server.run import ViewerServer
    from tests.report.nets import small_unet, unet_image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(unet_image(0)).save(folder / "first.png")
    server = ViewerServer.create(cs.Scope(small_unet()), images=folder, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        server.stop()


def select_layer(page: Any, name: str) -> None:
    """Choose layer ``name`` in the viewer's layer menu and wait until its view is shown."""
    value = page.evaluate(
        "name => Array.from(document.querySelectorAll('#layer-select option')).find(o => o.textContent.startsWith(name + '  ')).value",
        name,
    )
    page.select_option("#layer-select", value)
    page.wait_for_function("name => document.getElementById('layer-title').textContent === name", arg=name)
