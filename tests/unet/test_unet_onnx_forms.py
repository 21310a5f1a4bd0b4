"""The same U-Nets exported to ONNX two ways (TorchScript exporter, ``dynamo=True``) report the same
skips as their torch form: levels, kinds, and the very same source tensors (values compared)."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

from convscope.core.graph import CaptureRequest
from convscope.core.unet import find_unet

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from convscope.adapters.onnx_adapter import OnnxAdapter  # noqa: E402
from convscope.adapters.torch_graph import trace_torch  # noqa: E402

from . import unet_zoo as Z  # noqa: E402

NETS = {
    "resunit-2d": (lambda: Z.ResUnitUNet(2, (4, 8, 16)), (1, 1, 16, 16)),
    "vit-2d": (lambda: Z.ViTUNet(2, 3), (1, 1, 32, 32)),
    "swin-direct-2d": (lambda: Z.SwinUNet(2, 1, direct_skip=True), (1, 1, 16, 16)),
    "padded-2d": (lambda: Z.PaddedUNet(2), (1, 1, 12, 12)),
    "resunit-3d": (lambda: Z.ResUnitUNet(3, (2, 4, 8)), (1, 1, 8, 8, 8)),
    "nested-cat-unetpp": (lambda: Z.NestedCatUNetPlusPlus(), (1, 1, 16, 16)),
    "deeplabv3plus-2d": (lambda: Z.DeepLabV3Plus(2), (1, 1, 32, 32)),
}
EXPORTERS = ["torchscript", "dynamo"]


def _export(model: torch.nn.Module, x: np.ndarray, path, exporter: str) -> None:
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=exporter == "dynamo", input_names=["x"])


@pytest.fixture(scope="module", params=list(NETS))
def torch_form(request):
    factory, shape = NETS[request.param]
    torch.manual_seed(0)
    model = factory().eval()
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    capture = trace_torch(model, x, keep=lambda g: [k.source for k in find_unet(g).skips])
    return request.param, model, x, find_unet(capture.graph), capture.values


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_onnx_forms_report_the_torch_skips(torch_form, exporter, tmp_path) -> None:
    name, model, x, structure, values = torch_form
    _export(model, x, tmp_path / f"{name}.onnx", exporter)
    adapter = OnnxAdapter(tmp_path / f"{name}.onnx")
    capture = adapter.capture_graph(x, lambda g: CaptureRequest(values=frozenset(k.source for k in find_unet(g).skips)))
    onnx_structure = find_unet(capture.graph)
    assert onnx_structure.depth == structure.depth
    assert [(k.level, k.merge_kind) for k in onnx_structure.skips] == [(k.level, k.merge_kind) for k in structure.skips]
    assert len({k.merge for k in onnx_structure.skips}) == len({k.merge for k in structure.skips})
    for mine, ref in zip(onnx_structure.skips, structure.skips):
        np.testing.assert_allclose(capture.values[mine.source], values[ref.source], rtol=1e-4, atol=1e-5)
