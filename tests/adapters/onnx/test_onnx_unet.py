"""scope.unet() on an ONNX export of a U-Net: same anatomy and energy shares as the torch model."""

from __future__ import annotations

import numpy as np
import pytest

from convscope import Scope
from convscope.adapters.onnx_adapter import OnnxAdapter
from convscope.unet_flow import unet_backend_for

from .nets import TinyUNet, batch, export_onnx, make


@pytest.fixture
def pair(tmp_path):
    model = make(TinyUNet)
    return model, OnnxAdapter(export_onnx(model, tmp_path / "unet.onnx", (1, 1, 16, 16), dynamic=(0, 2, 3)))


def test_unet_backend_for_onnx_adapter_is_the_adapter(pair):
    _, adapter = pair
    assert unet_backend_for(adapter) is adapter


def test_onnx_unet_energy_shares_equal_the_torch_models(pair):
    model, adapter = pair
    x = batch((16, 16), seed=1)
    ours = Scope(adapter).unet(x)
    theirs = Scope(model).unet(x)
    assert len(ours.structure.skips) == len(theirs.structure.skips) == 2
    for mine, ref in zip(ours.metrics, theirs.metrics):
        assert mine.level == ref.level and mine.merge_kind == "concat"
        assert mine.energy_share == pytest.approx(ref.energy_share, abs=1e-5)


def test_onnx_unet_has_no_gradient_shares(pair):
    _, adapter = pair
    flow = Scope(adapter).unet(batch((16, 16), seed=1))
    assert all(metric.gradient_share is None for metric in flow.metrics)


def test_onnx_graph_shapes_match_captured_values(pair):
    from convscope.core.graph import CaptureRequest

    _, adapter = pair
    x = batch((2, 1, 16, 16))
    capture = adapter.capture_graph(x, lambda graph: CaptureRequest(values=frozenset(graph.topological_order())))
    for node in capture.graph:
        assert capture.values[node.id].shape == (2, *node.shape)
    assert np.array_equal(capture.values[capture.graph.input_ids[0]], x)
