"""KerasAdapter.weights_digest over a zoo (functional, nested, subclassed, BatchNorm statistics):
stable, equal for a clone with the same weights, changed by one weight or one moving mean, and the
model's weights untouched (runs on each Keras backend)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope.adapters.base import SupportsWeightsDigest  # noqa: E402
from convscope.adapters.keras_adapter import KerasAdapter  # noqa: E402

from .models import Subclassed, nested_net, small_net, to_numpy  # noqa: E402


def _subclassed():
    model = Subclassed()
    model(np.zeros((1, 8, 8, 3), np.float32))  # builds its weights
    return model


ZOO = {"small": small_net, "small_cf": lambda: small_net("channels_first"), "nested": nested_net,
       "subclassed": _subclassed}


def _nudge(variable) -> None:
    value = to_numpy(variable).copy()
    value.reshape(-1)[0] = np.nextafter(value.reshape(-1)[0], np.float32(np.inf))
    variable.assign(value)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_keras_digest_is_stable_equal_for_a_clone_and_changes_with_one_weight(name):
    model = ZOO[name]()
    before = [to_numpy(v).copy() for v in model.weights]
    adapter = KerasAdapter(model)
    digest = adapter.weights_digest()
    assert isinstance(adapter, SupportsWeightsDigest) and digest.startswith("blake2b-128:")
    assert digest == adapter.weights_digest()
    assert all(np.array_equal(a, to_numpy(v)) for a, v in zip(before, model.weights))
    rebuilt = ZOO[name]()
    rebuilt.set_weights(model.get_weights())
    assert KerasAdapter(rebuilt).weights_digest() == digest
    _nudge(rebuilt.trainable_weights[-1])
    assert KerasAdapter(rebuilt).weights_digest() != digest


def test_keras_digest_covers_batchnorm_statistics():
    model = small_net()
    digest = KerasAdapter(model).weights_digest()
    bn = model.get_layer("bn")
    _nudge(bn.moving_mean)  # not trainable, but it changes what the model computes
    assert KerasAdapter(model).weights_digest() != digest
