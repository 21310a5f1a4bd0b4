"""Plane figures of a volume input and of what a 3D model made of it (activations, U-Net levels, output).

Every map is brought back onto the input's voxel grid (:meth:`VolumeInput.to_volume`: nearest
upsampling from the layer's resolution, padding cropped off, NaN outside a ``--roi``) and drawn
over the original intensities, through the same planes as the input
(:func:`convscope.render.planes.render_planes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.volume import as_triple
from .io.volume_prep import VolumeInput, channel_window, dice_scores
from .render.picture import Picture
from .render.planes import render_planes

__all__ = ["input_planes", "map_planes", "unet_planes", "stamp", "channel_shares", "input_channel_shares"]


def stamp(record: VolumeInput, channel: int = 0) -> str:
    """The figure's second line: display window and model input transform (they differ on purpose)."""
    from .io.volume_prep import window_label

    return f"display window {window_label(record.volume, record.window, channel)} | model intensity {record.intensity}"


def _window(record: VolumeInput, channel: int = 0) -> str | None:
    return channel_window(record.window, channel)


def _point(record: VolumeInput) -> tuple[int, int, int]:
    """Where every figure of a run cuts the volume: the label map's centroid when one is given
    (so the planes show the structure), else the centre of the region fed to the model."""
    if record.labels is not None and record.labels.any():
        return as_triple(int(round(float(c.mean()))) for c in np.nonzero(record.labels))
    return as_triple(int(s + n // 2) for s, n in zip(record.roi_start, record.roi_shape))


def _roi(record: VolumeInput) -> Any:
    return (record.roi_start, record.roi_shape) if tuple(record.roi_shape) != record.volume.shape else None


def input_planes(record: VolumeInput, *, labels: np.ndarray | None = None, channel: int = 0) -> Picture:
    """The input volume's three planes for one channel, in that channel's display window (the ROI
    drawn when one was fed to the model)."""
    labels = record.labels if labels is None else labels
    names = record.volume.channel_names
    title = f"input {record.volume.source}" if record.volume.channels == 1 else \
        f"input channel {channel}: {names[channel] if channel < len(names) else channel}"
    pic = render_planes(record.volume, point=_point(record), window=_window(record, channel), channel=channel,
                        labels=labels, roi=_roi(record), title=title, stamp=stamp(record, channel))
    pic.meta["channel"] = channel
    pic.meta["volume"] = record.describe()
    return pic


def map_planes(record: VolumeInput, maps: np.ndarray, name: str, *, labels: np.ndarray | None = None,
               reduce: str = "channel mean") -> Picture:
    """``(C, a, b, c)`` maps of one sample (any resolution over the model's input box), reduced over
    channels (mean), on the input's planes."""
    labels = record.labels if labels is None else labels
    amap = maps.astype(np.float32).mean(axis=0) if maps.ndim == 4 else maps.astype(np.float32)
    overlay = record.to_volume(amap)
    pic = render_planes(record.volume, point=_point(record), window=_window(record), overlay=overlay, overlay_name=name,
                        labels=labels, roi=_roi(record), title=f"{name}: {reduce} {list(maps.shape)}", stamp=stamp(record))
    pic.meta.update({"layer": name, "reduce": reduce, "map_shape": list(maps.shape),
                     "resampling": "nearest to the input grid, padding cropped"})
    return pic


def unet_planes(flow: Any, record: VolumeInput) -> list[tuple[str, Picture]]:
    """``[(file name, picture)]``: the output (class labels as outlines, or the one channel as a
    map) and each level's encoder and decoder outputs (channel mean), on the input's planes."""
    out: list[tuple[str, Picture]] = [("input.planes.png", input_planes(record))]
    s = flow.structure
    maps = flow.sample_maps(s.output, 0)
    if maps.shape[0] > 1:
        classes = np.argmax(np.nan_to_num(maps, nan=-np.inf), axis=0).astype(np.float32)
        rule = "argmax over output channels"
    else:
        one = maps[0]
        cut = 0.5 if float(np.nanmin(one)) >= 0 and float(np.nanmax(one)) <= 1 else 0.0
        classes = (one > cut).astype(np.float32)
        rule = f"output > {cut:g}"
    grid = np.nan_to_num(record.to_volume(classes), nan=0).astype(np.int32)
    if record.labels is not None:  # the truth as outlines, the prediction as an overlay; Dice inside the ROI
        overlay = grid.astype(np.float32)
        pic = render_planes(record.volume, point=_point(record), window=_window(record), overlay=overlay,
                            overlay_name="prediction", overlay_cmap="viridis", labels=record.labels, roi=_roi(record),
                            title=f"output {flow.name(s.output)}: prediction ({rule}), labels as outlines", stamp=stamp(record))
        x0, y0, z0 = record.roi_start
        sx, sy, sz = record.roi_shape
        box = (slice(x0, x0 + sx), slice(y0, y0 + sy), slice(z0, z0 + sz))
        present = sorted((set(np.unique(record.labels[box]).tolist()) | set(np.unique(grid[box]).tolist())) - {0})
        pic.meta["dice"] = dice_scores(grid[box], record.labels[box], present)
    else:
        pic = render_planes(record.volume, point=_point(record), window=_window(record), labels=grid, roi=_roi(record),
                            title=f"output {flow.name(s.output)}: prediction ({rule}) as outlines", stamp=stamp(record))
    pic.meta.update({"layer": flow.name(s.output), "reduce": rule})
    out.append(("output.planes.png", pic))
    for view in flow.levels:
        lvl = view.level
        for role, node in (("encoder", lvl.encoder_output), ("decoder", lvl.decoder_output)):
            if node is None or node not in flow.values:
                continue
            out.append((f"level-{view.index}.{role}.planes.png",
                        map_planes(record, flow.sample_maps(node, 0), f"level {view.index} {role} {flow.name(node)}")))
    return out


def channel_shares(batch: np.ndarray, input_gradient: np.ndarray, names: Any = None) -> dict[str, float]:
    """Per input channel, its share of ``sum |x * dS/dx|`` (input x gradient), summed over space and batch.

    ``batch`` and ``input_gradient`` are ``(N, C, *spatial)``; the shares add up to 1 (all 0 when
    the gradient is 0 everywhere). ``names``: one label per channel (modality file names).
    """
    contrib = np.abs(batch.astype(np.float64) * input_gradient.astype(np.float64))
    per = contrib.sum(axis=tuple(a for a in range(contrib.ndim) if a != 1))
    total = float(per.sum())
    labels = list(names) if names is not None and len(names) == per.size else [str(c) for c in range(per.size)]
    return {label: (float(v) / total if total > 0 else 0.0) for label, v in zip(labels, per)}


def input_channel_shares(adapter: Any, batch: np.ndarray, *, target: int | None = None, mask: Any = None,
                         names: Any = None) -> dict[str, Any] | None:
    """How much each input channel (modality) contributes to the output: :func:`channel_shares` of
    the gradient of the same score as the skip shares (sum of the target/predicted class logits,
    inside ``mask``), from ONE forward + ONE backward pass. None when the adapter has no gradients."""
    from .adapters.base import SupportsGradients
    from .core.objective import ChannelObjective

    if not isinstance(adapter, SupportsGradients):
        return None
    result = adapter.gradients(batch, [], ChannelObjective(channel=target, mask=mask), with_input=True)
    if result.input_gradient is None:
        return None
    return {"method": "sum |x * dS/dx| per input channel / total", "score": "sum of the "
            + ("predicted class" if target is None else f"channel {target}") + " logits" + (" inside the mask" if mask is not None else ""),
            "shares": channel_shares(batch, result.input_gradient, names)}
