"""Plumbing shared by every adapter: one way to collect-or-stream, name repeated calls, and word errors.

Nothing here imports a framework; adapters hand in host numpy arrays (or, for
:func:`named_outputs`, a predicate telling tensors apart).

- :class:`Collector`: the keep-or-stream sink behind ``capture(on_activation=...)``: records shape
  and source dtype, and either keeps the array or hands it to the callback at once (not kept).
- :func:`call_key` / :class:`CallNamer`: ``name`` for a module's first call, ``name#1``, ``name#2``...
  for later calls (the ``#k`` names of captures, graphs and gradients).
- :func:`check_batch`: the one "batch must be a numeric (N, C, *spatial) array" check.
- :func:`forward_failed`: the one "the model's forward pass failed ..." error.
- :func:`first_line`: the first line of an exception's message, for one-line errors.
- :func:`named_outputs`: ``"output"``, ``"output[i]"``, ``"output['key']"`` names of a model's
  (nested) outputs, as :func:`convscope.core.objective.select_output` expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import ConvscopeError
from .base import ActivationCallback, CaptureResult

__all__ = ["Collector", "CallNamer", "call_key", "check_batch", "forward_failed", "first_line", "named_outputs"]


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``str(exc)`` (or the exception's class name), at most ``limit`` chars."""
    text = str(exc).strip()
    return (text.splitlines()[0].strip() if text else type(exc).__name__)[:limit]


def call_key(name: str, index: int) -> str:
    """``name`` for call 0 of a module, ``name#k`` for its k-th extra call."""
    return name if index == 0 else f"{name}#{index}"


def call_base(key: str) -> str:
    """The module a capture key names: ``"relu#2"`` -> ``"relu"`` (the inverse of :func:`call_key`)."""
    return key.split("#", 1)[0]


class CallNamer:
    """Unique ``#k`` names: ``namer.next("conv")`` gives ``conv``, then ``conv#1``, ``conv#2``...

    Names already taken (by any base) are skipped, so ``a#1`` given out for a second call of ``a``
    never collides with a layer literally named ``a#1``.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.taken: set[str] = set()

    def next(self, base: str) -> str:
        count = self.counts.get(base, 0)
        name = call_key(base, count)
        while name in self.taken:
            count += 1
            name = call_key(base, count)
        self.counts[base] = count + 1
        self.taken.add(name)
        return name

    def index(self, base: str) -> int:
        """How many names were given out for ``base`` so far."""
        return self.counts.get(base, 0)


def check_batch(batch: Any) -> np.ndarray:
    """``batch`` as a numpy array, or ONE ConvscopeError if it is not a numeric ``(N, C, *spatial)`` array."""
    arr = np.asarray(batch)
    if arr.ndim < 3 or not np.issubdtype(arr.dtype, np.number):
        raise ConvscopeError(
            f"batch must be a numeric (N, C, *spatial) array (channels first), got shape {arr.shape} {arr.dtype}"
        )
    return arr


def forward_failed(exc: BaseException, shape: tuple[int, ...], *, hint: str | None = None) -> ConvscopeError:
    """The one-line error for a forward pass that raised inside the framework.

    Args:
        exc: what the framework raised.
        shape: the batch shape convscope fed, channels first.
        hint: what to do (default: check the image size and channels).
    """
    fix = hint or "Check the image size and channels (--size, or a different image)"
    return ConvscopeError(
        f"the model's forward pass failed on an input of shape {tuple(shape)} (channels first): {first_line(exc)}. {fix}"
    )


class Collector:
    """Keep-or-stream sink for one capture.

    Args:
        on_activation: if given, every :meth:`add` hands the array to it at once and keeps nothing;
            otherwise arrays are kept in :attr:`result`.
    """

    def __init__(self, on_activation: ActivationCallback | None = None) -> None:
        self.on_activation = on_activation
        self.result = CaptureResult()

    @property
    def streaming(self) -> bool:
        return self.on_activation is not None

    def add(self, name: str, array: np.ndarray, dtype: str | None = None) -> None:
        """Record ``name``'s activation ``(N, C, *spatial)`` float32 host array (owned by the collector)."""
        self.result.shapes[name] = tuple(int(s) for s in array.shape)
        self.result.dtypes[name] = str(dtype if dtype is not None else array.dtype)
        if self.on_activation is not None:
            self.on_activation(name, array)
        else:
            self.result.activations[name] = array

    def order(self, names: list[str]) -> None:
        """Reorder kept activations to ``names`` (model order), dropping none."""
        acts = self.result.activations
        if acts:
            self.result.activations = {**{k: acts[k] for k in names if k in acts}, **acts}


def named_outputs(value: Any, is_tensor: Callable[[Any], bool], prefix: str = "output") -> dict[str, Any]:
    """Flatten a model output into ``{"output": t}`` / ``{"output[0]": t, ...}`` / ``{"output['seg']": t}``.

    Nested containers extend the name (``output[0][1]``); non-tensor leaves are left out.
    """
    found: dict[str, Any] = {}

    def visit(item: Any, name: str) -> None:
        if is_tensor(item):
            found[name] = item
        elif isinstance(item, dict):
            for key, sub in item.items():
                visit(sub, f"{name}[{key!r}]")
        elif isinstance(item, (list, tuple)):
            for i, sub in enumerate(item):
                visit(sub, f"{name}[{i}]")

    visit(value, prefix)
    return found


def iter_unique(items: list[Any]) -> Iterator[Any]:
    """``items`` in order without repeats (by identity)."""
    seen: set[int] = set()
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            yield item
