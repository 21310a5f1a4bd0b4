"""``--format png|svg|pdf``, ``--overlay-cmap``/``--overlay-alpha`` through the installed console
script, and every skip of deep/dense U-Nets drawn in the flow figure (issues 9 and 15)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from convscope.unet_flow import build_unet_flow, unet_backend_for  # noqa: E402
from tests.unet import unet_zoo as Z  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"


def _console() -> list[str]:
    script = Path(sys.executable).with_name("convscope")
    return [str(script)] if script.exists() else [sys.executable, "-m", "convscope"]


def _run(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", KERAS_BACKEND="torch")
    return subprocess.run(_console() + args, capture_output=True, text=True, env=env, cwd=tmp, timeout=300)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(path)
    return path


def test_unet_writes_pdf_and_svg_figures(tmp_path: Path, image: Path) -> None:
    out = tmp_path / "fig"
    result = _run(["unet", "demo:unet", str(image), "--format", "pdf,svg", "-o", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert {"flow.pdf", "flow.svg", "level-0.pdf", "level-0.svg", "unet.json", "manifest.json"} <= names
    assert not any(n.endswith(".png") for n in names)
    assert (out / "flow.pdf").read_bytes().startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page(?!s)", (out / "flow.pdf").read_bytes())) == 1  # one page
    root = ET.parse(out / "flow.svg").getroot()
    texts = [el.text for el in root.iter(f"{SVG}text")]
    flow = json.loads((out / "unet.json").read_text())
    for name in flow["bottleneck"][-1:] + [flow["levels"][0]["encoder"][-1]]:
        assert any(t and (t == name or name.endswith(t.lstrip("."))) for t in texts), name
    manifest = json.loads((out / "manifest.json").read_text())
    formats = {e["file"]: e.get("format") for e in manifest["files"]}
    assert formats["flow.pdf"] == "pdf" and formats["flow.svg"] == "svg"


def test_bad_format_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _run(["kernels", "demo:cnn", "--format", "png,jpeg", "-o", str(tmp_path / "k")], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown --format 'jpeg'" in result.stderr
    assert not (tmp_path / "k").exists() or not any((tmp_path / "k").iterdir())


def test_overlay_cmap_and_alpha_are_used_and_recorded(tmp_path: Path, image: Path) -> None:
    out = tmp_path / "acts"
    result = _run(["activations", "demo:unet", str(image), "-l", "enc1.conv", "--overlay", "--overlay-cmap", "magma",
                   "--overlay-alpha", "0.25", "--format", "png,svg", "-o", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["overlay"] == {"cmap": "magma", "alpha": 0.25}
    entries = {e["file"]: e for e in manifest["files"]}
    assert entries["enc1.conv.overlay.png"]["cmap"] == "magma"
    assert entries["enc1.conv.overlay.png"]["alpha"] == 0.25
    assert "enc1.conv.overlay.svg" in entries and (out / "enc1.conv.svg").exists()
    bad = _run(["activations", "demo:unet", str(image), "--overlay", "--overlay-alpha", "1.5", "-o",
                str(tmp_path / "bad")], tmp_path)
    assert bad.returncode == 2 and "alpha" in bad.stderr and bad.stderr.strip().count("\n") == 0


@pytest.mark.skipif(shutil.which("pdffonts") is None, reason="poppler-utils missing")
def test_kernels_pdf_has_no_type3_fonts(tmp_path: Path) -> None:
    out = tmp_path / "k"
    result = _run(["kernels", "demo:cnn", "--format", "pdf", "-l", "block1*", "-o", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    pdfs = sorted(out.glob("*.pdf"))
    assert pdfs
    listing = subprocess.run(["pdffonts", str(pdfs[0])], capture_output=True, text=True, check=True).stdout
    assert "Type 3" not in listing and "TrueType" in listing


@pytest.mark.parametrize("model,shape", [
    (lambda: Z.UNetPlusPlus(), (1, 1, 16, 16)),
    (lambda: Z.UNet(5), (1, 1, 64, 64)),
    (lambda: Z.DeepSupervisionUNet(), (1, 1, 64, 64)),
    (lambda: Z.AttentionUNet(), (1, 1, 64, 64)),
])
def test_every_skip_found_has_its_arrow(model, shape) -> None:
    torch.manual_seed(0)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    flow = build_unet_flow(unet_backend_for(model()), x, None)
    picture = flow.figure()
    assert picture.meta["skips_drawn"] == len(flow.structure.skips) and picture.meta["links_missing"] == []
    from convscope.render.scene import Line

    assert sum(isinstance(i, Line) and i.group == "skip" for i in picture.figure.items) == len(flow.structure.skips)
