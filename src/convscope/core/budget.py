"""The memory budget: estimate what a capture will hold *before* the forward pass, refuse above a budget.

Every command that runs a forward pass (``activations``, ``unet``, ``report``, the viewer's uploads,
and the attribution/scan/volume commands) goes through :func:`check_capture`, so the limit is one
mechanism with one message.

The estimate (bytes) of a capture of ``layers`` on an ``(N, C, *spatial)`` float32 batch is::

    input      N * C * prod(spatial) * 4
    forward    4 * the largest output of ANY layer (what the forward pass itself keeps alive: the
               layer's input and output, a skip tensor, the hook's copy)
    held       the sum of the chosen layers' outputs        (mode "hold": API, report, viewer)
               min(that sum, pending + largest chosen)      (mode "stream": ``activations`` to files)
    pictures   3 * the largest chosen output per sample     (normalisation temporaries + the picture)

Mode ``"gradients"`` is for work with one backward pass (``unet``'s gradient shares, ``cam``'s
gradient methods, the viewer's CAMs): ``held`` as in "hold", plus::

    saved      SAVED_FACTOR * the sum of EVERY layer's output   (what autograd keeps for the backward
               pass: each layer's input, a pool's indices, a ReLU's output)
    grads      the sum of the chosen outputs + the input       (the gradients handed back)
    backward   BACKWARD_FACTOR * the largest output of ANY layer (the gradients in flight)

``masked=B`` (Score-CAM: at most ``B`` masked inputs per forward pass, ``convscope.cam``'s chunk) adds::

    masked     B * (MASKED_FACTOR * one sample's input + MASKED_FORWARD_FACTOR * the largest output of one sample)
               + the sum of every layer's output of one sample  (what a forward pass keeps alive at
               once, a U-Net's skips: counted for one sample)

``workspace=W`` (bytes per sample) adds ``N * W``: the largest scratch buffer one layer's kernel
allocates (PyTorch's CPU fallback for small 3D convolutions unfolds its input:
:func:`unfold_workspace`).

Calibration: ``convscope activations demo:unet`` on a 10000x10000 image peaks at 21.9 GiB RSS
(measured with ``/usr/bin/time -v``); the estimate is 24.3 GiB. The gradient and Score-CAM factors
come from ``benchmarks/budget_calibration.py`` (peak RSS over a baseline, a fresh process per case,
on U-Nets 2D/3D and a ResNet; the table is in ``docs/wave2/budget.md``): every ``unet`` and
``gradcam`` case is estimated at 1.0x to 2.3x its measured extra peak; ``convscope unet --slices axial``
on a 256x256x64 scan (2D U-Net, 3 levels, base 8) peaks at 5.3 GiB RSS, estimated 9.4 GiB (the
forward-only estimate was 3.2 GiB).

Layer output sizes come in two steps, so the common case costs nothing:

1. a free upper bound from layer metadata: every layer's maps are at most the input's spatial size
   (``out_channels`` of a convolution; the widest convolution for layers whose width is unknown);
2. only if that bound is above the budget, a *shape probe*: the model runs on two tiny inputs
   (64 and 128 pixels a side, or the model's fixed size) and every layer's output is extrapolated
   to the real size (linear in the number of input pixels; constant for layers after a global pool).

The default budget is :data:`DEFAULT_FRACTION` of the memory available now (``MemAvailable`` in
``/proc/meminfo``; physical memory elsewhere). ``--max-memory`` takes ``4G``, ``512M``, ``60%``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ConvscopeError
from .layers import LayerInfo

__all__ = [
    "DEFAULT_FRACTION",
    "MemoryBudgetError",
    "MemoryEstimate",
    "available_memory",
    "default_budget",
    "parse_memory",
    "format_bytes",
    "estimate_capture",
    "check_capture",
    "probe_sizes",
    "ChunkPlan",
    "plan_chunks",
    "MODES",
    "unfold_workspace",
]

DEFAULT_FRACTION = 0.5
"""Default budget: this fraction of the memory available when the command starts."""

PROBE_SIDES = (64, 128)
"""Side lengths of the two tiny inputs of the shape probe."""

STREAM_PENDING_BYTES = 256 * 2**20
"""Bytes of activations the ``activations`` writer lets queued rendering jobs hold (its
``OutputDir``'s ``max_pending_bytes``): a CPU forward pass runs on until they are queued, then the
grids are drawn on every core."""


FORWARD_FACTOR = 4
"""The forward pass's own working set, in multiples of the largest layer output."""

PICTURE_FACTOR = 3
"""Rendering temporaries, in multiples of the largest chosen output (one sample)."""

SAVED_FACTOR = 1.25
"""Mode "gradients": what autograd keeps for the backward pass, in multiples of the sum of every
layer's output (calibrated: 0.45 to 1.3 measured, see the module docstring)."""

BACKWARD_FACTOR = 2
"""Mode "gradients": the gradients in flight during the backward pass (a layer's output gradient and
its input gradient), in multiples of the largest layer output."""

MASKED_FACTOR = 3
"""Score-CAM: per masked input, multiples of one sample's input (the resampled mask, the masked copy,
the batch handed to the model)."""

MASKED_FORWARD_FACTOR = 3 * FORWARD_FACTOR
"""Score-CAM: per masked input, the forward pass of a big batch without capture, in multiples of the
largest layer output of one sample (a residual block's identity, oneDNN's buffers; calibrated at the
batch cap, the worst case of its timing-tuned batch size)."""

UNFOLD_LIMIT = 20480
"""PyTorch's CPU convolution leaves oneDNN for its unfold ("slow") path when ``N * C_in * D * H`` of a
3D convolution's input is at most this (``use_mkldnn`` in ATen's Convolution.cpp): the path then
allocates ``prod(kernel) * C_in * D * H * W`` floats per sample."""

MODES = ("hold", "stream", "gradients")
"""The estimate's modes: what the command keeps (see the module docstring)."""


class MemoryBudgetError(ConvscopeError, MemoryError):
    """A capture would need more memory than the budget allows (raised before any work is done)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """What a capture is expected to hold, in bytes.

    Attributes:
        total: the sum of ``parts``.
        parts: ``input``, ``forward``, ``held``, ``pictures``.
        largest_layer: the chosen layer with the largest output (``None`` if none chosen).
        largest_bytes: its output's bytes for the whole batch.
        batch_shape: the ``(N, C, *spatial)`` the estimate is for.
        method: ``"bound"`` (metadata upper bound), ``"probe"`` (extrapolated shapes) or ``"input"``
            (no layer information: the input only).
    """

    total: int
    parts: Mapping[str, int]
    largest_layer: str | None
    largest_bytes: int
    batch_shape: tuple[int, ...]
    method: str
    layers: int = 0
    per_layer: Mapping[str, int] = field(default_factory=dict)


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (Linux ``MemAvailable``; else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def default_budget() -> int:
    """:data:`DEFAULT_FRACTION` of :func:`available_memory`."""
    return int(available_memory() * DEFAULT_FRACTION)


_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


def parse_memory(text: str | int | float | None) -> int:
    """``"4G"``, ``"512M"``, ``"1.5GB"``, ``"60%"`` (of available memory), a byte count, or None (default)."""
    if text is None:
        return default_budget()
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text <= 0:
            raise ConvscopeError(f"--max-memory must be positive, got {text}")
        return int(text)
    raw = str(text).strip().upper().replace(" ", "")
    try:
        if raw.endswith("%"):
            share = float(raw[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return int(available_memory() * share / 100)
        number = raw.rstrip("KMGTIB")
        unit = raw[len(number):]
        value = float(number) * _UNITS[unit]
        if value <= 0:
            raise ValueError
        return int(value)
    except (ValueError, KeyError):
        raise ConvscopeError(f"--max-memory must look like 4G, 512M or 60% (of available memory), not {text!r}") from None


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; one decimal, binary units."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def estimate_capture(
    batch_shape: Sequence[int],
    per_sample: Mapping[str, int],
    chosen: Sequence[str],
    *,
    mode: str = "hold",
    method: str = "bound",
    itemsize: int = 4,
    masked: int = 0,
    workspace: int = 0,
) -> MemoryEstimate:
    """The estimate for ``chosen`` layers given every layer's per-sample output element count.

    Args:
        batch_shape: ``(N, C, *spatial)`` of the input batch.
        per_sample: layer name -> elements of its output for ONE sample, at this input size
            (every layer the forward pass runs, chosen or not).
        chosen: the layers the capture keeps.
        mode: ``"hold"`` (all chosen outputs kept at once), ``"stream"`` (handed on and freed) or
            ``"gradients"`` (held, plus one backward pass: autograd's saved tensors and the gradients).
        masked: Score-CAM's masked inputs per forward pass (0: no Score-CAM).
        workspace: bytes per sample of the largest scratch buffer a layer's kernel allocates.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    n = int(batch_shape[0])
    input_bytes = math.prod(int(v) for v in batch_shape) * itemsize
    sizes = {name: int(per_sample[name]) * n * itemsize for name in chosen if name in per_sample}
    every = [int(v) * n * itemsize for v in per_sample.values()]
    forward = FORWARD_FACTOR * max(every) if every else input_bytes
    largest_layer = max(sizes, key=sizes.__getitem__) if sizes else None
    largest = sizes[largest_layer] if largest_layer is not None else 0
    held = sum(sizes.values())
    if mode == "stream":
        held = min(held, STREAM_PENDING_BYTES + largest)
    pictures = PICTURE_FACTOR * (largest // max(n, 1)) if sizes else 0
    parts = {"input": input_bytes, "forward": forward, "held": held, "pictures": pictures}
    if mode == "gradients":
        parts["saved"] = int(SAVED_FACTOR * sum(every))
        parts["grads"] = sum(sizes.values()) + input_bytes
        parts["backward"] = BACKWARD_FACTOR * (max(every) if every else input_bytes)
    if masked > 0:
        sample_input = input_bytes // max(n, 1)
        sample_largest = max(every) // max(n, 1) if every else sample_input
        parts["masked"] = (int(masked) * (MASKED_FACTOR * sample_input + MASKED_FORWARD_FACTOR * sample_largest)
                           + sum(every) // max(n, 1))
    if workspace > 0:
        parts["workspace"] = n * int(workspace)
    return MemoryEstimate(
        total=sum(parts.values()), parts=parts, largest_layer=largest_layer, largest_bytes=largest,
        batch_shape=tuple(int(v) for v in batch_shape), method=method, layers=len(sizes), per_layer=sizes,
    )


ProbeFn = Callable[[tuple[int, ...]], Mapping[str, tuple[int, ...]]]
"""``probe((N, C, *spatial)) -> {layer: per-sample output shape}``: one forward pass at that (small) shape."""


def probe_sizes(
    probe: ProbeFn, batch_shape: Sequence[int], fixed: Sequence[int] | None = None
) -> dict[str, int] | None:
    """Per-sample output elements of every layer at ``batch_shape``'s spatial size, from two tiny passes.

    A layer whose output grows between the two probe sizes is scaled linearly with the number of
    input pixels; one that does not (after a global pool, a classifier head) is kept as it is.
    Returns None if the model rejects both probes (then only the input is estimated).
    """
    channels = int(batch_shape[1])
    spatial = tuple(int(v) for v in batch_shape[2:])
    if fixed is not None:
        try:
            shapes = probe((1, channels, *fixed))
        except Exception:  # noqa: BLE001 - the model's own error surfaces in the real pass
            return None
        return {name: math.prod(shape) for name, shape in shapes.items()}
    results: list[tuple[int, dict[str, int]]] = []
    for side in PROBE_SIDES:
        probe_spatial = (side,) * len(spatial)
        try:
            shapes = probe((1, channels, *probe_spatial))
        except Exception:  # noqa: BLE001
            continue
        results.append((math.prod(probe_spatial), {name: math.prod(shape) for name, shape in shapes.items()}))
    if not results:
        return None
    target = math.prod(spatial)
    base_pixels, base = results[-1]
    other = results[0][1] if len(results) == 2 else {}
    out: dict[str, int] = {}
    for name, elements in base.items():
        if other and other.get(name) == elements:
            out[name] = elements  # does not grow with the input
        else:
            out[name] = int(math.ceil(elements * target / base_pixels))
    return out


def bound_sizes(
    channels_by_layer: Mapping[str, int | None], batch_shape: Sequence[int]
) -> dict[str, int]:
    """A free upper bound of per-sample output elements: ``channels * prod(spatial)`` for each layer
    (layers of unknown width count as the widest known one)."""
    spatial = math.prod(int(v) for v in batch_shape[2:])
    known = [c for c in channels_by_layer.values() if c]
    widest = max(known) if known else int(batch_shape[1])
    return {name: (c or widest) * spatial for name, c in channels_by_layer.items()}


def check_capture(
    batch_shape: Sequence[int],
    chosen: Sequence[str],
    *,
    channels_by_layer: Mapping[str, int | None],
    probe: ProbeFn | None = None,
    fixed: Sequence[int] | None = None,
    budget: int | None = None,
    mode: str = "hold",
    what: str = "this capture",
    hint: str = "",
    masked: int = 0,
    workspace: int = 0,
) -> MemoryEstimate:
    """Estimate a capture and raise :class:`MemoryBudgetError` when it is above ``budget``.

    Args:
        batch_shape: ``(N, C, *spatial)`` the forward pass will get (known before decoding the image).
        chosen: names of the layers captured.
        channels_by_layer: every layer the forward pass runs -> its output channels (None: unknown);
            gives the free bound.
        probe: a shape pass (see :data:`ProbeFn`), run only when the bound is above the budget.
        fixed: the model's fixed spatial input size, if it has one.
        budget: bytes (default :func:`default_budget`).
        mode: ``"hold"``, ``"stream"`` or ``"gradients"`` (see the module docstring).
        what: how the message names the work (``"the activations of 12 layers"``).
        hint: more advice appended to the refusal (``"; or one slice with --slice axial:N"``).
        masked: Score-CAM's masked inputs per forward pass (0: none).
        workspace: bytes per sample of the largest kernel scratch buffer (:func:`unfold_workspace`).
    Returns:
        The estimate (``method`` says how it was obtained).
    """
    limit = default_budget() if budget is None else int(budget)
    estimate = estimate_capture(batch_shape, bound_sizes(channels_by_layer, batch_shape), chosen, mode=mode,
                                masked=masked, workspace=workspace)
    if estimate.total <= limit:
        return estimate
    sizes = probe_sizes(probe, batch_shape, fixed) if probe is not None else None
    if sizes is not None:
        estimate = estimate_capture(batch_shape, sizes, chosen, mode=mode, method="probe", masked=masked,
                                    workspace=workspace)
    else:
        estimate = estimate_capture(batch_shape, {}, chosen, mode=mode, method="input", masked=masked,
                                    workspace=workspace)
    if estimate.total <= limit:
        return estimate
    raise MemoryBudgetError(_refusal(estimate, limit, what, budget is None) + hint)


def _refusal(estimate: MemoryEstimate, limit: int, what: str, default: bool) -> str:
    shape = estimate.batch_shape
    spatial = "x".join(str(v) for v in shape[2:])
    ratio = math.sqrt(limit / estimate.total) if estimate.total else 1.0
    suggestion = "x".join(str(max(16, int(v * ratio) // 16 * 16)) for v in shape[2:])
    largest = (f"; the largest, {estimate.largest_layer}, alone holds {format_bytes(estimate.largest_bytes)}"
               if estimate.largest_layer else "")
    source = (f"--max-memory, default {int(DEFAULT_FRACTION * 100)}% of the "
              f"{format_bytes(available_memory())} available" if default else "--max-memory")
    batch = f" or a smaller batch (now {shape[0]})" if shape[0] > 1 else ""
    return (f"{what} at {spatial} would need about {format_bytes(estimate.total)} of memory{largest}, over the budget of "
            f"{format_bytes(limit)} ({source}); use --size {suggestion} or smaller, fewer --layer{batch}, "
            f"or raise --max-memory")


@dataclass(frozen=True)
class ChunkPlan:
    """How a batch of independent samples (the slices of a volume fed to a 2D model) goes through the
    model: ``size`` samples per forward pass, so a capture holds one chunk, never the whole stack.

    Attributes:
        total: samples in the batch.
        size: samples per chunk (``total``: one pass, as without chunking).
        estimate: the estimate of one chunk's capture (its ``input`` part counts the whole stack,
            which stays in memory: it is the size of the volume itself).
        reason: why the batch is split (empty for one chunk).
    """

    total: int
    size: int
    estimate: MemoryEstimate
    reason: str = ""

    @property
    def chunks(self) -> int:
        """Number of forward passes."""
        return -(-self.total // self.size) if self.total else 0

    def ranges(self) -> list[tuple[int, int]]:
        """``[(start, stop), ...]`` sample ranges, in order, covering ``0..total``."""
        return [(a, min(a + self.size, self.total)) for a in range(0, self.total, self.size)]

    def describe(self) -> dict[str, object]:
        """For the manifest: samples, chunk size, number of chunks, the estimate per chunk, why."""
        out: dict[str, object] = {"samples": self.total, "chunk_size": self.size, "chunks": self.chunks,
                                  "estimate_bytes": self.estimate.total, "estimate": format_bytes(self.estimate.total),
                                  "method": self.estimate.method}
        if self.reason:
            out["reason"] = self.reason
        return out


def plan_chunks(
    batch_shape: Sequence[int],
    chosen: Sequence[str],
    *,
    channels_by_layer: Mapping[str, int | None],
    probe: ProbeFn | None = None,
    fixed: Sequence[int] | None = None,
    budget: int | None = None,
    mode: str = "hold",
    what: str = "this capture",
    hint: str = "",
    masked: int = 0,
    workspace: int = 0,
) -> ChunkPlan:
    """The largest number of samples per forward pass whose capture fits ``budget``.

    The samples must be independent (eval mode: one sample's outputs do not depend on the others),
    as the slices of a volume fed to a 2D model are. The whole batch in one pass when its (free)
    bound fits; otherwise the per-sample sizes from the shape probe (the bound without one), and the
    largest ``n`` whose estimate plus the rest of the input stack (``(N - n)`` samples of input, held
    for the next chunks) fits. Raises :class:`MemoryBudgetError` (``hint`` appended) when even one
    sample does not fit. ``mode``, ``masked`` and ``workspace`` as for :func:`check_capture` (a chunk of a U-Net or
    CAM run is sized with its backward pass).
    """
    limit = default_budget() if budget is None else int(budget)
    total = int(batch_shape[0])
    rest = tuple(int(v) for v in batch_shape[1:])
    sample_input = math.prod(rest) * 4

    def need(n: int, sizes: Mapping[str, int], method: str) -> MemoryEstimate:
        est = estimate_capture((n, *rest), sizes, chosen, mode=mode, method=method, masked=masked, workspace=workspace)
        parts = dict(est.parts)
        parts["input"] = parts["input"] + (total - n) * sample_input
        return MemoryEstimate(total=sum(parts.values()), parts=parts, largest_layer=est.largest_layer,
                              largest_bytes=est.largest_bytes, batch_shape=est.batch_shape, method=method,
                              layers=est.layers, per_layer=est.per_layer)

    bound = bound_sizes(channels_by_layer, batch_shape)
    whole = need(total, bound, "bound")
    if whole.total <= limit:
        return ChunkPlan(total=total, size=max(total, 1), estimate=whole)
    sizes: Mapping[str, int] | None = probe_sizes(probe, batch_shape, fixed) if probe is not None else None
    method = "probe" if sizes is not None else "bound"
    sizes = sizes if sizes is not None else bound
    one = need(1, sizes, method)
    if one.total > limit:
        raise MemoryBudgetError(_refusal(one, limit, what, budget is None) + hint)
    lo, hi = 1, total  # need(lo) fits; find the largest n that fits (need grows with n)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid, sizes, method).total <= limit:
            lo = mid
        else:
            hi = mid - 1
    estimate = need(lo, sizes, method)
    reason = "" if lo >= total else (
        f"{total} samples at once would need about {format_bytes(need(total, sizes, method).total)}, over the budget of "
        f"{format_bytes(limit)}; {lo} per forward pass fit")
    return ChunkPlan(total=total, size=lo, estimate=estimate, reason=reason)



def unfold_workspace(layers: Sequence[LayerInfo], batch_shape: Sequence[int]) -> int:
    """Bytes per sample of the largest unfold buffer PyTorch's CPU fallback for small 3D convolutions
    allocates (see :data:`UNFOLD_LIMIT`), from layer metadata only (no forward pass).

    ``layers`` are :class:`~convscope.core.layers.LayerInfo` (``kernel_size``, ``in_channels``,
    ``groups``, ``transposed``). A 3D convolution counts when ``C_in * D * H`` of the model's input
    (its first level: the largest ``D * H`` a layer sees) is at most :data:`UNFOLD_LIMIT`; its buffer
    is then at most ``prod(kernel) * C_in / groups * prod(spatial)`` floats. Measured: a 3D U-Net
    with 4 and 8 channels at 48^3 peaks at 97 MiB in one convolution whose output is 3.4 MiB.
    """
    spatial = [int(v) for v in batch_shape[2:]]
    if len(spatial) != 3:
        return 0
    plane = spatial[0] * spatial[1]
    largest = 0
    for info in layers:
        kernel, cin = info.kernel_size, info.in_channels
        if kernel is None or len(kernel) != 3 or not cin or info.transposed or math.prod(kernel) == 1:
            continue
        if cin * plane <= UNFOLD_LIMIT:
            largest = max(largest, math.prod(kernel) * (cin // max(int(info.groups or 1), 1))
                          * math.prod(spatial) * 4)
    return largest
