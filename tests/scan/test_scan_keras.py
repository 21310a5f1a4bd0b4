"""A Keras model scans: statistics equal the direct activations, crops come from its graph."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import convscope as cs  # noqa: E402

from .test_scan import _write_images  # noqa: E402


def test_keras_scan(tmp_path):
    _write_images(tmp_path / "d", 6, size=12, seed=21)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(keras.layers.ReLU(name="relu")(x))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", name="c2")(x))
    scope = cs.Scope(model)
    result = scope.scan(tmp_path / "d", top_k=2, batch_size=4)
    files = sorted((tmp_path / "d").glob("*.png"))
    batch = np.concatenate([scope.prepare(str(p)).batch for p in files])
    acts = scope.activations(batch, ["c2"])["c2"].data
    stats = result.channel("c2", 1).stats
    assert stats.count == acts[:, 1].size
    assert stats.mean == pytest.approx(float(acts[:, 1].astype(np.float64).mean()), rel=1e-5, abs=1e-7)
    assert stats.max == pytest.approx(float(acts[:, 1].max()))
    top = result.channel("c2", 1).examples[0]
    y, x = top.position
    # the Keras graph gives the receptive field: 3x3 conv, 2x2 pool, 3x3 conv
    assert list(top.crop_box) == [max(0, 2 * y - 3), max(0, 2 * x - 3), min(12, 2 * y + 5), min(12, 2 * x + 5)]
