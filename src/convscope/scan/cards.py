"""Write a scan folder: ``scan.json``, ``state.npz`` and one channel card PNG per channel.

The cards need pictures of the winners: only the images that are some channel's top-k example
are re-run (pass 2), layer group by layer group so that the thumbnails held at once stay under
``budget_bytes``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..core.view import MiddleView
from ..io.dataset import ExampleReader
from ..io.output import OutputDir, safe_filename
from .result import ScanResult

__all__ = ["write_scan", "render_cards"]

THUMB = 72


def example_label(image_id: str) -> str:
    """A card's short name of an example: the file's name, after its slice for a volume's slice
    (``"ax12 ct.nii.gz"`` for ``"scans/ct.nii.gz#axial:0012@hash"``)."""
    from ..io.dataset import SLICE_TAG, file_part

    rel = image_id.rsplit("@", 1)[0]
    name = file_part(image_id).rstrip("/").rsplit("/", 1)[-1]
    match = SLICE_TAG.search(rel)
    return f"{match.group(1)[:2]}{int(match.group(2))} {name}" if match else name


def _layer_groups(result: ScanResult, budget_bytes: int) -> list[list[str]]:
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for name, stats in result.state.layers.items():
        cost = stats.channels * stats.top_id.shape[1] * THUMB * THUMB * 3
        if current and used + cost > budget_bytes:
            groups.append(current)
            current, used = [], 0
        current.append(name)
        used += cost
    if current:
        groups.append(current)
    return groups


WRAP_INPUTS = 8
"""A card's filter with more input channels than this is drawn as a near-square grid of its kernels."""


def _kernel_picture(scope: Any, layer: str, channel: int, cache: dict[str, Any]) -> np.ndarray | None:
    from ..render.grid import render_kernel_grid

    if layer not in cache:
        try:
            cache[layer] = scope.adapter.kernel(layer)
        except (ValueError, KeyError):  # not a convolution
            cache[layer] = None
    bank = cache[layer]
    if bank is None or channel >= bank.weights.shape[0]:
        return None
    weights = bank.weights[channel:channel + 1]  # (1, I, *k)
    if weights.shape[1] > WRAP_INPUTS and int(np.prod(weights.shape[2:])) > 1:
        # many input channels: their kernels wrap into a near-square grid (one filter, one shared
        # symmetric scale: the colours of the one-row layout) instead of a strip too thin to read
        return render_kernel_grid(weights[0][:, None], shared=True, max_side=400).pixels[:, :, :3]
    return render_kernel_grid(weights, max_side=400).pixels[:, :, :3]


def card_slice(
    amap: np.ndarray, sample: np.ndarray, position: tuple[int, ...], box: np.ndarray | None, view: MiddleView | None
) -> tuple[np.ndarray, np.ndarray, list[int] | None]:
    """The 2D picture of a 3D example: ``(map slice, input slice picture, crop box [r0, c0, r1, c1])``.

    ``amap`` ``(a, b, c)`` is the channel's map, ``sample`` ``(C, A, B, C)`` the model input,
    ``position`` the arg-max in ``amap``, ``box`` its receptive field ``[a0, b0, c0, a1, b1, c1]`` in
    the input (or None). A scan (``view.plane == "axial"``, axes ``(X, Y, Z)`` RAS+) is cut in the
    axial plane through the arg-max, in radiological view (:func:`~convscope.core.view.plane_slice`:
    rows A->P, columns R->L); any other array along its first axis, as stored.
    """
    from ..core.view import plane_slice

    extent = sample.shape[1:]
    if view is not None and view.plane == "axial":
        z = position[2]
        z_in = (int(box[2]) + int(box[5]) - 1) // 2 if box is not None else (z * extent[2]) // amap.shape[2]
        width_x, height_y = extent[0], extent[1]
        crop = None if box is None else [height_y - int(box[4]), width_x - int(box[3]),
                                         height_y - int(box[1]), width_x - int(box[0])]
        return plane_slice(amap, "axial", z), _slice_picture(plane_slice(sample, "axial", z_in)), crop
    z = position[0]
    z_in = (int(box[0]) + int(box[3]) - 1) // 2 if box is not None else (z * extent[0]) // amap.shape[0]
    crop = None if box is None else [int(box[1]), int(box[2]), int(box[4]), int(box[5])]
    return amap[z], _slice_picture(sample[:, z_in]), crop


