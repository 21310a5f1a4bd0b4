"""The same U-Net in PyTorch, Keras 3 and ONNX gives the same kernels, activations and U-Net anatomy.

The torch model's weights are copied into a Keras twin (channels_last, same layer names with ``_``
for ``.``) and the torch model is exported to ONNX; convscope must see one model three times.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import convscope  # noqa: E402
from convscope import Scope  # noqa: E402
from convscope.core.graph import MERGE_OPS  # noqa: E402

from .nets import CONVS, export_onnx, keras_unet, sample, torch_unet  # noqa: E402

FRAMEWORKS = ("torch", "keras", "onnx")


@pytest.fixture(scope="module")
def scopes(tmp_path_factory) -> dict[str, Scope]:
    folder = tmp_path_factory.mktemp("parity")
    torch_model = torch_unet()
    keras_model = keras_unet(torch_model)
    onnx_scope = convscope.load(export_onnx(torch_model, folder / "tiny_unet.onnx"))
    return {"torch": Scope(torch_model), "keras": Scope(keras_model), "onnx": onnx_scope}


def name_in(framework: str, scope: Scope, torch_name: str) -> str:
    """The name of torch layer ``torch_name`` in the other frameworks."""
    if framework == "torch":
        return torch_name
    if framework == "keras":
        return torch_name.replace(".", "_")
    prefix = "/" + torch_name.replace(".", "/") + "/"  # the TorchScript exporter names nodes /enc1/conv1/Conv
    matches = [name for name in scope.select(kind="conv") if name.startswith(prefix)]
    assert len(matches) == 1, f"{torch_name}: {matches}"
    return matches[0]


def canonical(flow, name: str) -> str:
    """A framework-neutral node name: merges by kind, ONNX paths and torch dots as underscores."""
    node = flow.graph.by_name(name)
    if node.op in MERGE_OPS:
        return f"<{node.op}>"
    if name.startswith("/"):
        parts = name.strip("/").split("/")
        name = "_".join(parts[:-1]) or parts[0]
    return name.replace(".", "_")


def anatomy(flow) -> dict:
    """The U-Net structure with canonical names (input name and metrics left out)."""
    data = flow.to_json()
    names = lambda items: [canonical(flow, n) for n in items]  # noqa: E731
    return {
        "levels": [(lvl["level"], tuple(lvl["shape"]), names(lvl["encoder"]), names(lvl["decoder"])) for lvl in data["levels"]],
        "bottleneck": names(data["bottleneck"]),
        "bottleneck_shape": tuple(data["bottleneck_shape"]),
        "skips": [
            (s["level"], s["merge"], canonical(flow, s["from"]), canonical(flow, s["skip_input"]),
             canonical(flow, s["decoder_input"]))
            for s in data["skips"]
        ],
        "output": canonical(flow, data["output"]),
        "side_outputs": names(data["side_outputs"]),
    }


def test_every_framework_lists_the_same_convolutions(scopes):
    for framework, scope in scopes.items():
        assert len(scope.select()) == len(CONVS), framework
        for torch_name in CONVS:
            assert name_in(framework, scope, torch_name) in scope.select(), (framework, torch_name)


@pytest.mark.parametrize("torch_name", CONVS)
def test_kernels_are_identical_after_layout_conversion(scopes, torch_name):
    banks = {fw: scopes[fw].kernels(name_in(fw, scopes[fw], torch_name)) for fw in FRAMEWORKS}
    reference = banks["torch"]
    for framework in ("keras", "onnx"):
        bank = banks[framework]
        assert bank.shape == reference.shape and bank.groups == reference.groups, framework
        assert bank.transposed == reference.transposed, framework
        np.testing.assert_array_equal(bank.weights, reference.weights, err_msg=f"{framework} {torch_name}")
        np.testing.assert_array_equal(bank.bias, reference.bias, err_msg=f"{framework} {torch_name} bias")


def test_activations_of_corresponding_layers_agree(scopes):
    batch = sample(2)
    acts = {fw: scopes[fw].activations(batch, [name_in(fw, scopes[fw], n) for n in CONVS]) for fw in FRAMEWORKS}
    for torch_name in CONVS:
        reference = acts["torch"][torch_name].data
        assert reference.shape[0] == 2
        for framework in ("keras", "onnx"):
            got = acts[framework][name_in(framework, scopes[framework], torch_name)].data
            assert got.shape == reference.shape, (framework, torch_name)
            np.testing.assert_allclose(got, reference, atol=1e-4, err_msg=f"{framework} {torch_name}")
    for framework in ("keras", "onnx"):
        np.testing.assert_allclose(acts[framework].output, acts["torch"].output, atol=1e-4)


def test_unet_structure_is_the_same_in_all_three(scopes):
    flows = {fw: scopes[fw].unet(sample(1)) for fw in FRAMEWORKS}
    reference = anatomy(flows["torch"])
    assert len(reference["levels"]) == 2 and len(reference["skips"]) == 2
    for framework in ("keras", "onnx"):
        assert anatomy(flows[framework]) == reference, framework


def test_skip_metrics_agree(scopes):
    """Energy shares agree everywhere; gradient shares agree where the backend computes them."""
    flows = {fw: scopes[fw].unet(sample(1)) for fw in FRAMEWORKS}
    reference = flows["torch"].metrics
    for framework in ("keras", "onnx"):
        for mine, ref in zip(flows[framework].metrics, reference):
            assert mine.energy_share == pytest.approx(ref.energy_share, abs=1e-4), framework
    keras_metrics = flows["keras"].metrics
    assert all(m.gradient_share is not None for m in keras_metrics)  # torch backend: torch.autograd
    for mine, ref in zip(keras_metrics, reference):
        assert mine.gradient_share == pytest.approx(ref.gradient_share, abs=1e-4)


def test_keras_file_round_trip_keeps_activations(scopes, tmp_path):
    path = tmp_path / "tiny_unet.keras"
    scopes["keras"].model.save(path)
    loaded = convscope.load(path)
    assert loaded.input_shape == (1, 3, 16, 16)
    batch = sample(1)
    np.testing.assert_array_equal(
        loaded.activations(batch, ["dec1_conv2"])["dec1_conv2"].data,
        scopes["keras"].activations(batch, ["dec1_conv2"])["dec1_conv2"].data,
    )
