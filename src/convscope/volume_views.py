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

__all__ = ["input_planes", "map_planes", "unet_planes", "SliceStack", "stamp", "channel_shares", "input_channel_shares"]


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
                        labels=labels, label_names=record.label_names, roi=_roi(record), title=title, stamp=stamp(record, channel))
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
                        labels=labels, label_names=record.label_names, roi=_roi(record), title=f"{name}: {reduce} {list(maps.shape)}", stamp=stamp(record))
    pic.meta.update({"layer": name, "reduce": reduce, "map_shape": list(maps.shape),
                     "resampling": "nearest to the input grid, padding cropped"})
    return pic


def _prediction_rule(maps: np.ndarray) -> tuple[np.ndarray, str]:
    """``(K, ...)`` output maps (K channels first) -> float32 class map and the rule used: argmax over
    channels, or one channel thresholded at 0.5 (values in [0, 1]: probabilities) or 0 (logits)."""
    if maps.shape[0] > 1:
        return np.argmax(np.nan_to_num(maps, nan=-np.inf), axis=0).astype(np.float32), "argmax over output channels"
    one = maps[0]
    cut = 0.5 if float(np.nanmin(one)) >= 0 and float(np.nanmax(one)) <= 1 else 0.0
    return (one > cut).astype(np.float32), f"output > {cut:g}"


def _output_picture(record: VolumeInput, classes: np.ndarray, rule: str, output_name: str) -> Picture:
    """The prediction (a class map at the model's output resolution, mapped onto the scan's grid) on the
    input's planes: as outlines, or as an overlay with the label map's outlines and the Dice per class."""
    grid = np.nan_to_num(record.to_volume(classes), nan=0).astype(np.int32)
    if record.labels is not None:  # the truth as outlines, the prediction as an overlay; Dice inside the ROI
        overlay = grid.astype(np.float32)
        pic = render_planes(record.volume, point=_point(record), window=_window(record), overlay=overlay,
                            overlay_name="prediction", overlay_cmap="viridis", labels=record.labels, label_names=record.label_names, roi=_roi(record),
                            title=f"output {output_name}: prediction ({rule}), labels as outlines", stamp=stamp(record))
        x0, y0, z0 = record.roi_start
        sx, sy, sz = record.roi_shape
        box = (slice(x0, x0 + sx), slice(y0, y0 + sy), slice(z0, z0 + sz))
        present = sorted((set(np.unique(record.labels[box]).tolist()) | set(np.unique(grid[box]).tolist())) - {0})
        pic.meta["dice"] = dice_scores(grid[box], record.labels[box], present)
        if record.label_names:
            pic.meta["label_names"] = {str(k): v for k, v in record.label_names.items()}
    else:
        pic = render_planes(record.volume, point=_point(record), window=_window(record), labels=grid, roi=_roi(record),
                            title=f"output {output_name}: prediction ({rule}) as outlines", stamp=stamp(record))
    pic.meta.update({"layer": output_name, "reduce": rule})
    return pic


def unet_planes(flow: Any, record: VolumeInput) -> list[tuple[str, Picture]]:
    """``[(file name, picture)]``: the output (class labels as outlines, or the one channel as a
    map) and each level's encoder and decoder outputs (channel mean), on the input's planes."""
    out: list[tuple[str, Picture]] = [("input.planes.png", input_planes(record))]
    s = flow.structure
    classes, rule = _prediction_rule(flow.sample_maps(s.output, 0))
    out.append(("output.planes.png", _output_picture(record, classes, rule, flow.name(s.output))))
    for view in flow.levels:
        lvl = view.level
        for role, node in (("encoder", lvl.encoder_output), ("decoder", lvl.decoder_output)):
            if node is None or node not in flow.values:
                continue
            out.append((f"level-{view.index}.{role}.planes.png",
                        map_planes(record, flow.sample_maps(node, 0), f"level {view.index} {role} {flow.name(node)}")))
    return out


