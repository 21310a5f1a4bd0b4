"""`convscope unet` works on model files (.onnx, .pt2, .keras) as on torch models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.adapters.onnx.nets import TinyUNet, export_onnx, export_pt2, make
from tests.cli.test_cli import run


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.npy"
    np.save(path, np.random.default_rng(0).random((16, 16)).astype(np.float32))
    return path


def skips_of(out_dir):
    data = json.loads((out_dir / "unet.json").read_text())
    return [(skip["level"], skip["merge"]) for skip in data["skips"]], data


def test_unet_on_onnx_file(capsys, tmp_path, image):
    model = export_onnx(make(TinyUNet), tmp_path / "unet.onnx", (1, 1, 16, 16))
    code, _, err = run(["unet", str(model), str(image), "-o", str(tmp_path / "o")], capsys)
    assert code == 0, err
    skips, data = skips_of(tmp_path / "o")
    assert skips == [(0, "concat"), (1, "concat")]
    assert all(skip["gradient_share"] is None for skip in data["skips"])  # onnxruntime has no autograd


def test_unet_on_pt2_file_needs_trust_then_works(capsys, tmp_path, image):
    model = export_pt2(make(TinyUNet), tmp_path / "unet.pt2", (1, 1, 16, 16))
    code, _, err = run(["unet", str(model), str(image), "-o", str(tmp_path / "o")], capsys)
    assert code == 2 and "--trust" in err
    code, _, err = run(["unet", str(model), str(image), "-o", str(tmp_path / "o"), "--trust"], capsys)
    assert code == 0, err
    skips, data = skips_of(tmp_path / "o")
    assert skips == [(0, "concat"), (1, "concat")]
    assert all(0.0 <= skip["gradient_share"] <= 1.0 for skip in data["skips"])


def test_unet_on_keras_file(capsys, tmp_path, image):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((16, 16, 1))
    e1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="enc1")(inputs)
    e2 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="enc2")(keras.layers.MaxPooling2D(name="pool1")(e1))
    mid = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="mid")(keras.layers.MaxPooling2D(name="pool2")(e2))
    d2 = keras.layers.Conv2D(8, 3, padding="same", name="dec2")(
        keras.layers.Concatenate(name="cat2")([keras.layers.Conv2DTranspose(8, 2, strides=2, name="up2")(mid), e2]))
    d1 = keras.layers.Conv2D(4, 3, padding="same", name="dec1")(
        keras.layers.Concatenate(name="cat1")([keras.layers.Conv2DTranspose(4, 2, strides=2, name="up1")(d2), e1]))
    outputs = keras.layers.Conv2D(2, 1, name="head")(d1)
    path = tmp_path / "unet.keras"
    keras.Model(inputs, outputs).save(path)
    code, _, err = run(["unet", str(path), str(image), "-o", str(tmp_path / "o")], capsys)
    assert code == 0, err
    skips, data = skips_of(tmp_path / "o")
    assert skips == [(0, "concat"), (1, "concat")]
    assert [skip["to"] for skip in data["skips"]] == ["cat1", "cat2"]
