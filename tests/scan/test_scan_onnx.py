"""The same net exported to ONNX scans to the same winners, positions and receptive-field boxes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import convscope as cs  # noqa: E402

from .nets import TinyNet  # noqa: E402
from .test_scan import _write_images  # noqa: E402


def test_onnx_scan_matches_torch(tmp_path):
    from tests.adapters.onnx.nets import export_onnx

    _write_images(tmp_path / "d", 8, size=16, seed=13)
    net = TinyNet().eval()
    onnx_scope = cs.load(export_onnx(net, tmp_path / "tiny.onnx", (1, 3, 16, 16)))
    torch_scan = cs.Scope(net).scan(tmp_path / "d", top_k=3, batch_size=4)
    onnx_scan = onnx_scope.scan(tmp_path / "d", top_k=3, batch_size=4)
    for torch_name, onnx_name in zip(torch_scan.layers, onnx_scan.layers):
        for c in range(torch_scan.layer(torch_name).channels):
            a, b = torch_scan.channel(torch_name, c), onnx_scan.channel(onnx_name, c)
            assert a.stats.count == b.stats.count
            np.testing.assert_allclose(a.stats.mean, b.stats.mean, rtol=1e-4, atol=1e-6)
            same = 0
            for ea, eb in zip(a.examples, b.examples):
                assert ea.score == pytest.approx(eb.score, rel=1e-4, abs=1e-6)
                if ea.image_id == eb.image_id:  # (near-ties may swap between the two runtimes)
                    same += 1
                    assert ea.crop_box is not None and ea.crop_box == eb.crop_box
            assert same >= 2
