"""Write kernels and activations to a folder: PNG grids, optional ``.npz`` arrays, ``manifest.json``.

Shared by the Python API (``Scope.save_*``) and the CLI, so both produce the same files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.activations import NOT_EXECUTED, ORDERS, Activation, map_stats, not_executed
from .core.budget import STREAM_PENDING_BYTES
from .io.output import OutputDir, safe_filename

if TYPE_CHECKING:
    from .render.picture import Picture
    from .scope import Scope

__all__ = ["write_kernels", "write_activations"]


SCALES = ("minmax", "symmetric", "percentile")

GRID_MAX_SIDE = 1024
"""Default cap on a written activation grid's side (px): larger grids have their cells downsampled
(means of s x s blocks); ``full_resolution=True`` (CLI ``--full-resolution``) lifts it, and
``arrays=True`` always writes the raw values."""
GRID_MIN_CELL = 16
"""Written activation grids keep cells at their native size (1 px per value), upscaling only cells
smaller than this (px) to a readable size; viewers and figures scale them up without smoothing."""
KERNEL_SUFFIX = ".kernels"
"""Kernel files are ``LAYER.kernels.png`` / ``LAYER.kernels.npz``, so ``kernels`` and ``activations``
(``LAYER.png``, ``LAYER.npz``) can share one output folder without overwriting each other."""


def _check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}; got {value!r}")


def write_kernels(
    scope: Scope,
    out: str | os.PathLike[str],
    layers: str | Sequence[str] | None = None,
    *,
    kind: str | None = None,
    scale: str = "symmetric",
    normalize: str = "filter",
    cmap: str | None = None,
    rgb: bool | None = None,
    labels: bool = False,
    arrays: bool = False,
    formats: str | Sequence[str] = ("png",),
    progress: bool | None = None,
) -> Path:
    """One grid per convolution layer (default: all), plus ``.npz`` weights if ``arrays``.

    ``formats``: ``"png"``, ``"svg"``, ``"pdf"`` or several (``"png,svg"``); each grid is written in
    each (``enc1.conv.kernels.png``, ``enc1.conv.kernels.svg``...), all drawn from the same figure.
    ``progress``: one bar over the layers (see :class:`convscope.progress.Progress`; None: auto).

    Returns the path of ``manifest.json``. Files are named after the layer (``enc1.conv.kernels.png``).
    """
    from .render.scene import parse_formats

    chosen_formats = parse_formats(formats)
    _check_choice("scale", scale, SCALES)
    _check_choice("normalize", normalize, ("filter", "shared"))
    if cmap is not None:
        from .render.colormap import get_colormap

        get_colormap(cmap)
    names = scope.select(layers, kind=kind, kernels=True)
    banks = {name: scope.adapter.kernel(name) for name in names}
    if rgb:
        # --rgb draws the layers whose filters have 3 input channels in colour; the others as usual
        colour = [name for name, bank in banks.items() if bank.in_per_group == 3 and bank.groups == 1]
        if not colour:
            raise ValueError(f"--rgb needs a layer with 3 input channels per filter; none of the {len(names)} chosen "
                             f"layer{'s' if len(names) != 1 else ''} has (choose one with --layer, or leave --rgb out)")
    from .progress import Progress

    with Progress(len(names), "convscope kernels", unit="layer", enabled=progress) as bar, \
            OutputDir(out, info={"command": "kernels", "model": scope.name}, formats=chosen_formats) as folder:
        for name in names:
            bank = banks[name]
            layer_rgb = rgb if not rgb else (bank.in_per_group == 3 and bank.groups == 1)
            stem = safe_filename(name)
            meta: dict[str, Any] = {"layer": name, "kind": "kernels", "shape": list(bank.shape)}
            bar.track(folder.add_rendered(
                folder.unique_name(stem, KERNEL_SUFFIX + ".png"),
                partial(bank.grid, scale=scale, normalize=normalize, cmap=cmap, rgb=layer_rgb, labels=labels),
                **meta,
            ))
            if arrays:
                payload = {"weights": bank.weights}
                if bank.bias is not None:
                    payload["bias"] = bank.bias
                folder.add_arrays(folder.unique_name(stem, KERNEL_SUFFIX + ".npz"), payload, layer=name, kind="kernel-array",
                                  shape=list(bank.shape), groups=bank.groups, transposed=bank.transposed)
    return folder.path / "manifest.json"


def _forward_on_cpu(scope: Scope) -> bool:
    """Whether the model's forward pass uses this machine's CPU cores (then the grids are drawn in
    turns with it: :class:`OutputDir` ``interleave``); unknown (adapters that do not say): False."""
    from .adapters.base import SupportsCpuSharing  # a declared capability, not a getattr probe

    return isinstance(scope.adapter, SupportsCpuSharing) and bool(scope.adapter.computes_on_cpu)


def _drawn_now(render: Callable[[], Picture]) -> Callable[[], Picture]:
    """Call ``render`` now; return a callable giving its picture (or raising its error, so errors
    surface where a queued job's would, when the folder is closed)."""
    try:
        picture = render()
    except Exception as exc:  # noqa: BLE001 - re-raised by the job
        error = exc  # ``exc`` is unbound when the except block ends

        def fail() -> Picture:
            raise error

        return fail
    return lambda: picture


def _grid_with_stats(act: Activation, sample: int, **options: Any) -> Picture:
    """``act.grid(sample=sample, **options)`` with ``meta["stats"]`` (see :func:`map_stats`) added."""
    picture = act.grid(sample=sample, **options)
    picture.meta["stats"] = fast_map_stats(act.data[sample])
    return picture


def fast_map_stats(maps: np.ndarray) -> dict[str, Any]:
    """:func:`convscope.core.activations.map_stats`, without its temporaries when every value is finite.

    ``min``/``max`` propagate NaN and show Inf, so when both are finite there is no NaN or Inf and
    the result is ``map_stats``'s exactly (same float32 mean over the same flat values); otherwise
    it falls back to ``map_stats``.
    """
    if maps.size:
        low, high = maps.min(), maps.max()
        if np.isfinite(low) and np.isfinite(high):
            return {"min": float(low), "max": float(high), "mean": float(maps.reshape(-1).mean()), "nan": 0, "inf": 0}
    return map_stats(maps)


def write_activations(
    scope: Scope,
    image: Any,
    out: str | os.PathLike[str],
    layers: str | Sequence[str] | None = None,
    *,
    kind: str | None = None,
    top: int | None = None,
    order: str = "index",
    samples: Sequence[int] | None = None,
    cmap: str = "viridis",
    scale: str = "minmax",
    normalize: str = "channel",
    labels: bool = False,
    overlay: bool = False,
    volume: str = "slices",
    arrays: bool = False,
    size: Any = None,
    input_normalize: str | None = None,
    train: bool = False,
    formats: str | Sequence[str] = ("png",),
    overlay_cmap: str = "jet",
    overlay_alpha: float = 0.5,
    full_resolution: bool = False,
    progress: bool | None = None,
) -> Path:
    """Capture the chosen layers in ONE forward pass and stream their grids to ``out``.

    Each activation is queued for rendering as soon as its layer has run (on the output folder's
    thread pool) and released once drawn, so memory does not grow with the number of layers: queued
    jobs hold at most :data:`~convscope.core.budget.STREAM_PENDING_BYTES` of activations (or one
    bigger one), and volumes are reduced to their pictures in the forward pass itself. A forward
    pass on the CPU keeps all its threads and the grids are drawn in turns with it (when the queue
    is full, and after it: ``OutputDir(interleave=True)``); on an accelerator they are drawn beside it.

    Files: ``LAYER.png`` (sample 0) or ``LAYER.sN.png`` per sample of a batch, ``LAYER.overlay.png``
    with ``overlay``, ``LAYER.npz`` (key ``activation``, ``(N, C, *spatial)`` float32) with ``arrays``.
    ``formats`` (``"png"``, ``"svg"``, ``"pdf"``, or several, ``"png,pdf"``) writes each picture in each
    format. Overlays use ``overlay_cmap`` and ``overlay_alpha`` (heat-map weight in ``[0, 1]``); the
    manifest records both (top level ``overlay`` and every overlay entry). Grids are stored at native
    cell size (cells below :data:`GRID_MIN_CELL` px upscaled) and capped at :data:`GRID_MAX_SIDE` px
    per side by averaging blocks of each cell (``downsample`` in the manifest); ``full_resolution``
    keeps every value.
    ``progress``: one bar over the grids (see :class:`convscope.progress.Progress`; None: auto).
    Returns the path of ``manifest.json``.
    """
    # check every option before anything is captured or written
    _check_choice("scale", scale, SCALES)
    _check_choice("order", order, ORDERS)
    _check_choice("normalize", normalize, ("channel", "shared"))
    _check_choice("volume", volume, ("slices", "mip"))
    if top is not None and top < 1:
        raise ValueError(f"top must be a positive number of channels, got {top}")
    from .render.colormap import get_colormap

    get_colormap(cmap)  # unknown names fail here, with the list of known ones
    get_colormap(overlay_cmap)
    try:
        alpha = float(overlay_alpha)
    except (TypeError, ValueError):
        raise ValueError(f"overlay alpha must be a number in [0, 1], got {overlay_alpha!r}") from None
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1] (0 = only the image, 1 = only the map), got {overlay_alpha}")
    from .render.scene import parse_formats

    chosen_formats = parse_formats(formats)
    names = scope.select(layers, kind=kind)
    # before the image is decoded; the slices of a volume fed to a 2D model go in chunks sized to the
    # budget (not in --train-mode: batch statistics need every slice in one pass)
    plan = scope.plan_slices(image, names, size=size, mode="stream", chunked=not train,
                             why_whole="--train-mode computes batch statistics over every slice in one pass")
    prepared = scope.prepare(image, size=size, normalize=input_normalize)
    batch_size = prepared.batch.shape[0]
    chosen = list(range(batch_size)) if samples is None else list(samples)
    for s in chosen:
        if not 0 <= s < batch_size:
            raise ValueError(f"sample {s} is out of range: the input batch has {batch_size} sample(s)")
    record = prepared.volume if prepared.volume is not None and prepared.batch.ndim == 5 else None
    # a 2D model on every slice of a plane: each layer's channel mean per slice is kept (only that:
    # N small maps) and drawn on the scan's planes when the last chunk has run
    stack = prepared.volume if (prepared.volume is not None and prepared.volume.plane is not None
                                and len(prepared.volume.slice_indices) > 1) else None
    info: dict[str, Any] = {"command": "activations", "model": scope.name, "input": prepared.source}
    if prepared.volume is not None:
        info["volume"] = prepared.volume.describe()
    if stack is not None:
        info["chunks"] = plan.describe()
    if overlay:
        info["overlay"] = {"cmap": overlay_cmap, "alpha": alpha}
    from .progress import Progress

    # one step per (layer, sample) grid; a layer that runs twice (name#1) adds none, the end fills to 100%
    with Progress(len(names) * len(chosen), "convscope activations", unit="grid", enabled=progress) as bar, \
            OutputDir(out, info=info, formats=chosen_formats, interleave=_forward_on_cpu(scope),
                      max_pending_bytes=STREAM_PENDING_BYTES) as folder:
        if record is not None or stack is not None:  # the input's three planes; each 3D map gets LAYER.planes.png on them
            from .volume_views import input_planes

            shown = record if record is not None else stack
            assert shown is not None
            folder.add_picture("input.planes.png", input_planes(shown), kind="volume_planes", layer=None)
            for c in range(1, shown.volume.channels):  # each modality in its own display window
                folder.add_picture(f"input.c{c}.planes.png", input_planes(shown, channel=c), kind="volume_planes", layer=None)
        streams: dict[str, Any] = {}   # layer -> its .npz written chunk by chunk
        means: dict[str, np.ndarray] = {}  # layer -> (N, h, w) channel mean per slice (2D model, --slices)
        shapes: dict[str, list[int]] = {}  # layer -> (N, C, *spatial) of the whole batch
        offset = 0

        def on_activation(name: str, data: np.ndarray) -> None:
            # Called from the forward pass. Flat maps are only queued: drawing, statistics and PNG
            # encoding run on the output folder's threads while the forward pass goes on. A volume
            # (N, C, D, H, W) is drawn right here instead (that reads three slices or three
            # projections) and only its picture is queued, so no job holds a volume: memory stays
            # near the forward pass's own however big the volumes are. With chunks, ``data`` holds
            # samples ``offset..offset + len(data)`` of the batch.
            act = Activation(layer=name, data=data, view=prepared.view)  # 3D: the display's plane (a scan: axial)
            stem = safe_filename(name)
            volume_now = data.ndim == 5
            whole = [batch_size, *data.shape[1:]]
            shapes[name] = whole
            for s in chosen:
                local = s - offset
                if not 0 <= local < data.shape[0]:
                    continue
                suffix = ".png" if batch_size == 1 else f".s{s}.png"
                meta = {"layer": name, "kind": "activations", "shape": whole, "sample": s}
                render = partial(_grid_with_stats, act, local, top=top, order=order, cmap=cmap, scale=scale,
                                 normalize=normalize, labels=labels, volume=volume, min_cell=GRID_MIN_CELL,
                                 max_side=None if full_resolution else GRID_MAX_SIDE)
                bar.track(folder.add_rendered(
                    folder.unique_name(stem, suffix),
                    _drawn_now(render) if volume_now else render,
                    nbytes=0 if volume_now else data[local].nbytes,
                    **meta,
                ))
                if overlay and prepared.display is not None and data.ndim in (4, 5):
                    render = partial(act.overlay, prepared.display[s], sample=local, cmap=overlay_cmap, alpha=alpha)
                    folder.add_rendered(
                        folder.unique_name(stem, ".overlay.png" if batch_size == 1 else f".s{s}.overlay.png"),
                        _drawn_now(render) if volume_now else render,
                        nbytes=0 if volume_now else data[local].nbytes,
                        layer=name, kind="overlay", sample=s, shape=whole,
                    )
            if record is not None and data.ndim == 5 and 0 in chosen:
                from .volume_views import map_planes

                folder.add_picture(folder.unique_name(stem, ".planes.png"), map_planes(record, data[0], name),
                                   layer=name, kind="activation_planes", sample=0, shape=list(data.shape))
            if stack is not None and data.ndim == 4:
                if name not in means:
                    means[name] = np.full((batch_size, *data.shape[2:]), np.nan, dtype=np.float32)
                means[name][offset:offset + data.shape[0]] = data.mean(axis=1, dtype=np.float32)
            if arrays and plan.chunks == 1:
                folder.add_arrays(folder.unique_name(stem, ".npz"), {"activation": data}, layer=name,
                                  kind="activation-array", shape=list(data.shape))
            elif arrays:  # written chunk by chunk: the file grows, memory does not
                if name not in streams:
                    streams[name] = folder.open_array_stream(folder.unique_name(stem, ".npz"), "activation", whole,
                                                             data.dtype, layer=name, kind="activation-array", shape=whole)
                streams[name].write(data)

        missing: list[str] = list(names)
        try:
            for start, stop in plan.ranges():
                offset = start
                part = prepared.batch if plan.chunks == 1 else prepared.batch[start:stop]
                result = scope.adapter.capture(part, names, on_activation=on_activation, train_mode=train)
                missing = [m for m in not_executed(names, result.shapes) if m in missing]
                del result
        except BaseException:
            for writer in streams.values():
                writer.close(check=False)
            raise
        folder.run_queued()  # the forward passes are done: every core draws
        for writer in streams.values():
            writer.close()
        if missing:  # listed, never silently left out
            folder.info["not_executed"] = {"reason": NOT_EXECUTED, "layers": list(missing)}
        if stack is not None:
            from .volume_views import map_planes

            for name, amap in means.items():
                folder.add_picture(folder.unique_name(safe_filename(name), ".planes.png"),
                                   map_planes(stack, amap, name, reduce="channel mean of each slice"),
                                   layer=name, kind="activation_planes", shape=shapes[name])
    return folder.path / "manifest.json"
