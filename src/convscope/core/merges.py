"""Gradient shares at merges, framework-free: the one implementation every U-Net backend uses.

A skip's *gradient share* at a merge (``concat``/``stack``/``add``) is each input's
``sum |x_i * g_i|`` divided by the sum over the merge's inputs, where ``g_i`` is the part of the
gradient at the merge's *output* that flows to input ``i``:

- ``concat`` along ``dim``: the slice of the output gradient that input ``i`` filled,
- ``stack`` along ``dim``: the ``i``-th entry along ``dim``,
- ``add`` (with broadcasting): the output gradient summed over the axes input ``i`` was broadcast on.

The gradient itself is ONE vector-Jacobian product with cotangent ``W`` from
:func:`skip_cotangent` (the first wave's score: the predicted class's logits, or channel
``target``, summed over ``mask``) which each adapter computes in its framework
(``torch.autograd.grad(out, t, grad_outputs=W)``, ``tape.gradient(out, t, output_gradients=W)``,
``jax.vjp``). Everything here is numpy on host arrays, ``float64`` sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConvscopeError
from .objective import ChannelObjective

__all__ = [
    "MergePart",
    "concat_parts",
    "stack_parts",
    "add_parts",
    "branch_gradient",
    "merge_input_sums",
    "skip_cotangent",
    "nan_sums",
]

MergePart = tuple
"""How input ``i`` of a merge reads the merge output's gradient (host, channels-first axes):
``("slice", dim, start, size)``, ``("index", dim, index)`` or ``("reduce", input_shape)``."""


def concat_parts(sizes: Sequence[int], dim: int) -> tuple[MergePart, ...]:
    """Parts of a concatenation of inputs with ``sizes`` along ``dim`` (a non-negative axis)."""
    parts, start = [], 0
    for size in sizes:
        parts.append(("slice", int(dim), start, int(size)))
        start += int(size)
    return tuple(parts)


def stack_parts(count: int, dim: int) -> tuple[MergePart, ...]:
    """Parts of a stack of ``count`` inputs along the new axis ``dim``."""
    return tuple(("index", int(dim), i) for i in range(count))


def add_parts(shapes: Sequence[Sequence[int]]) -> tuple[MergePart, ...]:
    """Parts of an (optionally broadcasting) sum of inputs with ``shapes`` (batch axis included)."""
    return tuple(("reduce", tuple(int(s) for s in shape)) for shape in shapes)


def branch_gradient(grad: np.ndarray, part: MergePart) -> np.ndarray:
    """The part of the merge output's gradient ``grad`` that flows to one input (see :data:`MergePart`)."""
    kind = part[0]
    if kind == "slice":
        _, dim, start, size = part
        return np.take(grad, np.arange(start, start + size), axis=dim)
    if kind == "index":
        _, dim, index = part
        return np.take(grad, index, axis=dim)
    shape = tuple(part[1])
    out = grad
    while out.ndim > len(shape):
        out = out.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and out.shape[axis] != 1:
            out = out.sum(axis=axis, keepdims=True)
    return out


def nan_sums(count: int) -> tuple[float, ...]:
    """``count`` NaNs: no gradient reached the merge."""
    return tuple(float("nan") for _ in range(count))


def merge_input_sums(
    grad: np.ndarray | None,
    values: Sequence[np.ndarray | None],
    parts: Sequence[MergePart] | None,
) -> tuple[float, ...]:
    """Per merge input ``sum |x_i * g_i|`` (float64), NaN where a value, part or the gradient is missing.

    Args:
        grad: gradient of the score at the merge's output, host array (batch axis first), or None.
        values: the merge inputs ``x_i`` as host arrays in the same layout as ``grad``.
        parts: one :data:`MergePart` per input (None: unknown, all NaN).
    """
    if grad is None or parts is None or len(parts) != len(values):
        return nan_sums(len(values))
    g = np.asarray(grad, dtype=np.float64)
    sums = []
    for value, part in zip(values, parts):
        if value is None:
            sums.append(float("nan"))
            continue
        branch = branch_gradient(g, part)
        x = np.asarray(value, dtype=np.float64)
        if x.shape != branch.shape:
            try:
                branch = np.broadcast_to(branch, x.shape)
            except ValueError:
                sums.append(float("nan"))
                continue
        sums.append(float(np.abs(x * branch).sum()))
    return tuple(sums)


def skip_cotangent(output: np.ndarray, target: int | None, mask: Any, *, what: str = "the objective output") -> np.ndarray:
    """``W`` for the gradient-share score: the predicted class's logits (or channel ``target``) over ``mask``.

    Args:
        output: the objective output of the clean pass, ``(N, K, *spatial)`` or ``(N, K)`` float32,
            channels first.
        target: output channel; default per position the arg-max channel (channel 0 when ``K == 1``).
        mask: optional ``(*spatial)`` or ``(N, *spatial)`` region, nearest-resized to the output.

    Returns:
        float32 array of ``output``'s shape (:meth:`ChannelObjective.cotangent`).
    """
    out = np.asarray(output)
    if out.ndim < 2:
        raise ConvscopeError(f"{what} has shape {tuple(out.shape)}; it must be (N, K, *spatial)")
    channels = int(out.shape[1])
    if target is not None and (not isinstance(target, (int, np.integer)) or not 0 <= int(target) < channels):
        raise ConvscopeError(f"target must be a channel index of the output, 0..{channels - 1}; got {target!r}")
    return ChannelObjective(channel=None if target is None else int(target), mask=mask).cotangent(out)
