"""A new framework plugs in through the ``convscope.adapters`` entry point group and is found by
``convscope.load`` (files) and ``convscope.Scope`` (model objects).

The plugin here is a real installed distribution: a package folder plus a ``*.dist-info`` with an
``entry_points.txt`` on ``sys.path``, exactly what ``pip install`` leaves for a package declaring
``[project.entry-points."convscope.adapters"]``; ``importlib.metadata`` finds it as it finds any.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import convscope
from convscope.adapters import adapter_for
from convscope.adapters.registry import ENTRY_POINT_GROUP, AdapterPlugin, plugins, register_adapter

PLUGIN = '''
"""convscope adapter for NumpyNet: a chain of 1x1 convolutions + ReLU, in numpy."""
from pathlib import Path

import numpy as np

from convscope.adapters.base import InputSpec, LoadedModel, ModelAdapter
from convscope.adapters._capture import Collector
from convscope.adapters.registry import AdapterPlugin
from convscope.core.kernels import KernelBank
from convscope.core.layers import LayerInfo


class NumpyNet:
    def __init__(self, weights):
        self.weights = [np.asarray(w, dtype=np.float32) for w in weights]  # (out, in) each


class NumpyAdapter(ModelAdapter):
    framework = "numpy"
    streams_activations = True

    def __init__(self, net, device=None):
        self.net = net

    @property
    def model(self):
        return self.net

    def layers(self):
        return [LayerInfo(name=f"conv{i}", kind="conv", type_name="Conv1x1", in_channels=w.shape[1],
                          out_channels=w.shape[0], kernel_size=(1, 1), groups=1) for i, w in enumerate(self.net.weights)]

    def input_spec(self):
        return InputSpec(channels=self.net.weights[0].shape[1], spatial_dims=2)

    def kernel(self, layer):
        w = self.net.weights[int(layer[4:])]
        return KernelBank(layer=layer, weights=w[:, :, None, None].copy(), groups=1, type_name="Conv1x1")

    def capture(self, batch, layers, *, on_activation=None, train_mode=False):
        collector = Collector(on_activation)
        x = np.asarray(batch, dtype=np.float32)
        for i, w in enumerate(self.net.weights):
            x = np.maximum(np.einsum("oc,nchw->nohw", w, x), 0).astype(np.float32)
            if f"conv{i}" in layers:
                collector.add(f"conv{i}", x.copy())
        collector.result.output = x
        return collector.result


def load_npnet(path: Path, trust: bool) -> LoadedModel:
    with np.load(path) as data:
        net = NumpyNet([data[k] for k in sorted(data.files)])
    return LoadedModel(model=net, name=Path(path).name, input_shape=(1, net.weights[0].shape[1], 4, 4),
                       info={"format": "npnet"})


plugin = AdapterPlugin(name="numpy", handles=lambda m: isinstance(m, NumpyNet), adapter=NumpyAdapter,
                       suffixes=(".npnet",), load_file=load_npnet)
'''


@pytest.fixture
def installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "convscope_numpy_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "convscope_numpy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: convscope-numpy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nnumpy = convscope_numpy_plugin:plugin\n")
    monkeypatch.syspath_prepend(str(site))
    plugins(refresh=True)
    yield sys.modules.get("convscope_numpy_plugin") or __import__("convscope_numpy_plugin")
    monkeypatch.undo()
    sys.modules.pop("convscope_numpy_plugin", None)
    plugins(refresh=True)


def weights() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((4, 2)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)]


def reference(x: np.ndarray, ws: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for w in ws:
        x = np.maximum(np.einsum("oc,nchw->nohw", w, x), 0)
        out.append(x)
    return out


def test_a_file_of_the_plugins_format_loads_through_convscope_load(installed, tmp_path: Path):
    ws = weights()
    path = tmp_path / "model.npnet"
    with open(path, "wb") as handle:
        np.savez(handle, a=ws[0], b=ws[1])
    scope = convscope.load(path)
    assert scope.adapter.framework == "numpy" and scope.input_shape == (1, 2, 4, 4)
    assert [info.name for info in scope.layers()] == ["conv0", "conv1"]
    x = np.random.default_rng(1).standard_normal((2, 4, 4)).astype(np.float32)
    acts = scope.activations(x, ["conv0", "conv1"])
    for name, ref in zip(("conv0", "conv1"), reference(x[None], ws)):
        np.testing.assert_allclose(acts[name].data, ref, atol=1e-6)
    np.testing.assert_array_equal(scope.kernels(["conv1"])["conv1"].weights[:, :, 0, 0], ws[1])


def test_a_model_object_of_the_plugin_is_found_by_scope(installed):
    net = installed.NumpyNet(weights())
    scope = convscope.Scope(net)
    assert type(scope.adapter).__name__ == "NumpyAdapter"
    assert adapter_for(net).framework == "numpy"


def test_without_the_plugin_the_model_is_refused_with_a_pointer_to_the_entry_point():
    class Foreign:
        pass

    with pytest.raises(TypeError, match="convscope.adapters"):
        adapter_for(Foreign())


def test_register_adapter_in_process():
    class Thing:
        pass

    seen = []
    plugin = AdapterPlugin(name="thing-test", handles=lambda m: isinstance(m, Thing),
                           adapter=lambda m, device=None: seen.append(m) or "adapter")
    register_adapter(plugin)
    try:
        thing = Thing()
        assert adapter_for(thing) == "adapter" and seen == [thing]
    finally:
        from convscope.adapters import registry

        registry._REGISTERED.remove(plugin)
