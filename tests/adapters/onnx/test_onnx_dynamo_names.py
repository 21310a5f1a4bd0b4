"""Graphs from torch.onnx.export(dynamo=True) get the torch module paths as layer names."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import convscope as cs
from tests.adapters.onnx.nets import TinyUNet, batch, make

pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def dynamo_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dyn") / "unet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(make(TinyUNet), (torch.zeros(1, 1, 16, 16),), str(path), dynamo=True, verbose=False)
    return path


def test_layer_names_are_the_torch_module_paths(dynamo_file):
    onnx_convs = cs.load(dynamo_file).select()
    torch_convs = cs.Scope(make(TinyUNet)).select()
    assert onnx_convs == torch_convs == ["enc1", "enc2", "mid", "up2", "dec2", "up1", "dec1", "head"]


def test_activations_by_module_path_equal_torch(dynamo_file):
    x = batch((1, 1, 16, 16))
    onnx_acts = cs.load(dynamo_file).activations(x, ["enc2", "up1"])
    torch_acts = cs.Scope(make(TinyUNet)).activations(x, ["enc2", "up1"])
    for name in ("enc2", "up1"):
        np.testing.assert_allclose(onnx_acts[name].data, torch_acts[name].data, atol=1e-5)


def test_kernels_by_module_path_equal_torch(dynamo_file):
    np.testing.assert_array_equal(cs.load(dynamo_file).kernels("up2").weights, cs.Scope(make(TinyUNet)).kernels("up2").weights)
