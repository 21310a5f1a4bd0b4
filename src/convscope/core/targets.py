"""Attribution targets (``cs.targets``): framework-free :class:`~convscope.core.objective.Objective` values.

    t = cs.targets.segmentation(cls=1, mask="liver_mask.png")   # or region=(x0, y0, x1, y1), pixel=(y, x),
                                                                  #    predicted=True, component="largest"
    t = cs.targets.classification(cls=3)                         # cls=None: the top-1 prediction

A target turns the clean forward pass's selected output into the cotangent ``W``: the score of
sample ``n`` is ``sum(W[n] * output[n])`` on the **logits** (when the model ends in a
Sigmoid/Softmax the adapters start from that op's input). Everything "predicted" (the top-1 class,
the predicted mask, its largest connected component) is frozen from the clean pass.
Batches: one target is shared by all samples; :func:`per_sample` gives one per sample (a length
mismatch is an error).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConvscopeError
from .objective import Objective, fit_mask

__all__ = [
    "SegmentationTarget",
    "ClassificationTarget",
    "PerSample",
    "segmentation",
    "classification",
    "per_sample",
    "auto",
    "AutoTarget",
    "read_mask",
]


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask file -> bool array (nonzero = inside): PNG/JPEG/TIFF (any channel nonzero), ``.npy``, or a
    volume through the reader registry (NIfTI, DICOM, ITK: ``(X, Y, Z)`` on the canonical RAS+ grid;
    :meth:`convscope.Scope.cam` fits it to a volume input's ROI, padding or slices like the input)."""
    p = Path(path)
    if not p.exists():
        raise ConvscopeError(f"mask file {str(p)!r} does not exist; give a PNG, .npy or NIfTI mask (nonzero = inside)")
    from ..io.readers import reader_for_path

    reader = reader_for_path(p)
    if reader is not None and reader.volume:
        volume = reader.read(p)
        return np.asarray(volume.data[0]) != 0
    if p.is_dir():
        raise ConvscopeError(f"mask {p.name} is a folder without a DICOM series; give a mask file")
    name = p.name.lower()
    if name.endswith(".npy"):
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ConvscopeError(f"cannot read mask {p.name}: {exc}") from None
        return np.asarray(arr) != 0
    try:
        from PIL import Image

        with Image.open(p) as img:
            arr = np.asarray(img)
    except (OSError, ValueError) as exc:
        raise ConvscopeError(f"cannot read mask {p.name} as an image ({exc}); give a PNG or .npy mask") from None
    if arr.ndim == 3:
        arr = np.any(arr[..., :3] != 0, axis=-1)
    return np.asarray(arr) != 0


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a boolean N-D mask (ties: the first found)."""
    if not mask.any():
        return mask.copy()
    try:
        from scipy import ndimage

        labels, count = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())[1:]
        return labels == (int(np.argmax(sizes)) + 1)
    except ImportError:  # pragma: no cover - scipy is optional
        pass
    seen = np.zeros(mask.shape, dtype=bool)
    best: list[tuple[int, ...]] = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        stack, comp = [start], []
        seen[start] = True
        while stack:
            p = stack.pop()
            comp.append(p)
            for axis in range(mask.ndim):
                for step in (-1, 1):
                    q = list(p)
                    q[axis] += step
                    if 0 <= q[axis] < mask.shape[axis]:
                        t = tuple(q)
                        if mask[t] and not seen[t]:
                            seen[t] = True
                            stack.append(t)
        if len(comp) > len(best):
            best = comp
    out = np.zeros(mask.shape, dtype=bool)
    out[tuple(np.array(best).T)] = True
    return out


@dataclass(frozen=True)
class SegmentationTarget(Objective):
    """A class channel's logits summed (or averaged) over a region of a ``(N, K, *spatial)`` output.

    Attributes:
        cls: class channel; ``None`` = channel 0 for a one-channel output, else each position's
            predicted (arg-max) class, frozen from the clean pass.
        mask: region as an array ``(*spatial)`` / ``(N, *spatial)`` (nearest-resized to the output) or
            a file path (PNG, ``.npy``; nonzero = inside).
        region: box ``(x0, y0, x1, y1)`` in output pixels, ends exclusive (2D outputs).
        pixel: one position ``(y, x)`` (2D) or ``(z, y, x)`` (3D).
        predicted: the region is where the clean pass predicts ``cls``: arg-max over classes, or for a
            one-channel output logit > 0 (> 0.5 when the output lies within [0, 1], i.e. is already a
            probability).
        component: ``"largest"``: only the largest connected component of the predicted region
            (implies ``predicted=True``).
        reduce: ``"sum"`` (default) or ``"mean"`` over the region.
    At most one of mask / region / pixel / predicted; none = every position.
    """

    cls: int | None = None
    mask: Any = field(default=None, compare=False)
    region: tuple[int, int, int, int] | None = None
    pixel: tuple[int, ...] | None = None
    predicted: bool = False
    component: Literal["largest"] | None = None
    reduce: Literal["sum", "mean"] = "sum"
    _mask_array: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.cls is not None and (not isinstance(self.cls, (int, np.integer)) or int(self.cls) < 0):
            raise ConvscopeError(f"cls must be a non-negative class index, got {self.cls!r}")
        if self.component not in (None, "largest"):
            raise ConvscopeError(f"component must be 'largest' or None, got {self.component!r}")
        if self.component is not None and not self.predicted:
            object.__setattr__(self, "predicted", True)
        given = [k for k, v in (("mask", self.mask), ("region", self.region), ("pixel", self.pixel)) if v is not None]
        if self.predicted:
            given.append("predicted")
        if len(given) > 1:
            raise ConvscopeError(f"give at most one of mask, region, pixel, predicted (got {', '.join(given)})")
        if self.reduce not in ("sum", "mean"):
            raise ConvscopeError(f"reduce must be 'sum' or 'mean', got {self.reduce!r}")
        if self.region is not None:
            box = tuple(self.region)
            if len(box) != 4 or not all(isinstance(v, (int, np.integer)) for v in box):
                raise ConvscopeError(f"region must be four integers (x0, y0, x1, y1), got {self.region!r}")
            x0, y0, x1, y1 = (int(v) for v in box)
            if x1 <= x0 or y1 <= y0:
                raise ConvscopeError(f"region ({x0}, {y0}, {x1}, {y1}) is empty: it needs x0 < x1 and y0 < y1")
            object.__setattr__(self, "region", (x0, y0, x1, y1))
        if self.pixel is not None:
            pos = tuple(self.pixel)
            if len(pos) not in (1, 2, 3) or not all(isinstance(v, (int, np.integer)) for v in pos):
                raise ConvscopeError(f"pixel must be integers (y, x) or (z, y, x), got {self.pixel!r}")
            object.__setattr__(self, "pixel", tuple(int(v) for v in pos))
        if self.mask is not None and self._mask_array is None:
            if isinstance(self.mask, (str, os.PathLike)):
                arr = read_mask(self.mask)
            else:
                arr = np.asarray(self.mask)
                if arr.dtype == object or arr.ndim == 0:
                    raise ConvscopeError(f"mask must be a 0/1 array or a file path, got {type(self.mask).__name__}")
            if not np.any(arr):
                raise ConvscopeError("the mask is empty (no nonzero value); give a mask that marks the region")
            object.__setattr__(self, "_mask_array", arr)

    def _region(self, out: np.ndarray) -> np.ndarray:
        n, k = int(out.shape[0]), int(out.shape[1])
        spatial = tuple(int(s) for s in out.shape[2:])
        if self._mask_array is not None:
            return fit_mask(self._mask_array, n, spatial)
        region = np.zeros((n, *spatial), dtype=np.float32)
        if self.region is not None:
            if len(spatial) != 2:
                raise ConvscopeError(f"region=(x0, y0, x1, y1) needs a 2D output; this one is {len(spatial)}D: use mask=")
            x0, y0, x1, y1 = self.region
            h, w = spatial
            if x0 >= w or y0 >= h or x1 <= 0 or y1 <= 0:
                raise ConvscopeError(f"region {self.region} lies outside the output ({w}x{h} pixels, W x H)")
            region[:, max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = 1.0
            return region
        if self.pixel is not None:
            if len(self.pixel) != len(spatial):
                raise ConvscopeError(
                    f"pixel {self.pixel} has {len(self.pixel)} coordinates but the output has {len(spatial)} spatial axes"
                )
            if any(not 0 <= p < s for p, s in zip(self.pixel, spatial)):
                raise ConvscopeError(f"pixel {self.pixel} lies outside the output of spatial size {spatial}")
            key: tuple[slice | int, ...] = (slice(None), *(int(v) for v in self.pixel))
            region[key] = 1.0
            return region
        if self.predicted:
            for i in range(n):
                if k == 1:
                    values = out[i, 0]
                    threshold = 0.5 if values.min() >= 0 and values.max() <= 1 else 0.0
                    pred = values > threshold
                else:
                    pred = np.argmax(out[i], axis=0) == self._channel(k)
                if self.component == "largest":
                    pred = _largest_component(pred)
                if not pred.any():
                    raise ConvscopeError(
                        f"sample {i}: class {self._channel(k)} is predicted nowhere, so the predicted region is empty; "
                        "give a mask, region or pixel instead"
                    )
                region[i] = pred
            return region
        region[:] = 1.0
        return region

    def _channel(self, k: int) -> int:
        if self.cls is not None:
            if int(self.cls) >= k:
                raise ConvscopeError(f"class {self.cls} does not exist: the output has {k} channel(s), 0..{k - 1}")
            return int(self.cls)
        if k == 1:
            return 0
        raise ConvscopeError("predicted=True needs cls= when the output has several classes")

    def cotangent(self, output: np.ndarray) -> np.ndarray:
        out = np.asarray(output, dtype=np.float32)
        if out.ndim < 3:
            raise ConvscopeError(
                f"a segmentation target needs a spatial output (N, K, *spatial); this output has shape {out.shape}: "
                "use cs.targets.classification"
            )
        n, k = int(out.shape[0]), int(out.shape[1])
        weights = np.zeros(out.shape, dtype=np.float32)
        if self.cls is not None or k == 1:
            weights[:, self._channel(k)] = 1.0
        else:
            np.put_along_axis(weights, np.argmax(out, axis=1)[:, None], 1.0, axis=1)
        region = self._region(out)
        area = region.reshape(n, -1).sum(axis=1)
        if np.any(area <= 0):
            raise ConvscopeError("the target region is empty for at least one sample; give a non-empty region")
        if self.reduce == "mean":
            region = region / area.reshape((n,) + (1,) * (region.ndim - 1))
        return np.ascontiguousarray(weights * region[:, None], dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.region is not None:
            region: Any = {"box_x0_y0_x1_y1": list(self.region)}
        elif self.pixel is not None:
            region = {"pixel": list(self.pixel)}
        elif self.mask is not None:
            region = {"mask": str(self.mask) if isinstance(self.mask, (str, os.PathLike)) else "array"}
        elif self.predicted:
            region = {"predicted": True, "component": self.component or "all"}
        else:
            region = "all"
        info.update(
            kind="segmentation",
            **{"class": "predicted" if self.cls is None else int(self.cls)},
            region=region,
            reduce=self.reduce,
            score="logits" if self.from_logits else "output",
        )
        return info


@dataclass(frozen=True)
class ClassificationTarget(Objective):
    """The logit of one class of an ``(N, K)`` output; ``cls=None`` = each sample's top-1 (frozen)."""

    cls: int | None = None

    def __post_init__(self) -> None:
        if self.cls is not None and (not isinstance(self.cls, (int, np.integer)) or int(self.cls) < 0):
            raise ConvscopeError(f"cls must be a non-negative class index, got {self.cls!r}")

    def cotangent(self, output: np.ndarray) -> np.ndarray:
        out = np.asarray(output, dtype=np.float32)
        if out.ndim != 2:
            raise ConvscopeError(
                f"a classification target needs an (N, K) output; this output has shape {out.shape}: "
                "use cs.targets.segmentation for per-pixel outputs"
            )
        n, k = out.shape
        weights = np.zeros(out.shape, dtype=np.float32)
        if self.cls is None:
            weights[np.arange(n), np.argmax(out, axis=1)] = 1.0
        else:
            if int(self.cls) >= k:
                raise ConvscopeError(f"class {self.cls} does not exist: the output has {k} classes, 0..{k - 1}")
            weights[:, int(self.cls)] = 1.0
        return weights

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(kind="classification", **{"class": "top-1" if self.cls is None else int(self.cls)})
        return info