class SliceStack:
    """What the plane figures of a 2D U-Net run on every slice of a volume keep from each chunk of
    slices (``on_chunk`` of :func:`convscope.unet.build_unet_flow`): per level, the encoder and
    decoder outputs' channel mean of each slice (``(N, h, w)`` float32), and the output (its arg-max
    class per pixel for several channels, ``(N, h, w)`` int16, or its one channel, float32) - never
    the captures themselves.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.means: dict[str, np.ndarray] = {}
        self.titles: dict[str, str] = {}
        self.output: np.ndarray | None = None
        self.output_name = ""
        self.argmax = False

    def _keep(self, key: str, start: int, block: np.ndarray, dtype: Any) -> np.ndarray:
        store = self.means.get(key)
        if store is None:
            store = np.zeros((self.total, *block.shape[1:]), dtype=dtype)
            self.means[key] = store
        store[start:start + block.shape[0]] = block
        return store

    def __call__(self, start: int, structure: Any, graph: Any, values: dict[str, np.ndarray]) -> None:
        for index, lvl in enumerate(structure.levels):
            for role, node in (("encoder", lvl.encoder_output), ("decoder", lvl.decoder_output)):
                if node is None or node not in values:
                    continue
                value = values[node]
                maps = value.reshape(value.shape[0], -1, *value.shape[-2:])
                key = f"level-{index}.{role}"
                self.titles[key] = f"level {index} {role} {graph.name_of(node)}"
                self._keep(key, start, maps.mean(axis=1, dtype=np.float32), np.float32)
        value = values[structure.output]
        out = value.reshape(value.shape[0], -1, *value.shape[-2:])
        self.output_name = graph.name_of(structure.output)
        self.argmax = out.shape[1] > 1
        if self.argmax:
            block = np.argmax(np.nan_to_num(out, nan=-np.inf), axis=1).astype(np.int16)
        else:
            block = out[:, 0].astype(np.float32)
        if self.output is None:
            self.output = np.zeros((self.total, *block.shape[1:]), dtype=block.dtype)
        self.output[start:start + block.shape[0]] = block

    def planes(self, record: VolumeInput) -> list[tuple[str, Picture]]:
        """``[(file name, picture)]``: input, prediction (with the Dice against ``--label-map``) and each
        level's maps on the scan's planes, as :func:`unet_planes` draws a 3D U-Net's."""
        out: list[tuple[str, Picture]] = [("input.planes.png", input_planes(record))]
        if self.output is not None:
            if self.argmax:
                classes, rule = self.output.astype(np.float32), "argmax over output channels"
            else:
                classes, rule = _prediction_rule(self.output[None])
            pic = _output_picture(record, classes, rule, self.output_name)
            pic.meta["reduce"] = f"{rule}, slice by slice"
            out.append(("output.planes.png", pic))
        for key, amap in self.means.items():
            out.append((f"{key}.planes.png", map_planes(record, amap, self.titles[key], reduce="channel mean of each slice")))
        return out


def _channel_sums(batch: np.ndarray, input_gradient: np.ndarray) -> np.ndarray:
    contrib = np.abs(batch.astype(np.float64) * input_gradient.astype(np.float64))
    return np.asarray(contrib.sum(axis=tuple(a for a in range(contrib.ndim) if a != 1)))


def _shares(per: np.ndarray, names: Any) -> dict[str, float]:
    total = float(per.sum())
    labels = list(names) if names is not None and len(names) == per.size else [str(c) for c in range(per.size)]
    return {label: (float(v) / total if total > 0 else 0.0) for label, v in zip(labels, per)}


def channel_shares(batch: np.ndarray, input_gradient: np.ndarray, names: Any = None) -> dict[str, float]:
    """Per input channel, its share of ``sum |x * dS/dx|`` (input x gradient), summed over space and batch.

    ``batch`` and ``input_gradient`` are ``(N, C, *spatial)``; the shares add up to 1 (all 0 when
    the gradient is 0 everywhere). ``names``: one label per channel (modality file names).
    """
    return _shares(_channel_sums(batch, input_gradient), names)


def input_channel_shares(adapter: Any, batch: np.ndarray, *, target: int | None = None, mask: Any = None,
                         names: Any = None, chunks: Any = None) -> dict[str, Any] | None:
    """How much each input channel (modality) contributes to the output: :func:`channel_shares` of
    the gradient of the same score as the skip shares (sum of the target/predicted class logits,
    inside ``mask``), from ONE forward + ONE backward pass (one per chunk with ``chunks``,
    ``[(start, stop), ...]`` of independent samples: the sums add up). None when the adapter has no gradients."""
    from .adapters.base import SupportsGradients
    from .core.objective import ChannelObjective

    if not isinstance(adapter, SupportsGradients):
        return None
    ranges = list(chunks) if chunks else [(0, int(batch.shape[0]))]
    per_sample_mask = mask is not None and np.ndim(mask) == batch.ndim - 1 and np.shape(mask)[0] == batch.shape[0]
    per: np.ndarray | None = None
    for start, stop in ranges:
        part = batch if len(ranges) == 1 else batch[start:stop]
        part_mask = np.asarray(mask)[start:stop] if per_sample_mask and len(ranges) > 1 else mask
        result = adapter.gradients(part, [], ChannelObjective(channel=target, mask=part_mask), with_input=True)
        if result.input_gradient is None:
            return None
        sums = _channel_sums(part, result.input_gradient)
        per = sums if per is None else per + sums
    assert per is not None
    return {"method": "sum |x * dS/dx| per input channel / total", "score": "sum of the "
            + ("predicted class" if target is None else f"channel {target}") + " logits" + (" inside the mask" if mask is not None else ""),
            "shares": _shares(per, names)}
