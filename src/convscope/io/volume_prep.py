"""What the model sees vs what the user sees, for volumes: intensity transform, display window, fitting.

- ``--intensity`` is the model's input transform (recorded in the manifest), per channel:
  ``none`` (values as read: HU for CT), ``clip:LO,HI`` (clip to [LO, HI] then scale to [0, 1], as
  MONAI ``ScaleIntensityRanged(a_min=LO, a_max=HI, b_min=0, b_max=1, clip=True)``),
  ``zscore-nonzero`` (mean/std of the non-zero voxels of each channel; zero voxels stay 0, as
  MONAI ``NormalizeIntensity(nonzero=True, channel_wise=True)``), ``percentile:P,Q`` (each channel's
  P-th..Q-th percentile to [0, 1], clipped). Several channels: one spec for all, or one per channel
  separated by ``;``.
- ``--window`` is display only and never reaches the model: a CT preset (:data:`WINDOW_PRESETS`),
  ``L,W`` (DICOM LINEAR windowing, PS3.3 C.11.2.1.2.1), ``percentile:P,Q``, or ``auto``
  (``soft-tissue`` for HU volumes, ``percentile:0.5,99.5`` otherwise).
- Fitting a 3D model: an optional region of interest (``--roi center|X,Y,Z --roi-size X,Y,Z``,
  voxel units of the RAS+ array), then zero padding at the high end of each axis up to a multiple
  of the model's total downsampling; maps are cropped back to the region when drawn.
- A 2D model: ``--slice axial:N`` (one slice) or ``--slices axial`` (all slices as a batch). Slices
  are handed over in radiological view: rows top->bottom = anterior->posterior (axial) or
  superior->inferior (coronal/sagittal), columns left->right = patient right->left (axial,
  coronal) or anterior->posterior (sagittal), the way a DICOM axial image's pixels are stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.view import PLANES, plane_slice, plane_spacing
from ..core.volume import Volume, as_triple
from ..errors import ImageInputError

__all__ = [
    "WINDOW_PRESETS",
    "PLANES",
    "VolumeOptions",
    "VolumeInput",
    "parse_intensity",
    "apply_intensity",
    "parse_window",
    "window_unit",
    "plane_slice",
    "plane_spacing",
    "prepare_volume",
    "total_downsampling",
    "probe_downsampling",
    "channel_window",
    "fit_mask_file",
    "read_labels",
    "read_label_map",
]

WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft-tissue": (50.0, 400.0),
    "liver": (30.0, 150.0),
    "bone": (400.0, 1800.0),
}
"""CT display windows as (level, width) in HU."""

MAX_BATCH_BYTES = 4 * 1024**3
"""Refuse to build a model input larger than this (float32), before building it."""
_PERCENTILE_SAMPLES = 2_000_000
"""Percentile display windows of larger volumes use an even subsample of this many voxels."""
_PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}


# ------------------------------------------------------------------------------------------------
# intensity (model input)
# ------------------------------------------------------------------------------------------------


def _two_numbers(text: str, what: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise ImageInputError(f"{what} needs two numbers like 0.5,99.5; got {text!r}") from None
    if not a < b:
        raise ImageInputError(f"{what} needs LOW < HIGH; got {text!r}")
    return a, b


def parse_intensity(spec: str | None, channels: int) -> list[tuple[str, tuple[float, ...]]]:
    """``--intensity`` -> one ``(kind, params)`` per channel; kinds: none, clip, zscore-nonzero, percentile."""
    text = (spec or "none").strip().lower()
    parts = [p.strip() for p in text.split(";")]
    if len(parts) not in (1, channels):
        raise ImageInputError(f"--intensity has {len(parts)} ';'-separated specs but the input has {channels} channels")
    out: list[tuple[str, tuple[float, ...]]] = []
    for part in parts:
        kind, _, rest = part.partition(":")
        if kind in ("none", "") and not rest:
            out.append(("none", ()))
        elif kind == "zscore-nonzero" and not rest:
            out.append(("zscore-nonzero", ()))
        elif kind == "clip":
            out.append(("clip", _two_numbers(rest, "--intensity clip:LO,HI")))
        elif kind == "percentile":
            lo, hi = _two_numbers(rest, "--intensity percentile:P,Q")
            if lo < 0 or hi > 100:
                raise ImageInputError("--intensity percentile:P,Q needs 0 <= P < Q <= 100")
            out.append(("percentile", (lo, hi)))
        else:
            raise ImageInputError(
                f"--intensity must be none, clip:LO,HI, zscore-nonzero or percentile:P,Q (one per channel with ';'); got {spec!r}"
            )
    return out * channels if len(out) == 1 else out


def apply_intensity(data: np.ndarray, spec: str | None) -> np.ndarray:
    """``(C, ...)`` float32 -> the model's input values (a new array; ``data`` is not changed)."""
    specs = parse_intensity(spec, data.shape[0])
    out = np.empty_like(data, dtype=np.float32)
    for c, (kind, params) in enumerate(specs):
        x = data[c]
        if kind == "none":
            out[c] = x
        elif kind == "clip":
            lo, hi = params
            out[c] = (np.clip(x, lo, hi) - np.float32(lo)) / np.float32(hi - lo)
        elif kind == "percentile":
            lo, hi = np.percentile(x, params)
            span = float(hi - lo) if hi > lo else 1.0
            out[c] = np.clip((x - np.float32(lo)) / np.float32(span), 0.0, 1.0)
        else:  # zscore-nonzero
            mask = x != 0
            if not mask.any():
                out[c] = x
                continue
            values = x[mask].astype(np.float64)
            mean, std = float(values.mean()), float(values.std())
            std = std if std > 0 else 1.0
            out[c] = np.where(mask, (x - np.float32(mean)) / np.float32(std), np.float32(0.0))
    return out