@dataclass(frozen=True)
class PerSample(Objective):
    """One target per sample of the batch (``targets[i]`` scores sample ``i``)."""

    targets: tuple[Objective, ...] = ()

    def __post_init__(self) -> None:
        if not self.targets:
            raise ConvscopeError("per_sample needs at least one target")
        outs = {t.output for t in self.targets}
        logits = {t.from_logits for t in self.targets}
        if len(outs) > 1 or len(logits) > 1:
            raise ConvscopeError("all per-sample targets must select the same output tensor (output=, from_logits=)")
        object.__setattr__(self, "output", self.targets[0].output)
        object.__setattr__(self, "from_logits", self.targets[0].from_logits)

    def cotangent(self, output: np.ndarray) -> np.ndarray:
        out = np.asarray(output, dtype=np.float32)
        if out.shape[0] != len(self.targets):
            raise ConvscopeError(
                f"{len(self.targets)} targets were given for a batch of {out.shape[0]} samples; "
                "give one target per sample or one shared target"
            )
        return np.concatenate([t.cotangent(out[i : i + 1]) for i, t in enumerate(self.targets)], axis=0)

    def describe(self) -> dict[str, Any]:
        return {"kind": "per_sample", "targets": [t.describe() for t in self.targets]}


@dataclass(frozen=True)
class AutoTarget(Objective):
    """The default target: :class:`SegmentationTarget` (predicted class, every position) for a spatial
    output, :class:`ClassificationTarget` (top-1) for an ``(N, K)`` output; ``cls`` fixes the class."""

    cls: int | None = None

    def _pick(self, output: np.ndarray) -> Objective:
        if np.asarray(output).ndim > 2:
            return SegmentationTarget(output=self.output, from_logits=self.from_logits, cls=self.cls)
        return ClassificationTarget(output=self.output, from_logits=self.from_logits, cls=self.cls)

    def cotangent(self, output: np.ndarray) -> np.ndarray:
        chosen = self._pick(output)
        object.__setattr__(self, "_chosen", chosen.describe())
        return chosen.cotangent(output)

    def describe(self) -> dict[str, Any]:
        chosen = getattr(self, "_chosen", None)
        if chosen is not None:
            return dict(chosen)
        return {**super().describe(), "kind": "auto", "class": "predicted" if self.cls is None else int(self.cls)}