def _slice_picture(planes: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` model-input slice -> ``(H, W, 3)`` uint8 (first 3 channels or gray, min-max scaled)."""
    rgb = planes[:3] if planes.shape[0] >= 3 else np.repeat(planes[:1], 3, axis=0)
    lo, hi = float(np.nanmin(rgb)), float(np.nanmax(rgb))
    unit = (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)
    return np.ascontiguousarray((np.moveaxis(np.nan_to_num(unit), 0, -1) * 255 + 0.5).astype(np.uint8))


def render_cards(
    scope: Any,
    result: ScanResult,
    out: OutputDir,
    *,
    size: Any = None,
    normalize: str | None = None,
    batch_size: int = 16,
    budget_bytes: int = 256 * 2**20,
) -> dict[str, list[str]]:
    """Pass 2: re-run the winning images, cut the overlaid crops and queue one card per channel on ``out``.

    Returns:
        layer -> relative card path per channel.
    """
    from ..render.grid import render_overlay
    from ..render.scan_card import crop_thumbnail, render_channel_card
    from .engine import _prepare_kwargs

    prepare = _prepare_kwargs(scope, size, normalize)
    reader = ExampleReader(prepare)  # a volume's slices are cut from one read of it
    cards: dict[str, list[str]] = {}
    kernels: dict[str, Any] = {}
    for group in _layer_groups(result, budget_bytes):
        # image id -> [(layer, channel, slot)]
        wanted: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        for name in group:
            ids = result.layer(name).top_id
            for c in range(ids.shape[0]):
                for j in range(ids.shape[1]):
                    if ids[c, j]:
                        wanted[bytes(ids[c, j]).decode("utf-8")].append((name, c, j))
        thumbs: dict[tuple[str, int, int], np.ndarray] = {}
        order = sorted(wanted)
        for start in range(0, len(order), batch_size):
            part = order[start:start + batch_size]
            prepared = [reader.read(i, result.state.paths[i]) for i in part]
            batch = np.concatenate([p.batch for p in prepared], axis=0)
            displays = [p.display[0] if p.display is not None else None for p in prepared]
            views = [p.view for p in prepared]
            by_layer: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
            for n, image_id in enumerate(part):
                for name, c, j in wanted[image_id]:
                    by_layer[name].append((n, c, j))

            def on_activation(
                name: str, act: np.ndarray, _by_layer: Any = by_layer, _displays: Any = displays, _thumbs: Any = thumbs,
                _batch: Any = batch, _views: Any = views,
            ) -> None:
                stats = result.layer(name) if name in result.state.layers else None
                if stats is None:
                    return
                boxes = result.crops.get(name)
                for n, c, j in _by_layer.get(name, ()):
                    display = _displays[n]
                    if display is None:
                        continue
                    amap = act[n, c]
                    box = None
                    b = boxes[c, j] if boxes is not None and boxes[c, j][0] >= 0 else None
                    if amap.ndim == 3:  # 3D: the layer's slice through the arg-max, over the input slice at its centre
                        position = tuple(int(v) for v in np.unravel_index(int(stats.top_pos[c, j]), stats.spatial))
                        amap, display, box = card_slice(amap, _batch[n], position, b, _views[n])
                    elif b is not None:
                        box = b.tolist()
                    if amap.ndim < 2:  # no spatial map (a Linear output, a flattened vector): the whole input, no overlay
                        overlay = render_overlay(display, np.zeros((1, 1), np.float32), alpha=0.0).pixels
                        box = None
                    else:
                        overlay = render_overlay(display, amap, alpha=0.45).pixels
                    _thumbs[(name, c, j)] = crop_thumbnail(overlay, box, THUMB)

            scope.adapter.capture(batch, group, on_activation=on_activation)
        for name in group:
            stats = result.layer(name)
            paths = []
            folder = f"cards/{safe_filename(name)}"
            for c in range(stats.channels):
                rel = out.unique_name(f"c{c:04d}", ".png", folder)
                paths.append(rel)
                view = result.channel(name, c)
                crops = [thumbs.pop((name, c, j)) for j in range(len(view.examples)) if (name, c, j) in thumbs]
                captions = [f"{e.score:.3g}\n{example_label(e.image_id)}" for e in view.examples][: len(crops)]
                st = view.stats
                lines = [
                    f"values {st.count:,}",
                    f"mean {st.mean:.4g}  std {st.std:.4g}",
                    f"min {st.min:.4g}  max {st.max:.4g}",
                    f"zero {100 * st.zero_fraction:.1f}%  positive {100 * st.positive_fraction:.1f}%",
                ]
                if c in stats.dead_channels():
                    lines.append("never positive at this output")
                if view.class_means:
                    lines.extend(f"{k}: mean {v:.3g}" for k, v in view.class_means.items() if np.isfinite(v))
                kernel = _kernel_picture(scope, name, c, kernels)
                title = f"{name}  channel {c}  ({result.state.config.get('score', 'max')} score)"
                hist, edges = st.histogram, st.edges

                def render(_t=title, _cr=crops, _ca=captions, _h=hist, _e=edges, _l=lines, _k=kernel) -> Any:
                    return render_channel_card(_t, _cr, _ca, _h, _e, _l, _k, thumb=THUMB)

                out.add_rendered(rel, render, nbytes=sum(x.nbytes for x in crops), kind="channel-card", layer=name, channel=c)
            cards[name] = paths
        thumbs.clear()
    return cards


def write_scan(
    scope: Any,
    result: ScanResult,
    out: str | os.PathLike[str],
    *,
    cards: bool = True,
    size: Any = None,
    normalize: str | None = None,
) -> Path:
    """Write the scan folder; returns ``out/scan.json``."""
    with OutputDir(out, info={"command": "scan", "model": scope.name}) as folder:
        if cards:
            result.cards = render_cards(scope, result, folder, size=size, normalize=normalize)
        path = result.save(out, output=folder)
    result.path = Path(out)
    return path
