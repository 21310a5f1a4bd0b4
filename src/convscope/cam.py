"""Class activation maps at any layer: ``scope.cam(image, layer=..., target=..., method=...)``.

All gradient methods for all requested layers come from ONE forward + ONE backward pass
(:meth:`~convscope.adapters.base.SupportsGradients.gradients`); Eigen-CAM reuses those activations
(or one forward pass); Score-CAM adds batched forward passes of masked inputs (the count printed
up front). The numbers are computed in :mod:`convscope.core.attribution`; this module orchestrates,
holds results (:class:`CamResult`, :class:`CamSet`) and draws them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .core import attribution as at
from .core.objective import Objective
from .core.view import FIRST_AXIS, MiddleView

if TYPE_CHECKING:
    from .render.picture import Picture
from .errors import ConvscopeError

__all__ = ["CamResult", "CamSet", "compute_cams", "render_cam_row", "fit_target_masks", "chunk_target", "merge_cam_sets",
           "DEFAULT_SCORECAM_BUDGET_MB"]

DEFAULT_SCORECAM_BUDGET_MB = 256
"""Score-CAM's memory budget for one chunk of masked inputs (their size x 16, a rough allowance for
the model's intermediate tensors)."""


@dataclass(frozen=True, eq=False)
class CamResult:
    """One map: a method at a layer for a target.

    Attributes:
        layer: layer name (``name#k`` for a module's k-th extra call; ``"input"`` for input methods).
        method: canonical method name (see :data:`convscope.core.attribution.METHODS`).
        raw: ``(N, *layer_spatial)`` float32, the signed map as the method defines it, before ReLU,
            resampling or normalisation.
        data: ``(N, *input_spatial)`` float32 after the stated post-processing (:attr:`post`).
        scale: ``(N, 2)`` float32 ``[lo, hi]`` per image: ``data = (relu(resampled raw) - lo) / (hi - lo)``.
        target: the target's description (class, region, reduction, output tensor).
        output_name: the tensor the gradient (or score) started from.
        post: the post-processing.
        notes: why a map is empty, per sample (e.g. the gradient is zero at this layer).
        display: ``(N, H, W, 3)`` uint8 pictures of the input (3D: :attr:`view`'s slice), or None.
        view: for 3D maps, how they become pictures (:class:`~convscope.core.view.MiddleView`: a
            volume's axial middle plane in radiological view); None: the middle slice along the
            first spatial axis.
    """

    layer: str
    method: str
    raw: np.ndarray
    data: np.ndarray
    scale: np.ndarray
    target: dict[str, Any]
    output_name: str
    post: at.PostProcess
    notes: tuple[str, ...] = ()
    display: np.ndarray | None = field(default=None, repr=False)
    view: MiddleView | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"CamResult({self.method} at {self.layer!r}: raw {self.raw.shape}, data {self.data.shape}, "
            f"from {self.output_name}" + (f", {len(self.notes)} note(s)" if self.notes else "") + ")"
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready: method, layer, target, output tensor, post-processing, scale, raw range, notes."""
        return {
            "method": self.method,
            "layer": self.layer,
            "target": self.target,
            "output_tensor": self.output_name,
            "post_processing": self.post.describe(),
            "scale": self.scale.tolist(),
            "raw_range": [[float(r.min()), float(r.max())] for r in self.raw],
            "raw_shape": list(self.raw.shape),
            "shape": list(self.data.shape),
            "notes": list(self.notes),
        }

    def slice2d(self, sample: int = 0) -> tuple[np.ndarray, str]:
        """``(h, w)`` map of one sample to draw and what it is (3D: :attr:`view`'s slice, e.g. "axial slice
        z=40 of the input"; 1D: a strip)."""
        if not -self.data.shape[0] <= sample < self.data.shape[0]:
            raise ConvscopeError(f"sample {sample} is out of range: the batch has {self.data.shape[0]} sample(s)")
        m = self.data[sample]
        if m.ndim == 3:
            view = self.view or FIRST_AXIS
            return view.take(m), view.label(m.shape)
        if m.ndim == 1:
            return np.repeat(m[None], max(8, m.shape[0] // 8), axis=0), "1D map"
        return m, ""

    def overlay(
        self,
        image: Any = None,
        *,
        sample: int = 0,
        cmap: str = "jet",
        alpha: float = 0.5,
        colorbar: bool = True,
    ) -> Any:
        """The map colour-mapped over the input picture, with a colour scale underneath.

        Args:
            image: ``(H, W, 3)`` / ``(H, W)`` uint8 picture (default: the input the map was made for).
            sample: which sample of the batch.
            cmap: colormap name.
            alpha: weight of the heat map in ``[0, 1]``.
            colorbar: draw the colour scale with its values (what 0 and 1 of ``data`` mean).

        Returns:
            :class:`~convscope.render.picture.Picture` with ``meta`` method, layer, scale.
        """
        amap, what = self.slice2d(sample)
        if image is None:
            if self.display is not None:
                image = self.display[min(sample, self.display.shape[0] - 1)]
            else:
                image = np.full((*amap.shape, 3), 128, dtype=np.uint8)
        if not hasattr(image, "dtype"):
            from .io.images import to_display_image

            image = to_display_image(image)
        lo, hi = (float(v) for v in self.scale[sample])
        meta: dict[str, Any] = {"kind": "cam", "method": self.method, "layer": self.layer, "sample": sample}
        aspect = None
        if self.data.ndim == 4:
            view = self.view or FIRST_AXIS
            meta["view"] = view.describe()
            shape = tuple(self.data.shape[1:])

            def aspect(pixels: np.ndarray) -> np.ndarray:
                return view.stretch(pixels, shape)
        return _overlay_picture(
            np.asarray(image), amap, fixed=self.post.normalize != "none", lo=lo, hi=hi, cmap=cmap, alpha=alpha,
            colorbar=colorbar, title=f"{self.method} at {self.layer}" + (f" ({what})" if what else ""),
            meta=meta, aspect=aspect,
        )


def _overlay_picture(
    image: np.ndarray,
    amap: np.ndarray,
    *,
    fixed: bool,
    lo: float,
    hi: float,
    cmap: str,
    alpha: float,
    colorbar: bool,
    title: str,
    meta: dict[str, Any],
    aspect: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Any:
    """Blend ``amap`` over ``image``: with ``fixed``, ``amap`` is already in ``[0, 1]`` (the CAM's own
    scale, drawn as is); otherwise :func:`render_overlay` normalises it on its own range. ``aspect``:
    applied to the blended picture (a 3D view's physical aspect) before the colour bar."""
    from .render.colormap import apply_colormap, get_colormap
    from .render.flow import blend
    from .render.grid import render_overlay
    from .render.picture import Picture

    if fixed:
        base = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        base = np.ascontiguousarray(base[:, :, :3])
        unit = amap
        if unit.shape != base.shape[:2]:
            unit = at.resize_linear(unit[None], base.shape[:2])[0]
        heat = apply_colormap(np.clip(unit, 0.0, 1.0), cmap)
        pixels = blend(base, heat, float(alpha))
        value_lo, value_hi = lo, hi
    else:
        pic = render_overlay(image, amap, cmap=cmap, alpha=alpha, scale="minmax")
        pixels = pic.pixels
        finite = amap[np.isfinite(amap)]
        value_lo, value_hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if aspect is not None:
        pixels = aspect(pixels)
    if colorbar:
        pixels = _with_colorbar(pixels, get_colormap(cmap), value_lo, value_hi)
    info = dict(meta)
    info.update(cmap=cmap, alpha=float(alpha), value_range=[value_lo, value_hi], title=title)
    return Picture(pixels=np.ascontiguousarray(pixels), meta=info)


def _with_colorbar(
    pixels: np.ndarray, lut: np.ndarray, lo: float, hi: float, labels: tuple[str, str] | None = None
) -> np.ndarray:
    """``pixels`` with a colour bar strip and its end values (or ``labels``) underneath."""
    from PIL import Image, ImageDraw

    h, w = pixels.shape[:2]
    bar_h, text_h = 8, 12
    ramp = np.linspace(0.0, 1.0, max(w - 8, 2))
    idx = np.clip((ramp * (lut.shape[0] - 1) + 0.5).astype(int), 0, lut.shape[0] - 1)
    out = np.full((h + bar_h + text_h + 6, w, 3), 255, dtype=np.uint8)
    out[:h] = pixels
    out[h + 3 : h + 3 + bar_h, 4 : 4 + len(idx)] = lut[idx][None]
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    left, right = labels or (f"{lo:.3g}", f"{hi:.3g}")
    draw.text((4, h + 4 + bar_h), left, fill=(0, 0, 0))
    width = int(draw.textlength(right)) if hasattr(draw, "textlength") else 6 * len(right)
    draw.text((max(4, w - 4 - width), h + 4 + bar_h), right, fill=(0, 0, 0))
    return np.asarray(img)


class CamSet(Mapping[tuple[str, str], CamResult]):
    """Several maps of one call, keyed ``(layer, method)``, in request order.

    Attributes:
        target: the target's description; output_name: the tensor gradients started from;
        passes: forward/backward passes used (``{"forward": F, "backward": B}``).
    """

    def __init__(self, results: Sequence[CamResult], *, passes: dict[str, int], target: dict[str, Any],
                 chunks: dict[str, Any] | None = None, view: MiddleView | None = None) -> None:
        self._items = {(r.layer, r.method): r for r in results}
        self.view = view
        """For 3D maps: how they are drawn (:class:`~convscope.core.view.MiddleView`), else None."""
        self.passes = dict(passes)
        self.target = target
        self.chunks = chunks
        """How the batch went through the model when it was split (``ChunkPlan.describe()``), else None."""

    def __getitem__(self, key: tuple[str, str]) -> CamResult:
        if key not in self._items:
            raise KeyError(f"no map {key!r}; maps: {', '.join(f'{k[0]}/{k[1]}' for k in self._items)}")
        return self._items[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"CamSet({len(self)} maps: {', '.join(f'{k[1]}@{k[0]}' for k in self._items)})"

    def get_map(self, layer: str, method: str = "gradcam") -> CamResult:
        return self[(layer, at.check_methods(method)[0])]

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(k[0] for k in self._items))

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(k[1] for k in self._items))

    @property
    def notes(self) -> list[str]:
        return [f"{r.method} at {r.layer}: {n}" for r in self._items.values() for n in r.notes]

    def figure(self, *, sample: int = 0, cmap: str = "jet", alpha: float = 0.5, thumb: int = 112) -> Picture:
        """All maps of one sample: a row per method, a tile per layer, each row with its colour scale.

        With a shared scale (``shared=True``) the bar gives its values; with the default per-map
        scale, 1 is each map's own maximum (see :attr:`CamResult.scale`).
        """
        from .render.picture import Picture

        rows = []
        for method in self.methods:
            cams = [r for (layer, m), r in self._items.items() if m == method]
            tiles = [(r.layer, f"1 = {float(r.scale[sample][1]):.3g}",
                      r.overlay(sample=sample, cmap=cmap, alpha=alpha, colorbar=False).pixels) for r in cams]
            shared = cams[0].post.scope == "shared" or len(cams) == 1
            lo, hi = (float(v) for v in cams[0].scale[sample])
            where = f" - {(cams[0].view or FIRST_AXIS).label()}" if cams[0].data.ndim == 4 else ""
            rows.append(render_cam_row(tiles, title=f"{method}{where}", cmap=cmap, lo=lo, hi=hi, thumb=thumb,
                                       labels=None if shared else ("0", "1 = each map's max")).pixels)
        width = max(r.shape[1] for r in rows)
        canvas = np.full((sum(r.shape[0] for r in rows), width, 3), 255, dtype=np.uint8)
        y = 0
        for r in rows:
            canvas[y : y + r.shape[0], : r.shape[1]] = r
            y += r.shape[0]
        return Picture(pixels=canvas, meta={"kind": "cam_set", "sample": sample, "methods": self.methods,
                                            "layers": self.layers})

    def manifest(self) -> dict[str, Any]:
        out = {"target": self.target, "passes": self.passes, "maps": [r.describe() for r in self._items.values()]}
        if self.view is not None:
            out["view"] = self.view.describe()
        return out

    def save(self, out_dir: str | os.PathLike[str], *, arrays: bool = False, cmap: str = "jet", alpha: float = 0.5,
             volume: Any = None) -> Path:
        """Write ``<layer>.<method>[.sN].png`` overlays (and with ``arrays`` ``<layer>.<method>.npz``
        holding ``raw`` and ``cam``) plus ``manifest.json``; returns the manifest path.

        ``volume``: the input's :class:`~convscope.io.volume_prep.VolumeInput` when it was a scan fed to
        a 3D model: each map is also drawn over the original intensities in the axial, coronal and
        sagittal planes (radiological, orientation letters, physical aspect) as
        ``<layer>.<method>[.sN].planes.png``, and the manifest records the scan's geometry.
        """
        from .io.output import OutputDir, safe_filename

        info: dict[str, Any] = {"command": "cam", "target": self.target, "passes": self.passes}
        if volume is not None:
            info["volume"] = volume.describe()
        if self.chunks is not None:
            info["chunks"] = self.chunks
        if self.view is not None and any(r.data.ndim == 4 for r in self._items.values()):
            info["view"] = self.view.describe()
        stack = volume is not None and volume.plane is not None and len(volume.slice_indices) > 1
        with OutputDir(out_dir, info=info) as out:
            for r in self._items.values():
                stem = safe_filename(f"{r.layer}.{r.method}")
                for s in range(r.data.shape[0]):
                    rel = out.unique_name(stem + (f".s{s}" if r.data.shape[0] > 1 else ""), ".png")
                    out.add_picture(rel, r.overlay(sample=s, cmap=cmap, alpha=alpha), **_entry(r), sample=s)
                    if volume is not None and volume.plane is None and r.data.ndim == 4:
                        from .volume_views import map_planes

                        pic = map_planes(volume, r.data[s], f"{r.method} at {r.layer}",
                                         reduce=f"CAM, {r.post.describe()['normalize']}-normalised,")
                        rel = out.unique_name(stem + (f".s{s}" if r.data.shape[0] > 1 else "") + ".planes", ".png")
                        out.add_picture(rel, pic, **{**_entry(r), "kind": "cam_planes"}, sample=s,
                                        convention="radiological",
                                        geometry=volume.describe(), resampling=pic.meta.get("resampling"))
                if stack and r.data.ndim == 3:  # a 2D model's CAM of every slice: the stack on the scan's planes
                    from .volume_views import map_planes

                    pic = map_planes(volume, r.data, f"{r.method} at {r.layer}",
                                     reduce=f"CAM of each slice, {r.post.describe()['normalize']}-normalised,")
                    rel = out.unique_name(stem + ".planes", ".png")
                    out.add_picture(rel, pic, **{**_entry(r), "kind": "cam_planes"}, convention="radiological",
                                    geometry=volume.describe(), resampling="nearest to the input grid, padding cropped")
                if arrays:
                    rel = out.unique_name(stem, ".npz")
                    out.add_arrays(rel, {"raw": r.raw, "cam": r.data}, **{**_entry(r), "kind": "cam_arrays"})
        return Path(out_dir) / "manifest.json"


def _entry(r: CamResult) -> dict[str, Any]:
    d = r.describe()
    return {
        "kind": "cam",
        "method": r.method,
        "layer": r.layer,
        "target": d["target"],
        "output_tensor": d["output_tensor"],
        "post_processing": d["post_processing"],
        "scale": d["scale"],
        "raw_range": d["raw_range"],
        "shape": d["shape"],
        "notes": d["notes"] or None,
    }


# ------------------------------------------------------------------------------------------------
# computing
# ------------------------------------------------------------------------------------------------


def fit_target_masks(target: Objective, record: Any) -> Objective:
    """``target`` with every mask file that is a volume (NIfTI, DICOM, ITK) read on the input volume's
    grid and fitted like the input (:meth:`~convscope.io.volume_prep.VolumeInput.fit_region`: ROI crop,
    zero padding, or a 2D model's slices). ``record``: the input's VolumeInput (None: ``target`` as is)."""
    import dataclasses

    from .core.targets import PerSample, SegmentationTarget

    if record is None:
        return target
    if isinstance(target, PerSample):
        return dataclasses.replace(target, targets=tuple(fit_target_masks(t, record) for t in target.targets))
    if not isinstance(target, SegmentationTarget) or not isinstance(target.mask, (str, os.PathLike)):
        return target
    from .io.readers import reader_for_path
    from .io.volume_prep import fit_mask_file

    reader = reader_for_path(target.mask)
    if reader is None or not reader.volume:
        return target
    fitted = fit_mask_file(str(target.mask), record, what="the mask")
    if not fitted.any():
        raise ConvscopeError(f"the mask {Path(target.mask).name} is empty inside the region fed to the model "
                             "(--roi / --slice); choose a region that contains it")
    return dataclasses.replace(target, _mask_array=fitted)


def chunk_target(target: Objective, start: int, stop: int, total: int) -> Objective:
    """``target`` for samples ``start..stop`` of a batch of ``total`` fed in chunks: per-sample targets
    and per-sample masks (``(total, *spatial)``, e.g. a label map fitted to a volume's slices) are cut
    to the chunk; targets that treat every sample alike are returned as they are."""
    import dataclasses

    from .core.targets import PerSample, SegmentationTarget

    if isinstance(target, PerSample) and len(target.targets) == total:
        return dataclasses.replace(target, targets=tuple(target.targets[start:stop]))
    if isinstance(target, SegmentationTarget) and target._mask_array is not None:
        arr = np.asarray(target._mask_array)
        if arr.ndim >= 3 and arr.shape[0] == total and total > 1:
            return dataclasses.replace(target, _mask_array=arr[start:stop])
    return target


_SAMPLE_NOTE = re.compile(r"^sample (\d+):")


def merge_cam_sets(parts: Sequence[tuple[int, CamSet]], post: at.PostProcess) -> CamSet:
    """CAM sets of consecutive chunks of one batch (``[(start, CamSet)]``) as the set of the whole batch:
    every map's ``raw``, ``data`` and ``scale`` joined along the batch axis, per-sample notes renumbered,
    passes added. A ``shared`` scale is recomputed over every map of the whole batch (the raw maps are
    kept), so the result equals one pass over the batch."""
    first = parts[0][1]
    results: list[CamResult] = []
    for key, head in first._items.items():
        pieces = [(start, cams[key]) for start, cams in parts]
        notes: list[str] = []
        for start, r in pieces:
            for note in r.notes:
                match = _SAMPLE_NOTE.match(note)
                text = _SAMPLE_NOTE.sub(f"sample {int(match.group(1)) + start}:", note) if match else note
                if text not in notes:
                    notes.append(text)
        display = None if any(r.display is None for _, r in pieces) else np.concatenate([r.display for _, r in pieces])
        results.append(dataclasses.replace(
            head, raw=np.concatenate([r.raw for _, r in pieces]), data=np.concatenate([r.data for _, r in pieces]),
            scale=np.concatenate([r.scale for _, r in pieces]), notes=tuple(notes), display=display))
    if post.scope == "shared" and results:
        data, scales = at.postprocess([r.raw for r in results], tuple(results[0].data.shape[1:]), post)
        results = [dataclasses.replace(r, data=d, scale=sc) for r, d, sc in zip(results, data, scales)]
    passes = {k: sum(cams.passes.get(k, 0) for _, cams in parts) for k in first.passes}
    return CamSet(results, passes=passes, target=first.target, view=first.view)


def _split_call(name: str) -> tuple[str, int]:
    base, sep, k = name.rpartition("#")
    if sep and k.isdigit():
        return base, int(k)
    return name, 0


def _chunk_size(batch: np.ndarray, budget_mb: float) -> int:
    per = int(np.prod(batch.shape[1:])) * 4 * 16
    return int(max(1, min(256, (budget_mb * 2**20) // max(per, 1))))


def compute_cams(
    adapter: Any,
    batch: np.ndarray,
    layers: Sequence[str],
    target: Objective,
    methods: str | Sequence[str] = "gradcam",
    *,
    post: at.PostProcess | None = None,
    display: np.ndarray | None = None,
    scorecam_budget_mb: float = DEFAULT_SCORECAM_BUDGET_MB,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    view: MiddleView | None = None,
) -> CamSet:
    """Every ``method`` at every layer of ``layers`` for ``target`` on ``batch``.

    Args:
        adapter: a model adapter; gradient methods need :class:`~convscope.adapters.base.SupportsGradients`.
        batch: ``(N, C, *spatial)`` float32 model input.
        layers: layer names (``name#k`` addresses a module's k-th extra call).
        target: an :class:`~convscope.core.objective.Objective` (see :mod:`convscope.core.targets`).
        methods: names from :data:`~convscope.core.attribution.METHODS`.
        post: post-processing (default :class:`~convscope.core.attribution.PostProcess()`).
        display: ``(N, H, W, 3)`` uint8 input pictures for overlays.
        scorecam_budget_mb: memory budget of one chunk of Score-CAM's masked inputs.
        progress: Score-CAM progress bar on stderr.
        echo: where to print Score-CAM's pass count (default stderr).
        view: for a 3D batch, how its maps are drawn (``PreparedInput.view``: a volume's axial middle
            plane); None: the middle slice along the first spatial axis.
    Passes: one forward + one backward for all gradient and input methods and Eigen-CAM; Score-CAM
    adds ``sum_layers N*C`` forward-passed masked inputs, batched.
    """
    from .adapters.base import require

    post = post or at.PostProcess()
    names = at.check_methods(methods)
    arr = np.ascontiguousarray(batch, dtype=np.float32)
    grad_methods = [m for m in names if m in at.GRADIENT_METHODS]
    input_methods = [m for m in names if m in at.INPUT_METHODS]
    layer_methods = [m for m in names if m not in at.INPUT_METHODS]
    keys = list(dict.fromkeys(layers))
    if layer_methods and not keys:
        raise ConvscopeError("no layer to explain; give --layer (a convolution, e.g. the last encoder or decoder conv)")
    modules = list(dict.fromkeys(_split_call(k)[0] for k in keys))
    echo = echo or (lambda text: print(text, file=sys.stderr))
    passes = {"forward": 0, "backward": 0}
    acts: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {}
    lg = None
    output_name = "output"
    if grad_methods or input_methods:
        require(adapter, "gradients", what=", ".join(grad_methods + input_methods) + " (gradients)")
        # exact keys: "name#k" asks the adapter for that call only (no gradients kept for the module's other calls)
        lg = adapter.gradients(arr, keys if layer_methods else [], target, with_input=bool(input_methods))
        passes["forward"] += 1
        passes["backward"] += 1
        acts, grads, output_name = lg.activations, lg.gradients, lg.output_name
    forward_only = [m for m in names if m in at.FORWARD_METHODS]
    clean_out = None
    if forward_only and lg is None or "scorecam" in names:
        cap = adapter.capture(arr, modules if lg is None else [])  # with gradients: only the clean output
        passes["forward"] += 1
        if lg is None:
            acts = cap.activations
        clean_out = cap.output
    for key in keys:
        if layer_methods and key not in acts:
            base, k = _split_call(key)
            calls = [a for a in acts if _split_call(a)[0] == base]
            raise ConvscopeError(
                f"layer {key!r} was not produced in the forward pass"
                + (f"; its calls are: {', '.join(calls)}" if calls else f" (module {base!r} did not run)")
            )
    Row = tuple[str, str, np.ndarray, list[str], str]  # layer, method, raw, notes, output name

    def layer_maps(key: str) -> list[Row]:
        a = acts[key]
        extra = [n for n in acts if n != key and _split_call(n)[0] == _split_call(key)[0]]
        call_note = [f"module called {len(extra) + 1} times; this map is the call {key}, others: {', '.join(extra)}"] if extra else []
        rows: list[Row] = []
        fused = at.gradient_cams([m for m in layer_methods if m in at.GRADIENT_METHODS], a, grads[key]) if grads else {}
        for m in layer_methods:
            if m in at.GRADIENT_METHODS:
                raw = fused[m]
                rows.append((key, m, raw, call_note + at.map_notes(raw, grads=grads[key], relu=post.relu), output_name))
            elif m == "eigencam":
                raw = at.eigencam(a)
                rows.append((key, m, raw, call_note + at.map_notes(raw, relu=post.relu), "none (no target: activations only)"))
        return rows

    present = [k for k in keys if k in acts]
    raws: list[Row] = []
    # layers in parallel threads (numpy releases the GIL in its large array loops); results in request order
    workers = min(len(present), os.cpu_count() or 1)
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convscope-cam") as pool:
            for rows in pool.map(layer_maps, present):
                raws.extend(rows)
    else:
        for key in present:
            raws.extend(layer_maps(key))
    if "scorecam" in names:
        raws.extend(_scorecam(adapter, arr, keys, acts, target, clean_out, scorecam_budget_mb, progress, echo, passes, post))
    if input_methods:
        assert lg is not None and lg.input_gradient is not None
        for m in input_methods:
            raw = at.input_x_gradient(arr, lg.input_gradient) if m == "inputxgrad" else at.saliency(lg.input_gradient)
            raws.append(("input", m, raw, at.map_notes(raw, grads=lg.input_gradient, relu=post.relu), output_name))
    size = tuple(arr.shape[2:])
    if post.scope == "shared":
        data, scales = at.postprocess([r[2] for r in raws], size, post)
    else:
        data, scales = [], []
        for r in raws:
            d, s = at.postprocess([r[2]], size, post)
            data += d
            scales += s
    described = target.describe()
    results = [
        CamResult(layer=layer, method=m, raw=raw, data=d, scale=s, target=described, output_name=oname, post=post,
                  notes=tuple(notes), display=display, view=view if arr.ndim == 5 else None)
        for (layer, m, raw, notes, oname), d, s in zip(raws, data, scales)
    ]
    return CamSet(results, passes=passes, target=described, view=view if arr.ndim == 5 else None)


def _scorecam(
    adapter: Any,
    arr: np.ndarray,
    keys: Sequence[str],
    acts: Mapping[str, np.ndarray],
    target: Objective,
    clean_out: np.ndarray | None,
    budget_mb: float,
    progress: bool,
    echo: Callable[[str], None],
    passes: dict[str, int],
    post: at.PostProcess,
) -> list[tuple[str, str, np.ndarray, list[str], str]]:
    if clean_out is None:
        raise ConvscopeError("Score-CAM needs the model's output, but the forward pass returned no tensor")
    weights = np.asarray(target.cotangent(clean_out), dtype=np.float32)
    n = arr.shape[0]
    baseline = (weights.reshape(n, -1).astype(np.float64) * clean_out.reshape(n, -1)).sum(axis=1)
    shapes = [acts[k].shape for k in keys if k in acts]
    total = at.scorecam_passes(shapes) - 1
    chunk = _chunk_size(arr, budget_mb)
    batches = sum(-(-int(s[0]) * int(s[1]) // chunk) for s in shapes)
    echo(f"Score-CAM: {total} masked inputs in at least {batches} forward pass(es) of up to {chunk} "
         f"(budget {budget_mb:g} MiB; the batch size is tuned for throughput within it)")
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="Score-CAM", unit="input", file=sys.stderr, leave=False)
        except ImportError:  # pragma: no cover
            bar = None

    def score(masked: np.ndarray, sample: np.ndarray) -> np.ndarray:
        out = adapter.capture(masked, []).output
        passes["forward"] += 1
        if out is None or out.shape[1:] != clean_out.shape[1:]:
            raise ConvscopeError("Score-CAM: the model's output changed shape for a masked input")
        w = weights[sample]
        return (w.reshape(len(sample), -1).astype(np.float64) * out.reshape(len(sample), -1)).sum(axis=1)

    out = []
    sizes: list[int] = []
    try:
        for key in keys:
            if key not in acts:
                continue
            plan = at.BatchTuner(chunk)
            raw = at.scorecam(acts[key], arr, score, baseline, chunk=plan, progress=bar.update if bar else None)
            sizes.append(plan.largest)
            out.append((key, "scorecam", raw, at.map_notes(raw, relu=post.relu),
                        "output (as returned: forward-only methods score the model's first output, after any final Sigmoid/Softmax)"))
    finally:
        if bar is not None:
            bar.close()
    if sizes:
        passes["scorecam_batch"] = max(sizes)  # the most masked inputs one forward pass held
    return out


def render_cam_row(
    tiles: Sequence[tuple[str, str, np.ndarray]],
    *,
    title: str,
    cmap: str,
    lo: float,
    hi: float,
    thumb: int = 112,
    footer: Sequence[str] = (),
    labels: tuple[str, str] | None = None,
) -> Any:
    """A labelled row of CAM overlays (``(role, layer, (h, w, 3) uint8)``) with one shared colour bar."""
    from PIL import Image, ImageDraw

    from .render.colormap import get_colormap
    from .render.flow import fit_into
    from .render.picture import Picture

    pad, label_h, title_h = 6, 28, 20
    cols = max(1, len(tiles))
    width = max(cols * (thumb + pad) + pad, 320)
    height = title_h + label_h + thumb + pad * 2 + 14 * len(footer)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for i, (_role, _layer, pixels) in enumerate(tiles):
        tile = fit_into(pixels, thumb, thumb)
        x = pad + i * (thumb + pad)
        y = title_h + label_h
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    draw.text((pad, 4), title, fill=(0, 0, 0))
    for i, (role, layer, _pixels) in enumerate(tiles):
        x = pad + i * (thumb + pad)
        draw.text((x, title_h), role[:22], fill=(0, 0, 0))
        draw.text((x, title_h + 13), layer[:22], fill=(90, 90, 90))
    for k, line in enumerate(footer):
        draw.text((pad, title_h + label_h + thumb + pad + 14 * k), line, fill=(120, 0, 0))
    pixels = _with_colorbar(np.asarray(img), get_colormap(cmap), lo, hi, labels)
    return Picture(pixels=np.ascontiguousarray(pixels), meta={"cmap": cmap, "value_range": [lo, hi], "title": title})
