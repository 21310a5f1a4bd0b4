"""Keras runtime helpers shared by the Keras adapter, its U-Net backend and its gradients: importing
Keras (choosing an installed backend), host copies, and calling layers as ``Functional`` does.

Keras is imported lazily, inside functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelLoadError

__all__ = ["is_keras_model", "call_with_training", "run_in_call_context"]


def _keras() -> Any:
    """``import keras`` (choosing an installed backend if the configured one is missing), or a clear error."""
    _choose_backend()
    try:
        import keras
    except ImportError as exc:  # keras missing, or its configured backend missing
        raise ModelLoadError(
            f"Keras 3 with a backend is needed for Keras models ({exc}); pip install keras torch and set "
            f"KERAS_BACKEND=torch (or jax / tensorflow)"
        ) from None
    return keras


def _choose_backend() -> None:
    """Before Keras is first imported: if no ``KERAS_BACKEND`` is set and the configured backend
    (``~/.keras/keras.json``, by default tensorflow) is not installed, use an installed one
    (torch, then jax), so that ``convscope ... model.keras`` works without extra setup."""
    import importlib.util
    import json
    import os
    import sys

    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return
    configured = "tensorflow"
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        configured = str(json.loads((home / "keras.json").read_text()).get("backend", configured))
    except (OSError, ValueError, AttributeError):
        pass
    if importlib.util.find_spec(configured) is not None:
        return
    for backend in ("torch", "jax"):
        if importlib.util.find_spec(backend) is not None:
            os.environ["KERAS_BACKEND"] = backend
            return


def is_keras_model(obj: Any) -> bool:
    """True if ``obj`` is a ``keras.Model`` (without importing Keras when it is not loaded)."""
    import sys

    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def _to_numpy(value: Any) -> np.ndarray:
    """A backend tensor or Keras variable as a numpy array (its own dtype)."""
    import warnings

    keras = _keras()
    with warnings.catch_warnings():
        # Keras's torch backend calls np.array(tensor) the numpy-1 way; numpy 2 warns about it
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword")
        return np.asarray(keras.ops.convert_to_numpy(value))


def call_with_training(op: Any, args: tuple, kwargs: dict, training: bool) -> Any:
    """Call a Keras operation as ``Functional`` does: ``training`` goes to ops that take it."""
    if "training" in getattr(op, "_call_context_args", ()):
        kwargs = {**kwargs, "training": training}
    return op(*args, **kwargs)


def run_in_call_context(fn: Any, x: Any, training: bool) -> Any:
    """Run ``fn(x, training)`` inside one Keras layer call, so that nested layers see ``training``.

    Keras propagates ``training`` to inner layers through the call context of the outermost layer
    call; a throwaway layer provides that context (and is the one whose losses Keras clears).
    """
    runner = _runner_class()(name="convscope_run", autocast=False, trainable=False)
    runner.fn = fn
    return runner(x, training=training)


_RUNNER: list[Any] = []


def _runner_class() -> Any:
    if not _RUNNER:
        keras = _keras()
        layer_base: Any = keras.layers.Layer  # a class known only at run time (the backend's Keras)

        class _ConvscopeRun(layer_base):
            fn: Any = None

            def call(self, inputs: Any, training: Any = None) -> Any:
                return self.fn(inputs, bool(training))

        _RUNNER.append(_ConvscopeRun)
    return _RUNNER[0]
