"""The HTML report: files, escaping, CSP, paging of wide layers, health numbers, U-Net section, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import convscope as cs
from convscope.errors import ConvscopeError
from tests.report.nets import EVIL, evil_net, html_tags, rgb_image, small_unet, unet_image


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evil-report")
    scope = cs.Scope(evil_net())
    return scope.report([rgb_image(0), rgb_image(1)], out, top=16, progress=False)


@pytest.fixture(scope="module")
def unet_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("unet-report")
    scope = cs.Scope(small_unet())
    return scope.report(unet_image(0), out, top=8, progress=False)


def test_report_folder_has_index_assets_and_manifest(evil_report: Path) -> None:
    folder = evil_report.parent
    assert evil_report.name == "index.html"
    for rel in ("assets/report.css", "assets/report.js", "report.json", "manifest.json"):
        assert (folder / rel).is_file(), rel
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = {entry["file"] for entry in manifest["files"]}
    assert {"index.html", "assets/report.js", "report.json"} <= listed
    assert manifest["command"] == "report"


def test_every_referenced_file_exists_and_nothing_is_external(evil_report: Path) -> None:
    html = evil_report.read_text()
    refs = [attrs.get("src") or attrs.get("href") for _tag, attrs in html_tags(html) if attrs.get("src") or attrs.get("href")]
    assert refs
    for ref in refs:
        assert ref is not None
        assert not re.match(r"^[a-z]+:", ref) and not ref.startswith("//"), f"external reference {ref}"
        if not ref.startswith("#"):
            assert (evil_report.parent / ref).is_file(), ref


def test_layer_names_are_escaped(evil_report: Path) -> None:
    html = evil_report.read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert EVIL not in html
    assert not [attrs for tag, attrs in html_tags(html) if tag == "img" and attrs.get("src") == "x"]


def test_page_has_a_strict_csp_and_no_inline_script_or_style(evil_report: Path) -> None:
    html = evil_report.read_text()
    tags = html_tags(html)
    csp = [a.get("content") for t, a in tags if t == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert csp and "script-src 'self'" in csp[0] and "default-src 'none'" in csp[0]
    assert all(a.get("src") for t, a in tags if t == "script"), "inline <script> found"
    assert "<style" not in html
    assert not [a for _t, a in tags if "style" in a or any(k.startswith("on") for k in a)]


def test_wide_layer_shows_top_k_and_lazy_full_grid(evil_report: Path) -> None:
    html = evil_report.read_text()
    tags = html_tags(html)
    wide_imgs = [a for t, a in tags if t == "img" and "of layer wide" in (a.get("alt") or "")]
    assert any("top 16 of 80 channels" in (a.get("alt") or "") for a in wide_imgs)
    full = [a for a in wide_imgs if (a.get("alt") or "").startswith("All 80 channels")]
    assert len(full) == 2 and all(a.get("loading") == "lazy" for a in full)
    assert "<details class=\"full-grid\">" in html
    assert all(a.get("alt") for t, a in tags if t == "img")


def test_report_json_has_weight_and_activation_health(evil_report: Path) -> None:
    data = json.loads((evil_report.parent / "report.json").read_text())
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert list(layers) == [EVIL, "act", "wide"]
    assert layers["wide"]["weight_health"]["dead_filters"] == [3]
    assert len(layers["wide"]["weight_health"]["filter_l2"]) == 80
    assert [h["image"] for h in layers["act"]["activation_health"]] == ["image 1", "image 2"]
    assert layers["act"]["activation_health"][0]["saturation_rule"] == "bounds"
    assert layers["act"]["weight_health"] is None
    assert data["unet"] == []


def test_dead_filter_is_flagged_in_the_page(evil_report: Path) -> None:
    html = evil_report.read_text()
    assert re.search(r'class="warn">1 of 80 \(3\)', html)


def test_unet_report_has_flow_figure_panels_and_block_links(unet_report: Path) -> None:
    folder = unet_report.parent
    html = unet_report.read_text()
    tags = html_tags(html)
    assert 'id="unet"' in html
    assert (folder / "unet" / "image-0.flow.png").is_file()
    panels = [a for t, a in tags if t == "img" and (a.get("src") or "").startswith("unet/") and "level" in (a.get("src") or "")]
    assert len(panels) == 3
    anchors = {a.get("id") for _t, a in tags if a.get("id")}
    blocks = [a for t, a in tags if t == "a" and "flow-block" in (a.get("class") or "")]
    assert len(blocks) >= 7
    assert all((b.get("href") or "")[1:] in anchors for b in blocks)
    cams = [a for t, a in tags if t == "img" and (a.get("src") or "") == "unet/image-0.cam.png"]
    assert len(cams) == 1 and (folder / "unet" / "image-0.cam.png").is_file()  # the CAM row
    data = json.loads((folder / "report.json").read_text())
    assert data["unet"][0]["levels"][0]["level"] == 0


def test_report_accepts_a_batch_as_several_images(tmp_path: Path) -> None:
    scope = cs.Scope(evil_net())
    batch = np.stack([rgb_image(0), rgb_image(1)]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    index = scope.report(batch, tmp_path, layers=["wide"], progress=False)
    data = json.loads((index.parent / "report.json").read_text())
    assert data["images"] == ["image 1 [0]", "image 1 [1]"]
    assert [layer["name"] for layer in data["layers"]] == ["wide"]


def test_report_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from convscope import progress

    monkeypatch.setattr(progress, "DELAY", 0.0)  # a bar appears only after DELAY seconds
    cs.Scope(evil_net()).report(rgb_image(0), tmp_path, layers=["act"], progress=True)
    assert "convscope report" in capsys.readouterr().err


def test_report_rejects_no_images(tmp_path: Path) -> None:
    with pytest.raises(ConvscopeError, match="at least one input image"):
        cs.Scope(evil_net()).report([], tmp_path)


def test_report_rejects_bad_top(tmp_path: Path) -> None:
    with pytest.raises(ConvscopeError, match="top must be"):
        cs.Scope(evil_net()).report(rgb_image(0), tmp_path, top=0)


def test_cli_report_writes_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from convscope.cli.main import main

    image = tmp_path / "a <b>.png"
    Image.fromarray(rgb_image(3)).save(image)
    out = tmp_path / "rep"
    main(["report", "tests.report.nets:evil_net", str(image), "-o", str(out), "--top", "8", "--no-progress"])
    assert (out / "index.html").is_file()
    html = (out / "index.html").read_text()
    assert "a &lt;b&gt;.png" in html
    assert "wrote" in capsys.readouterr().out


def test_cli_report_unknown_layer_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from convscope.cli.main import main

    image = tmp_path / "a.png"
    Image.fromarray(rgb_image(3)).save(image)
    with pytest.raises(SystemExit) as info:
        main(["report", "tests.report.nets:evil_net", str(image), "-o", str(tmp_path / "r"), "--layer", "nope"])
    assert info.value.code == 2
    assert "no layer named 'nope'" in capsys.readouterr().err


def test_demo_writes_a_report_for_both_demo_models(tmp_path: Path) -> None:
    from convscope.cli.demo import run_demo

    index = run_demo(tmp_path, echo=lambda _t: None, samples=1, progress=False)
    html = index.read_text()
    for name in ("cnn", "unet"):
        assert f"href='{name}/index.html'" in html
        assert (tmp_path / name / "index.html").is_file()
    assert (tmp_path / "unet" / "unet" / "image-0.flow.png").is_file()
    assert not (tmp_path / "cnn" / "unet").exists()


def test_import_convscope_does_not_import_jinja2_or_fastapi() -> None:
    import subprocess
    import sys

    code = (
        "import sys, convscope, convscope.report, convscope.server, convscope.core.health, convscope.server.security, "
        "convscope.server.cache, convscope.server.registry\n"
        "bad = [m for m in ('jinja2', 'fastapi', 'uvicorn', 'starlette', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src})