def auto(cls: int | None = None, *, output: int | str | None = None) -> AutoTarget:
    """Segmentation target for spatial outputs, classification target otherwise (see :class:`AutoTarget`)."""
    return AutoTarget(output=output, cls=cls)


def segmentation(
    cls: int | None = None,
    *,
    mask: Any = None,
    region: Sequence[int] | None = None,
    pixel: Sequence[int] | None = None,
    predicted: bool = False,
    component: Literal["largest"] | None = None,
    reduce: Literal["sum", "mean"] = "sum",
    output: int | str | None = None,
    from_logits: bool = True,
) -> SegmentationTarget:
    """A segmentation target; see :class:`SegmentationTarget`."""
    return SegmentationTarget(
        output=output,
        from_logits=from_logits,
        cls=cls,
        mask=mask,
        region=tuple(region) if region is not None else None,  # type: ignore[arg-type]
        pixel=tuple(pixel) if pixel is not None else None,
        predicted=predicted,
        component=component,
        reduce=reduce,
    )


def classification(cls: int | None = None, *, output: int | str | None = None, from_logits: bool = True) -> ClassificationTarget:
    """A classification target: the logit of ``cls`` (default: each sample's top-1 class)."""
    return ClassificationTarget(output=output, from_logits=from_logits, cls=cls)


def per_sample(targets: Sequence[Objective]) -> PerSample:
    """One target per sample of the batch."""
    return PerSample(targets=tuple(targets))
