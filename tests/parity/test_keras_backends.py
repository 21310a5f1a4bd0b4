"""The same .keras file gives the same numbers on the torch, TensorFlow and JAX backends.

Each backend runs in its own process (a process has one Keras backend); runs once per suite, in
the torch-backend pass (the per-backend passes of the Makefile skip it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [b for b in ("torch", "tensorflow", "jax") if importlib.util.find_spec(b) is not None]

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch" or len(BACKENDS) < 2,
    reason="cross-backend check runs once, in the torch-backend pass, with a second backend installed",
)


def unet() -> keras.Model:
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1), name="scan")

    def block(x, channels, name):
        return L.ReLU(name=f"{name}_act")(L.Conv2D(channels, 3, padding="same", name=f"{name}_conv")(x))

    e1 = block(inputs, 4, "enc1")
    e2 = block(L.MaxPooling2D(name="pool1")(e1), 8, "enc2")
    b = block(L.MaxPooling2D(name="pool2")(e2), 8, "bott")
    d2 = block(L.Concatenate(name="cat2")([L.UpSampling2D(name="up2")(b), e2]), 8, "dec2")
    u1 = L.Conv2DTranspose(4, 2, strides=2, name="up1")(d2)
    d1 = block(L.Add(name="add1")([u1, e1]), 4, "dec1")
    return keras.Model(inputs, L.Conv2D(3, 1, name="head")(d1), name="unet")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[dict, dict[str, np.ndarray]]]:
    folder = tmp_path_factory.mktemp("backends")
    path = folder / "unet.keras"
    unet().save(path)
    out: dict[str, tuple[dict, dict[str, np.ndarray]]] = {}
    for backend in BACKENDS:
        target = folder / f"{backend}.npz"
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run([sys.executable, "-m", "tests.parity.keras_backend_probe", str(path), str(target)],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        with np.load(target) as data:
            meta = json.loads(str(data["meta"]))
            out[backend] = (meta, {k: data[k] for k in data.files if k != "meta"})
    return out


def test_each_process_ran_its_backend(results):
    assert [results[b][0]["backend"] for b in BACKENDS] == BACKENDS


def test_layers_kernels_activations_and_gradients_agree_across_backends(results):
    ref_meta, ref = results["torch"]
    assert any(k.startswith("act/") for k in ref) and any(k.startswith("grad/") for k in ref)
    for backend in BACKENDS[1:]:
        meta, arrays = results[backend]
        assert meta["layers"] == ref_meta["layers"]
        assert arrays.keys() == ref.keys()
        for key, value in ref.items():
            atol = 1e-4 * max(1.0, float(np.abs(value).max()))
            np.testing.assert_allclose(arrays[key], value, atol=atol, err_msg=f"{backend}: {key}")


def test_unet_view_and_gradient_shares_agree_across_backends(results):
    ref_meta, _ = results["torch"]
    assert ref_meta["skips"] == [["enc1_act", "add1"], ["enc2_act", "cat2"]]
    assert all(g is not None and 0 < g < 1 for g in ref_meta["gradient"])
    for backend in BACKENDS[1:]:
        meta, _ = results[backend]
        assert meta["skips"] == ref_meta["skips"]
        np.testing.assert_allclose(meta["energy"], ref_meta["energy"], atol=1e-5)
        np.testing.assert_allclose(meta["gradient"], ref_meta["gradient"], atol=1e-4)