# ------------------------------------------------------------------------------------------------
# window (display only)
# ------------------------------------------------------------------------------------------------


def parse_window(spec: str | None, units: str = "") -> tuple[str, tuple[float, float]]:
    """``--window`` -> ``("linear", (level, width))`` or ``("percentile", (p, q))``."""
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return ("linear", WINDOW_PRESETS["soft-tissue"]) if units == "HU" else ("percentile", (0.5, 99.5))
    if text in WINDOW_PRESETS:
        return "linear", WINDOW_PRESETS[text]
    if text.startswith("percentile:"):
        lo, hi = _two_numbers(text.split(":", 1)[1], "--window percentile:P,Q")
        return "percentile", (lo, hi)
    try:
        level, width = (float(v) for v in text.split(","))
    except ValueError:
        raise ImageInputError(
            f"--window must be auto, a CT preset ({', '.join(WINDOW_PRESETS)}), L,W (e.g. 40,400) or percentile:P,Q; got {spec!r}"
        ) from None
    if width < 1:
        raise ImageInputError(f"--window width must be at least 1; got {width:g}")
    return "linear", (level, width)


def window_function(spec: str | None, units: str = "", reference: np.ndarray | None = None) -> tuple[Any, str]:
    """``(f, label)``: ``f(values) -> [0, 1]`` float32 display values, and a label like ``"W 400 L 50"``.

    Linear windows are DICOM LINEAR (``((x - (c - 0.5)) / (w - 1) + 0.5)`` clipped); percentile
    windows take their bounds from ``reference`` (the whole volume, or an even subsample of 2 M voxels
    for bigger ones), so all planes share one window.
    """
    kind, (a, b) = parse_window(spec, units)
    if kind == "linear":
        level, width = a, b

        def linear(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float32)
            if width <= 1:
                return (x > level - 0.5).astype(np.float32)
            return np.clip((x - np.float32(level - 0.5)) / np.float32(width - 1) + np.float32(0.5), 0.0, 1.0)

        return linear, f"W {width:g} L {level:g}"
    ref = np.asarray(reference if reference is not None else np.zeros(1)).reshape(-1)
    if ref.size > _PERCENTILE_SAMPLES:  # big scans: every k-th voxel (deterministic), not a full sort per view
        ref = ref[:: -(-ref.size // _PERCENTILE_SAMPLES)]
    finite = ref[np.isfinite(ref)]
    lo, hi = (float(v) for v in np.percentile(finite, (a, b))) if finite.size else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0

    def scaled(x: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(x, dtype=np.float32) - np.float32(lo)) / np.float32(span), 0.0, 1.0)

    return scaled, f"p{a:g}-p{b:g} ({lo:.4g}..{hi:.4g})"


def window_unit(values: np.ndarray, spec: str | None, units: str = "", reference: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Display values in [0, 1] and a label; percentile bounds from ``reference`` (default ``values``)."""
    f, label = window_function(spec, units, values if reference is None else reference)
    return f(values), label


# ------------------------------------------------------------------------------------------------
# slices in radiological view
# ------------------------------------------------------------------------------------------------


# plane_slice / plane_spacing live in convscope.core.view (numpy only, usable by render/); re-exported here.


# ------------------------------------------------------------------------------------------------
# options and the prepared record
# ------------------------------------------------------------------------------------------------


def _parse_triple(text: str, what: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ImageInputError(f"{what} needs three integers X,Y,Z; got {text!r}")
    return values


@dataclass(frozen=True)
class VolumeOptions:
    """How a volume becomes model input and how it is shown (CLI ``--series``, ``--intensity`` ...).

    Attributes:
        series: SeriesInstanceUID to read from a DICOM folder holding several series.
        channels: files stacked as the input's channels (same shape and affine).
        intensity: the model's input transform (see the module docstring).
        window: the display window (never applied to the model input).
        roi: ``"center"`` or ``"X,Y,Z"`` (voxel centre, RAS+ array) with ``roi_size``.
        roi_size: ``"X,Y,Z"`` voxels of the region fed to a 3D model.
        slice: ``"axial:N"`` (also ``coronal``/``sagittal``): one slice for a 2D model.
        slices: ``"axial"``: every slice of that plane, as a batch, for a 2D model.
        labels: a label map (NIfTI/DICOM on the input's grid) drawn as outlines on every figure,
            and compared with the prediction (Dice) by ``unet``.
    """

    series: str | None = None
    channels: tuple[str, ...] = ()
    intensity: str | None = None
    window: str | None = None
    roi: str | None = None
    roi_size: str | None = None
    slice: str | None = None
    slices: str | None = None
    labels: str | None = None

    def __post_init__(self) -> None:  # check the syntax before any file is read
        if self.window is not None:
            for part in self.window.split(";"):
                parse_window(part)
        if self.intensity is not None:
            parse_intensity(self.intensity.split(";")[0], 1)
        if self.roi_size is not None:
            _parse_triple(self.roi_size, "--roi-size")
        if self.roi is not None and self.roi.strip().lower() != "center":
            _parse_triple(self.roi, "--roi")
        if self.roi is not None and self.roi_size is None:
            raise ImageInputError("--roi needs --roi-size X,Y,Z")
        if self.slice is not None and self.slices is not None:
            raise ImageInputError("give either --slice PLANE:N or --slices PLANE, not both")
        if self.slice is not None:
            plane, _, index = self.slice.partition(":")
            if plane not in PLANES or not index.strip().lstrip("-").isdigit():
                raise ImageInputError(f"--slice must look like axial:40 (planes: {', '.join(PLANES)}); got {self.slice!r}")
        if self.slices is not None and self.slices not in PLANES:
            raise ImageInputError(f"--slices must be one of {', '.join(PLANES)}; got {self.slices!r}")


@dataclass(frozen=True, eq=False)
class VolumeInput:
    """How a :class:`Volume` was turned into the model batch, to map results back onto it.

    Attributes:
        volume: the full volume with its original intensities (what figures show).
        intensity: the model's input transform as given (``"none"`` if none).
        window: the display window spec (``"auto"`` if none).
        roi_start / roi_shape: the voxel box of ``volume`` fed to a 3D model (the whole volume
            unless ``--roi``).
        padded_shape: spatial shape of the batch (the box zero-padded at the high end).
        plane / slice_indices: for a 2D model, the plane and the slice of each batch sample.
        notes: what was done that the user should know (padding, cropping).
    """

    volume: Volume
    intensity: str
    window: str
    roi_start: tuple[int, int, int]
    roi_shape: tuple[int, int, int]
    padded_shape: tuple[int, ...]
    plane: str | None = None
    slice_indices: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    labels: np.ndarray | None = None
    """``(X, Y, Z)`` int32 label map on the volume's grid (``--labels``), or None."""
    label_names: dict[int, str] = field(default_factory=dict)
    """Label value -> name (a DICOM SEG's SegmentLabel per SegmentNumber); empty when the file has none."""

    def fit_region(self, region: np.ndarray) -> np.ndarray:
        """A ``(X, Y, Z)`` map on the volume's grid (a mask, labels) -> the batch's spatial layout:
        the ROI crop and zero padding of a 3D model, or the slices of a 2D model (``(N, rows, cols)``)."""
        if region.shape != self.volume.shape:
            raise ImageInputError(
                f"the mask/label map is {'x'.join(map(str, region.shape))} but the input volume is "
                f"{'x'.join(map(str, self.volume.shape))}; it must be on the same grid"
            )
        if self.plane is not None:
            cut = np.stack([plane_slice(region, self.plane, i) for i in self.slice_indices])
            return np.pad(cut, [(0, 0)] + [(0, p - n) for p, n in zip(self.padded_shape, cut.shape[1:])])
        x0, y0, z0 = self.roi_start
        sx, sy, sz = self.roi_shape
        box = region[x0:x0 + sx, y0:y0 + sy, z0:z0 + sz]
        return np.pad(box, [(0, p - n) for p, n in zip(self.padded_shape, self.roi_shape)])

    def describe(self) -> dict[str, Any]:
        out = {"volume": self.volume.describe(), "intensity": self.intensity, "window": self.window,
               "window_applied": window_label(self.volume, self.window) if self.volume.channels == 1 else
               [window_label(self.volume, self.window, c) for c in range(self.volume.channels)],
               "roi_start": list(self.roi_start), "roi_shape": list(self.roi_shape),
               "model_input_shape": list(self.padded_shape)}
        if self.plane is not None:
            out["plane"] = self.plane
            out["slices"] = list(self.slice_indices)
        if self.notes:
            out["notes"] = list(self.notes)
        if self.label_names:
            out["label_names"] = {str(k): v for k, v in sorted(self.label_names.items())}
        return out

    def to_volume(self, amap: np.ndarray) -> np.ndarray:
        """A 3D model's ``(a, b, c)`` map (any resolution over the padded box) -> ``(X, Y, Z)`` on the
        volume's grid: nearest-neighbour upsampling to the padded box, cropped back to the box,
        NaN outside the box (drawn as "no data").

        For a 2D model's slices (``plane`` set) ``amap`` is ``(N, a, b)``, one map per slice of
        ``slice_indices`` (any resolution over the padded slice): each is upsampled (nearest) to the
        padded slice, cropped back, and put back where its slice came from (the inverse of
        :func:`plane_slice`); the slices not fed to the model are NaN."""
        if amap.ndim != 3:
            raise ValueError(f"to_volume needs a 3D map, got shape {amap.shape}")
        if self.plane is not None:
            return self._slices_to_volume(amap)
        idx = [np.minimum(((np.arange(n) + 0.5) * m / n).astype(np.int64), m - 1)
               for n, m in zip(self.padded_shape, amap.shape)]
        up = amap[np.ix_(*idx)][tuple(slice(0, s) for s in self.roi_shape)]
        full = np.full(self.volume.shape, np.nan, dtype=np.float32)
        x0, y0, z0 = self.roi_start
        sx, sy, sz = self.roi_shape
        full[x0:x0 + sx, y0:y0 + sy, z0:z0 + sz] = up
        return full


    def _slices_to_volume(self, amap: np.ndarray) -> np.ndarray:
        plane = self.plane
        assert plane is not None
        if amap.shape[0] != len(self.slice_indices):
            raise ValueError(f"{amap.shape[0]} slice maps for {len(self.slice_indices)} slices")
        rows, cols = plane_slice(np.empty(self.volume.shape, dtype=np.bool_), plane, 0).shape
        idx = [np.minimum(((np.arange(n) + 0.5) * m / n).astype(np.int64), m - 1)
               for n, m in zip(self.padded_shape, amap.shape[1:])]
        views = amap[:, idx[0][:rows, None], idx[1][None, :cols]].astype(np.float32)  # (N, rows, cols)
        stored = np.swapaxes(views, -1, -2)[:, ::-1, ::-1]  # the inverse of plane_slice: (N, a, b) of the volume
        full = np.full(self.volume.shape, np.nan, dtype=np.float32)
        where = list(self.slice_indices)
        axis = _PLANE_AXIS[plane]
        np.moveaxis(full, axis, 0)[where] = stored
        return full


def channel_window(spec: str | None, channel: int) -> str | None:
    """The display window of one channel: ``--window a;b;c`` gives one per channel (the last repeats)."""
    if spec is None or ";" not in spec:
        return spec
    parts = [p.strip() for p in spec.split(";")]
    return parts[min(channel, len(parts) - 1)]


def window_label(volume: Volume, window: str, channel: int = 0) -> str:
    kind, params = parse_window(channel_window(window, channel), volume.units)
    if kind == "linear":
        return f"W {params[1]:g} L {params[0]:g}"
    return f"percentile {params[0]:g}-{params[1]:g}"


def _check_batch_bytes(volume: Volume, options: VolumeOptions, spatial_dims: int, factor: int) -> None:
    """Estimate the model input's size from the geometry alone and refuse it above MAX_BATCH_BYTES."""
    shape = volume.shape
    if spatial_dims == 3:
        box = _parse_triple(options.roi_size, "--roi-size") if options.roi_size else shape
        voxels = int(np.prod([-(-min(b, n) // factor) * factor for b, n in zip(box, shape)], dtype=np.int64))
    elif options.slices:
        voxels = int(np.prod(shape, dtype=np.int64))  # every slice of the plane
    else:
        voxels = int(np.prod(shape, dtype=np.int64)) // max(1, min(shape))
    need = voxels * volume.channels * 4
    if need > MAX_BATCH_BYTES:
        raise ImageInputError(
            f"the model input from {volume.source} would take {need / 1024**3:.1f} GiB (limit {MAX_BATCH_BYTES / 1024**3:.0f} GiB); "
            "feed a region with --roi center --roi-size X,Y,Z (or one slice with --slice for a 2D model)"
        )


def _roi_box(shape: tuple[int, int, int], options: VolumeOptions) -> tuple[tuple[int, int, int], tuple[int, int, int], list[str]]:
    if options.roi_size is None:
        return (0, 0, 0), shape, []
    size = _parse_triple(options.roi_size, "--roi-size")
    if any(s < 1 for s in size):
        raise ImageInputError(f"--roi-size must be positive; got {options.roi_size!r}")
    size = (min(size[0], shape[0]), min(size[1], shape[1]), min(size[2], shape[2]))
    if options.roi is None or options.roi.strip().lower() == "center":
        centre = tuple(n // 2 for n in shape)
    else:
        centre = _parse_triple(options.roi, "--roi")
        if any(not 0 <= c < n for c, n in zip(centre, shape)):
            raise ImageInputError(f"--roi {options.roi} is outside the volume (shape {'x'.join(map(str, shape))})")
    start = as_triple(int(min(max(c - s // 2, 0), n - s)) for c, s, n in zip(centre, size, shape))
    note = f"region of interest {'x'.join(map(str, size))} voxels at {','.join(map(str, start))} of {'x'.join(map(str, shape))}"
    return start, size, [note]


def prepare_volume(
    volume: Volume,
    options: VolumeOptions,
    *,
    spatial_dims: int,
    factor: int = 1,
) -> tuple[np.ndarray, VolumeInput]:
    """``volume`` -> ``(N, C, *spatial)`` float32 model batch and the record to map results back.

    The intensity transform runs on the original values; the window is never applied here.
    """
    intensity = options.intensity or "none"
    _check_batch_bytes(volume, options, spatial_dims, factor)
    values = apply_intensity(volume.data, intensity)
    notes: list[str] = []
    labels, label_names, label_notes = (read_label_map(options.labels, volume) if options.labels
                                        else (None, {}, ()))
    if spatial_dims == 3:
        if options.slice or options.slices:
            raise ImageInputError("--slice/--slices are for 2D models; this model takes 3D volumes")
        start, shape, notes = _roi_box(volume.shape, options)
        box = values[:, start[0]:start[0] + shape[0], start[1]:start[1] + shape[1], start[2]:start[2] + shape[2]]
        padded = tuple(-(-n // factor) * factor for n in shape)
        if padded != shape:
            pads = [(0, 0)] + [(0, p - n) for p, n in zip(padded, shape)]
            box = np.pad(box, pads, mode="constant", constant_values=0.0)
            notes.append(
                f"zero-padded {'x'.join(map(str, shape))} to {'x'.join(map(str, padded))} (a multiple of {factor}, "
                "the model's total downsampling); maps are cropped back"
            )
        batch = np.ascontiguousarray(box[None], dtype=np.float32)
        record = VolumeInput(volume=volume, intensity=intensity, window=options.window or "auto", roi_start=start,
                             roi_shape=shape, padded_shape=padded, notes=tuple(notes) + label_notes, labels=labels,
                             label_names=label_names)
        return batch, record
    if spatial_dims != 2:
        raise ImageInputError(f"a volume cannot be fed to a {spatial_dims}D model")
    if options.slice is None and options.slices is None:
        raise ImageInputError(
            f"this model takes 2D images but {volume.source} is a {'x'.join(map(str, volume.shape))} volume; "
            "choose --slice axial:N (or coronal/sagittal) or --slices axial for every slice"
        )
    if options.slice is not None:
        plane, _, text = options.slice.partition(":")
        count = volume.shape[_PLANE_AXIS[plane]]
        index = int(text)
        if not 0 <= index < count:
            raise ImageInputError(f"--slice {options.slice}: the volume has {count} {plane} slices (0..{count - 1})")
        indices: tuple[int, ...] = (index,)
    else:
        plane = options.slices or "axial"
        indices = tuple(range(volume.shape[_PLANE_AXIS[plane]]))
    stack = np.stack([plane_slice(values, plane, i) for i in indices])  # (N, C, rows, cols)
    notes = [f"{plane} slice(s) {indices[0]}..{indices[-1]} in radiological view"]
    rows, cols = stack.shape[2:]
    padded2 = (-(-rows // factor) * factor, -(-cols // factor) * factor)
    if padded2 != (rows, cols):
        stack = np.pad(stack, [(0, 0), (0, 0), (0, padded2[0] - rows), (0, padded2[1] - cols)])
        notes.append(f"zero-padded {rows}x{cols} to {padded2[0]}x{padded2[1]} (bottom/right; a multiple of {factor}, "
                     "the model's total downsampling)")
    record = VolumeInput(volume=volume, intensity=intensity, window=options.window or "auto", roi_start=(0, 0, 0),
                         roi_shape=volume.shape, padded_shape=tuple(stack.shape[2:]), plane=plane, slice_indices=indices,
                         notes=tuple(notes) + label_notes, labels=labels, label_names=label_names)
    return np.ascontiguousarray(stack, dtype=np.float32), record


def total_downsampling(layers: Any) -> int:
    """The model's total downsampling factor from its layers' strides (``LayerInfo`` list).

    The product, over convolution and pooling layers (not transposed convolutions), of each layer's
    largest stride: exact for an encoder path (a U-Net's, a plain CNN's); for branching encoders
    it may overestimate, which only pads more.
    """
    factor = 1
    for info in layers:
        kind = getattr(info, "kind", None)
        stride = getattr(info, "stride", None)
        if kind in ("conv", "pool") and stride:
            factor *= max(1, max(int(s) for s in stride))
    return factor


def probe_downsampling(adapter: Any, channels: int | None, spatial_dims: int, probes: tuple[int, ...] = (32, 64)) -> int:
    """The model's total downsampling, measured: the layers' output sizes on a small zero probe.

    One forward pass on a ``(1, C, 32, 32, 32)`` zero input (``64`` if that fails) keeping only
    the shapes of every layer call: the factor is the largest ``probe / size`` over layer outputs
    (sizes dividing the probe). A module called several times (one pooling layer used at every
    level) is counted at each call, which layer strides alone cannot do. The model is not changed
    (the adapter's capture restores its state). Falls back to :func:`total_downsampling` if every probe fails.
    """
    for probe in probes:
        batch = np.zeros((1, channels or 1, *([probe] * spatial_dims)), dtype=np.float32)
        try:  # every call of every layer (a module used twice reports twice), shapes only
            names = [info.name for info in adapter.layers() if getattr(info, "is_leaf", True)]
            shapes = list(adapter.capture(batch, names, on_activation=lambda _name, _array: None).shapes.values())
        except Exception:  # noqa: BLE001 - the model refuses this probe size: try the next
            continue
        factor = 1
        for shape in shapes:
            if not shape or len(shape) < spatial_dims + 2:
                continue
            sizes = [int(v) for v in shape[-spatial_dims:]]
            if all(0 < v <= probe and probe % v == 0 for v in sizes):
                factor = max(factor, max(probe // v for v in sizes))
        return factor
    return total_downsampling(adapter.layers())


def read_label_map(path: str, volume: Volume, *, what: str = "--label-map") -> tuple[np.ndarray, dict[int, str], tuple[str, ...]]:
    """A label map file on ``volume``'s grid: ``(labels (X, Y, Z) int32, names, notes)``.

    A NIfTI/DICOM/ITK volume must have the scan's shape and affine (values rounded to integers; no
    names). A DICOM Segmentation object (SEG) is placed on the scan's slices by its frames'
    positions (:func:`convscope.io.dicom_seg.read_dicom_seg`): label value = SegmentNumber, names =
    SegmentLabel, notes = how it was read (BINARY, or FRACTIONAL and its threshold).
    """
    from pathlib import Path

    from .dicom_seg import is_dicom_seg, read_dicom_seg
    from .volumes import read_volume

    if is_dicom_seg(path):
        seg = read_dicom_seg(path, volume, what=what)
        return seg.labels, seg.names, seg.notes
    labels = read_volume(Path(path))
    if labels.shape != volume.shape or not np.allclose(labels.affine, volume.affine, atol=1e-3):
        raise ImageInputError(
            f"{what} {Path(path).name} ({'x'.join(map(str, labels.shape))}) is not on the grid of {volume.source} "
            f"({'x'.join(map(str, volume.shape))}, same affine needed); resample the label map to the scan first"
        )
    return np.rint(labels.data[0]).astype(np.int32), {}, ()


def read_labels(path: str, volume: Volume, *, what: str = "--labels") -> np.ndarray:
    """A label map file as ``(X, Y, Z)`` int32 on ``volume``'s grid (same shape and affine required;
    a DICOM SEG is placed by its frames' positions): see :func:`read_label_map`."""
    return read_label_map(path, volume, what=what)[0]


def fit_mask_file(path: str, record: VolumeInput, *, what: str = "--mask") -> np.ndarray:
    """A mask file on the volume's grid -> bool, fitted like the input: ``(*padded_shape)`` for a 3D
    model (ROI crop, zero padding), ``(N, rows, cols)`` for a 2D model's slices (``(rows, cols)`` for one)."""
    region = record.fit_region(read_labels(path, record.volume, what=what) != 0)
    return region[0] if record.plane is not None and region.shape[0] == 1 else region


def dice_scores(prediction: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> dict[str, float | None]:
    """Dice ``2|P∩L| / (|P| + |L|)`` per class (None when the class is in neither)."""
    out: dict[str, float | None] = {}
    for c in classes:
        p, lab = prediction == c, labels == c
        denom = int(p.sum()) + int(lab.sum())
        out[str(c)] = None if denom == 0 else round(2.0 * int((p & lab).sum()) / denom, 6)
    return out
