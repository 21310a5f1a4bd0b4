"""Jupyter: Scope, ActivationSet, UNetFlow, the skip metrics and the report result render as HTML (issue 9)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch.nn as nn

import convscope as cs
from tests.report.nets import EVIL, evil_net, small_unet, unet_image


def test_scope_html_is_a_layer_table_with_counts():
    scope = cs.Scope(evil_net())
    page = scope._repr_html_()
    assert "<table>" in page and "3 layers" in page and "2 convolutions" in page
    assert EVIL not in page and "&lt;img src=x" in page  # model-derived strings are escaped


def test_activation_set_html_rounds_numbers_and_has_thumbnails():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
    acts = cs.Scope(model).activations(np.random.default_rng(0).random((3, 12, 12)).astype(np.float32),
                                       kind="all")
    page = acts._repr_html_()
    assert page.count("<tr>") == 1 + len(acts)  # header + one row per layer
    assert "1x4x12x12" in page and page.count("data:image/png;base64,") == len(acts)
    assert "2 layers" in page
    numbers = re.findall(r"<td>(-?\d[\d.e+-]*)</td>", page)
    assert numbers and all(len(n) <= 10 for n in numbers)  # rounded, not 17 digits


def test_one_layer_is_singular():
    model = nn.Sequential(nn.Conv2d(1, 2, 3)).eval()
    acts = cs.Scope(model).activations(np.zeros((1, 8, 8), np.float32))
    assert "1 layer<" in acts._repr_html_() or "1 layer</caption>" in acts._repr_html_()


@pytest.fixture(scope="module")
def flow():
    return cs.Scope(small_unet()).unet(unet_image(0))


def test_unet_flow_and_skip_metrics_html(flow):
    page = flow._repr_html_()
    assert "U-Net" in page and "levels" in page and "skip metrics" in page
    assert page.count("%") >= len(flow.metrics)  # shares as rounded percentages
    table = flow.metrics._repr_html_()
    assert table.count("<tr>") == 1 + len(flow.metrics)
    assert flow.metrics[0]._repr_html_().count("<tr>") == 2
    share = flow.metrics[0].energy_share
    assert f"{100 * share:.1f}%" in table


def test_report_result_is_a_link(tmp_path):
    index = cs.Scope(evil_net()).report(np.zeros((3, 16, 16), np.float32), tmp_path / "r", progress=False)
    assert index.name == "index.html" and index.exists()
    page = index._repr_html_()
    assert page.startswith("<a href=") and "index.html" in page and 'target="_blank"' in page


def test_a_scan_is_a_table_of_its_layers_and_a_channel_shows_its_card(tmp_path):
    from PIL import Image

    from tests.scan.nets import TinyNet

    (tmp_path / "d").mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            tmp_path / "d" / f"<b>{i}.png")
    scope = cs.Scope(TinyNet().eval())
    result = scope.scan(tmp_path / "d", top_k=2, batch_size=2, out=tmp_path / "s")
    page = result._repr_html_()
    assert page.count("<tr>") == 1 + len(result.layers) and "3 images (0 skipped)" in page
    assert "<td>conv1</td><td>4</td><td>16x16</td><td>1</td>" in page  # TinyNet's conv1 has one dead channel
    view = result.channel("conv1", 0)
    png = view._repr_png_()
    assert png is not None and png.startswith(b"\x89PNG") and png == view.card.read_bytes()
    bare = scope.scan(tmp_path / "d", top_k=2, batch_size=2, crops=False)
    assert bare.channel("conv1", 0)._repr_png_() is None  # no card drawn: Jupyter falls back to the repr
    evil = cs.Scope(evil_net()).scan(tmp_path / "d", top_k=2, batch_size=2, crops=False)._repr_html_()
    assert EVIL not in evil and "&lt;img src=x" in evil  # layer names are escaped
