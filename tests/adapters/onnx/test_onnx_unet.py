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


def test_onnx_graph_without_static_shapes_fetches_all_in_one_run(pair, monkeypatch):
    from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession

    from convscope.core.graph import CaptureRequest

    _, adapter = pair
    monkeypatch.setattr(adapter, "static_shapes", lambda _shape: None)
    calls = []
    original = InferenceSession.run
    monkeypatch.setattr(InferenceSession, "run", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    capture = adapter.capture_graph(batch((1, 1, 16, 16)), lambda graph: CaptureRequest(values=frozenset(graph.output_ids)))
    assert len(calls) == 1
    assert all(node.shape is not None for node in capture.graph)
    assert set(capture.values) == set(capture.graph.output_ids)
