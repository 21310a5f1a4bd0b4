"""The report lists selected layers that did not run for this input (issue 10, "nothing omitted
silently"), and every shortened name in the report and the viewer has its full text on hover."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convscope as cs
from convscope.core.activations import NOT_EXECUTED

torch = pytest.importorskip("torch")
pytest.importorskip("jinja2")

from tests.unet import unet_zoo as Z  # noqa: E402
from tests.report.nets import html_tags  # noqa: E402

X = np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def aux_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("aux-report")
    return cs.Scope(Z.AuxHeadNet().eval()).report(X, out, progress=False)


def test_report_lists_the_selected_layers_that_did_not_run(aux_report: Path) -> None:
    html = aux_report.read_text()
    tags = html_tags(html)
    assert "Selected layers not executed for this input" in html
    listed = [a.get("title") for t, a in tags if t == "a" and (a.get("href") or "").startswith("#layer-")
              and a.get("title") in ("aux", "unused")]
    assert "aux" in listed and "unused" in listed
    assert html.count(f"Selected but {NOT_EXECUTED}") == 2  # a note in each of the two layer sections
    assert f"2 selected layer(s) {NOT_EXECUTED}: aux, unused" in html
    sidebar = [a for t, a in tags if t == "li" and a.get("data-name") in ("conv1", "aux")]
    assert [a.get("class") for a in sidebar] == [None, "not-run"]
    data = json.loads((aux_report.parent / "report.json").read_text())
    assert data["not_executed"] == {"reason": NOT_EXECUTED, "layers": ["aux", "unused"]}
    by_name = {layer["name"]: layer for layer in data["layers"]}
    assert by_name["aux"]["not_executed_for"] == ["image 1"] and by_name["conv1"]["not_executed_for"] == []
    manifest = json.loads((aux_report.parent / "manifest.json").read_text())
    assert manifest["not_executed"] == {"reason": NOT_EXECUTED, "layers": ["aux", "unused"]}


def test_a_report_of_layers_that_all_ran_lists_none(tmp_path: Path) -> None:
    index = cs.Scope(Z.AuxHeadNet().eval()).report(X, tmp_path / "r", layers=["conv1", "conv2"], progress=False)
    assert "not executed" not in index.read_text()
    assert json.loads((tmp_path / "r" / "report.json").read_text())["not_executed"]["layers"] == []


def test_several_inputs_say_for_how_many(tmp_path: Path) -> None:
    index = cs.Scope(Z.AuxHeadNet().eval()).report([X, X[::-1].copy()], tmp_path / "r", progress=False)
    assert "not executed for any of the 2 inputs" in index.read_text()


def test_cli_report_prints_the_layers_not_executed(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X)
    exe = Path(sys.executable).with_name("convscope")
    proc = subprocess.run([str(exe), "report", "tests.unet.unet_zoo:AuxHeadNet", str(tmp_path / "x.npy"), "--out",
                           str(tmp_path / "r"), "--no-progress"], capture_output=True, text=True, timeout=300)
    if "no such option" in proc.stderr.lower():  # pragma: no cover - older CLI without --no-progress
        proc = subprocess.run([str(exe), "report", "tests.unet.unet_zoo:AuxHeadNet", str(tmp_path / "x.npy"),
                               "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"2 selected layer(s) {NOT_EXECUTED}: aux, unused" in proc.stdout + proc.stderr


# -- the full name on hover -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_names_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nested-report")
    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return cs.Scope(Z.NestedContainersUNet().eval()).report(image, out, top=4, progress=False)


def test_flow_figure_has_a_hover_region_for_every_skip_and_shortened_name(long_names_report: Path) -> None:
    html = long_names_report.read_text()
    notes = [a for t, a in html_tags(html) if t == "span" and a.get("class") == "flow-note"]
    titles = [a.get("title") or "" for a in notes]
    skips = json.loads((long_names_report.parent / "report.json").read_text())["unet"][0]["skips"]
    for skip in skips:  # each skip's label has its full sentence on hover
        assert sum(f"{skip['from']} -> {skip['to']}" in t for t in titles) >= 1
    for a in notes:
        box = [float(v) for v in (a.get("data-box") or "").split(",")]
        assert len(box) == 4 and 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1
    assert sum("skip:" in t for t in titles) == len(skips) == 3  # one region per skip label (its two lines)
    # every picture names its layer on hover
    imgs = [a for t, a in html_tags(html) if t == "img" and not (a.get("src") or "").endswith(".flow.png")]
    assert imgs and all(a.get("title") for a in imgs)
    assert "flow-note" in (long_names_report.parent / "assets" / "report.js").read_text()


def test_viewer_unet_view_carries_the_hover_regions() -> None:
    from convscope.server.unet_view import unet_public, unet_view

    torch.manual_seed(0)
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    flow = cs.Scope(Z.NestedContainersUNet().eval()).unet(x)
    public = unet_public(unet_view(flow, {}), "img1")
    figure = flow.figure().figure
    shortened = {t.title for t in figure.texts() if t.text.startswith("..") and t.role == "skip-label"}
    assert shortened and shortened <= {h["title"] for h in public["hovers"]}
    assert all(isinstance(p["hovers"], list) for p in public["panels"])
    static = Path(cs.__file__).parent / "server" / "static"
    js = (static / "viewer.js").read_text()
    assert "addHovers(blocks, view.hovers)" in js and "option.title = layer.name" in js


def test_level_panels_get_a_hover_region_for_a_shortened_name() -> None:
    from convscope.render.flow import PanelColumn, render_level_panels
    from convscope.report.builder import picture_hovers

    long_name = "model.encoder.stages.3.blocks.11.attention.output.projection"
    mean = np.zeros((8, 8, 3), np.uint8)
    picture = render_level_panels([PanelColumn("encoder output", long_name, "8x8x8", mean,
                                               grid_image=mean, grid_caption="top 8 of 48 channels by mean, each on "
                                               "its own min-max")])
    hovers = picture_hovers(picture)
    assert [h["title"] for h in hovers] == [long_name]  # the wrapped caption is shown in full: no hover
    shown = next(t for t in picture.figure.texts() if t.role == "panel-name")
    x0, y0, x1, y1 = hovers[0]["box"]
    assert x0 * picture.width == pytest.approx(shown.x) and y0 * picture.height == pytest.approx(shown.y)
    assert shown.text.startswith("..") and long_name.endswith(shown.text[2:])
