"""One vector-Jacobian product through a Keras 3 forward pass, on the torch, TensorFlow and JAX backends.

:func:`vjp_through` runs a forward function ONCE with the backend's autodiff recording and then
takes ONE VJP of its output with a cotangent ``W`` computed in numpy from that output's values:

- **torch**: ``torch.autograd.grad(out, [taps..., x], grad_outputs=W)``;
- **tensorflow**: ``tf.GradientTape`` watching only the input, then
  ``tape.gradient(out, [taps..., x], output_gradients=W)``;
- **jax**: ``jax.vjp`` of a pure function of ``(x, eps)`` in which each tap adds a zero ``eps[k]``
  (so ``d out / d eps[k]`` is the gradient at tap ``k``); the model's variables are closed over as
  constants, nothing is written to them. The taps' shapes come from one abstract evaluation
  (``jax.eval_shape``, no arithmetic), so the model still runs once.

Gradients are taken with respect to activations (and the input) only: no variable is watched,
no ``.grad`` is written and no ``trainable`` flag is touched. Keras is imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["VJPResult", "vjp_through", "backend_name"]

Tap = Callable[[str, Any], Any]
"""``tap(key, tensor) -> tensor``: mark ``tensor`` as a place to take the gradient at; the forward
function must continue with the tensor ``tap`` returns."""

ForwardFn = Callable[[Any, Tap], tuple[Any, Any]]
"""``fn(x, tap) -> (out, aux)``: the forward pass from input ``x``; ``out`` is the tensor the
gradient starts from, ``aux`` any nest of tensors to bring back (as backend tensors)."""


@dataclass
class VJPResult:
    """What :func:`vjp_through` returns (numpy arrays in the model's own layout).

    Attributes:
        output: ``out``'s values.
        cotangent: the ``W`` used (same shape as ``output``).
        taps: tap key -> the tapped tensor's values.
        gradients: tap key -> ``d sum(W * out) / d tap``.
        input_gradient: ``d sum(W * out) / d x`` when asked for, else None.
        aux: ``fn``'s ``aux`` with backend tensors (concrete).
    """

    output: np.ndarray
    cotangent: np.ndarray
    taps: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray]
    input_gradient: np.ndarray | None
    aux: Any


def backend_name() -> str:
    import keras

    return str(keras.backend.backend())


def _np(value: Any) -> np.ndarray:
    import warnings

    import keras

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword")
        return np.asarray(keras.ops.convert_to_numpy(value))


def vjp_through(
    fn: ForwardFn,
    x: Any,
    cotangent_of: Callable[[np.ndarray], np.ndarray],
    *,
    with_input: bool = False,
) -> VJPResult:
    """ONE forward (``fn``) and ONE VJP with ``W = cotangent_of(out values)``; see the module docstring.

    Args:
        fn: the forward pass (see :data:`ForwardFn`); it may be traced (JAX) and then runs on tracers.
        x: the input as a backend tensor in the model's layout.
        cotangent_of: numpy ``out -> W`` (same shape and layout as ``out``).
        with_input: also return the gradient with respect to ``x``.
    """
    backend = backend_name()
    if backend == "torch":
        return _torch(fn, x, cotangent_of, with_input)
    if backend == "tensorflow":
        return _tensorflow(fn, x, cotangent_of, with_input)
    if backend == "jax":
        return _jax(fn, x, cotangent_of, with_input)
    from ...errors import UnsupportedModelError

    raise UnsupportedModelError(
        f"gradients need the Keras backend to be torch, tensorflow or jax; this one is {backend!r} "
        f"(set KERAS_BACKEND=torch, tensorflow or jax)"
    )


def _finish(out: Any, weights: np.ndarray, taps: dict[str, Any], grads: list[Any], with_input: bool,
            aux: Any, x_shape: tuple[int, ...]) -> VJPResult:
    keys = list(taps)
    tap_values = {k: _np(taps[k]) for k in keys}
    gradients = {
        k: (_np(g).astype(np.float32) if g is not None else np.zeros(tap_values[k].shape, np.float32))
        for k, g in zip(keys, grads[: len(keys)])
    }
    input_gradient = None
    if with_input:
        g = grads[-1]
        input_gradient = _np(g).astype(np.float32) if g is not None else np.zeros(x_shape, np.float32)
    return VJPResult(_np(out), weights, tap_values, gradients, input_gradient, aux)


def _torch(fn: ForwardFn, x: Any, cotangent_of: Callable[[np.ndarray], np.ndarray], with_input: bool) -> VJPResult:
    import torch

    x = x.detach().requires_grad_(True)  # our own input tensor; nothing of the model's
    taps: dict[str, Any] = {}

    def tap(key: str, tensor: Any) -> Any:
        taps.setdefault(key, tensor)
        return tensor

    with torch.enable_grad():
        out, aux = fn(x, tap)
    weights = np.ascontiguousarray(cotangent_of(_np(out)), dtype=np.float32)
    sources = list(taps.values()) + ([x] if with_input else [])
    usable = [i for i, t in enumerate(sources) if isinstance(t, torch.Tensor) and t.requires_grad]
    grads: list[Any] = [None] * len(sources)
    if out.requires_grad and usable:
        w = torch.from_numpy(weights).to(device=out.device, dtype=out.dtype)
        got = torch.autograd.grad(out, [sources[i] for i in usable], grad_outputs=w, allow_unused=True)
        for i, g in zip(usable, got):
            grads[i] = g
    return _finish(out, weights, taps, grads, with_input, aux, tuple(x.shape))


def _tensorflow(fn: ForwardFn, x: Any, cotangent_of: Callable[[np.ndarray], np.ndarray], with_input: bool) -> VJPResult:
    import tensorflow as tf

    taps: dict[str, Any] = {}

    def tap(key: str, tensor: Any) -> Any:
        taps.setdefault(key, tensor)
        return tensor

    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        out, aux = fn(x, tap)
    weights = np.ascontiguousarray(cotangent_of(_np(out)), dtype=np.float32)
    sources = list(taps.values()) + ([x] if with_input else [])
    grads: list[Any] = [None] * len(sources)
    if sources:
        grads = list(
            tape.gradient(
                out, sources, output_gradients=tf.constant(weights, dtype=out.dtype),
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
        )
    return _finish(out, weights, taps, grads, with_input, aux, tuple(x.shape))


def _jax(fn: ForwardFn, x: Any, cotangent_of: Callable[[np.ndarray], np.ndarray], with_input: bool) -> VJPResult:
    import jax
    import jax.numpy as jnp

    def shapes(x_: Any) -> Any:
        taps: dict[str, Any] = {}

        def tap(key: str, tensor: Any) -> Any:
            taps.setdefault(key, tensor)
            return tensor

        out, _aux = fn(x_, tap)
        return out, taps

    _out_spec, tap_specs = jax.eval_shape(shapes, x)  # abstract: no arithmetic
    eps = {k: jnp.zeros(spec.shape, spec.dtype) for k, spec in tap_specs.items()}

    def pure(x_: Any, eps_: dict[str, Any]) -> Any:
        taps: dict[str, Any] = {}

        def tap(key: str, tensor: Any) -> Any:
            if key in taps or key not in eps_:
                return tensor
            taps[key] = tensor
            return tensor + eps_[key]

        out, aux = fn(x_, tap)
        return out, (aux, taps)

    out, pullback, (aux, taps) = jax.vjp(pure, x, eps, has_aux=True)
    weights = np.ascontiguousarray(cotangent_of(_np(out)), dtype=np.float32)
    gx, geps = pullback(jnp.asarray(weights, dtype=out.dtype))
    keys = list(taps)
    grads = [geps.get(k) for k in keys] + ([gx] if with_input else [])
    return _finish(out, weights, {k: taps[k] for k in keys}, grads, with_input, aux, tuple(x.shape))
