"""What the live viewer knows and computes, without any web framework.

:class:`ViewerState` holds the model (a :class:`~convscope.Scope`), the image and layer IDs it
handed out, and a byte-bounded LRU cache of activations and rendered PNGs. Each image's
activations are computed once (one forward pass for every viewer layer, serialised by a model
lock because a torch forward pass with hooks is not safe to run concurrently on one model) and
shared by every request that needs them. All methods are thread-safe.
"""

from __future__ import annotations

import dataclasses

import math
import os
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.budget import MemoryBudgetError
from ..core.health import activation_health, channel_stats, weight_health
from ..core.layers import LayerInfo
from ..errors import ConvscopeError
from .cache import ByteLRUCache, SingleFlight
from .images import FolderImage, ImageRejected, decode_image, read_folder_image, scan_image_folder
from .registry import IdRegistry

if TYPE_CHECKING:
    from ..io.images import PreparedInput
    from ..scope import Scope

__all__ = ["ApiError", "CamQuery", "ServerLimits", "ViewerState", "LayerEntry", "ImageEntry", "cam_public"]


class ApiError(Exception):
    """An error the API answers with ``status`` and a JSON body ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ServerLimits:
    """Resource limits of the viewer.

    Attributes:
        max_upload_bytes: largest accepted upload (HTTP 413 above).
        max_pixels: largest accepted image, checked from the header before decoding (413 above).
        max_file_bytes: largest file read from ``--images``.
        cache_bytes: budget of the activation/PNG LRU cache.
        max_uploads: uploads kept at once (the oldest are forgotten first).
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_file_bytes: int = 64 * 1024 * 1024
    cache_bytes: int = 512 * 1024 * 1024
    max_uploads: int = 64


@dataclass(frozen=True)
class CamQuery:
    """A CAM target chosen in the page (validated by the API before it gets here).

    Attributes:
        cls: class index (None: the predicted class per pixel / the top-1 class).
        pixel: ``(y, x)`` in output pixels (segmentation outputs), or None.
        box: ``(x0, y0, x1, y1)`` in output pixels, ends exclusive, or None.
        method: one of :data:`convscope.core.attribution.GRADIENT_METHODS`.
    """

    cls: int | None = None
    pixel: tuple[int, ...] | None = None
    box: tuple[int, int, int, int] | None = None
    method: str = "gradcam"

    def key(self) -> tuple[Any, ...]:
        return (self.cls, self.pixel, self.box, self.method)

    def query_string(self) -> str:
        parts = [f"method={self.method}"]
        if self.cls is not None:
            parts.append(f"cls={self.cls}")
        if self.pixel is not None:
            parts.append("pixel=" + ",".join(map(str, self.pixel)))
        if self.box is not None:
            parts.append("box=" + ",".join(map(str, self.box)))
        return "&".join(parts).replace("+", "%2B")


@dataclass(frozen=True)
class LayerEntry:
    id: str
    name: str
    info: LayerInfo | None

    def to_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "id": self.id,
            "name": self.name,
            "kind": info.kind if info else "other",
            "type": info.type_name if info else "",
            "params": info.params if info else 0,
            "out_shape": list(info.out_shape) if info and info.out_shape else None,
            "has_kernels": bool(info and info.is_conv),
        }


@dataclass
class ImageEntry:
    name: str
    origin: str  # "folder" | "upload" | "sample" (a bundled demo model's generated input)
    folder_image: FolderImage | None = None
    data: Any = None  # decoded upload (numpy array)
    created: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)  # how the input was made to fit the model (size, channels)
    size: list[int] | None = None  # the spatial size the model sees, once prepared

    def to_dict(self, image_id: str) -> dict[str, Any]:
        return {"id": image_id, "name": self.name, "origin": self.origin, "notes": list(self.notes), "size": self.size}


def _keyed_by_image(image_id: object, key: object) -> bool:
    """Whether a cache ``key`` is one of image ``image_id``'s entries (``(kind, image_id, ...)``)."""
    return isinstance(key, tuple) and len(key) > 1 and key[1] == image_id


def _finite_list(values: np.ndarray, digits: int = 6) -> list[float | None]:
    return [None if not math.isfinite(v) else float(f"{v:.{digits}g}") for v in values.tolist()]


class ViewerState:
    """The live viewer's model, IDs, cache and renderers.

    Args:
        scope: the model.
        images_dir: folder whose images are offered (None: uploads only).
        layers / kind: which layers are offered (default as in reports: convolutions and
            activation layers; see :func:`convscope.report.select_report_layers`).
        size / normalize: input preparation (default size: the model's known input size, so
            uploads of any size work for fixed-size models).
        limits: :class:`ServerLimits`.
    """

    def __init__(
        self,
        scope: Scope,
        *,
        images_dir: str | os.PathLike[str] | None = None,
        layers: Any = None,
        kind: str | None = None,
        size: Any = None,
        normalize: str | None = None,
        limits: ServerLimits | None = None,
        cmap: str = "viridis",
    ) -> None:
        from ..report.builder import select_report_layers

        self.scope = scope
        self.limits = limits or ServerLimits()
        self.cmap = cmap
        # an image keeps its own size unless the user (--size) or the model (a fixed input size) fixes one
        fixed = scope.adapter.input_spec().spatial_size
        if size is None and fixed is not None:
            size = tuple(int(s) for s in fixed)
        self.size = size
        self.size_reason = "--size" if size is not None and fixed is None else ("the model's fixed input size" if fixed else None)
        self.normalize = normalize
        infos = {info.name: info for info in scope.adapter.layers()}
        names = select_report_layers(scope, layers, kind)
        self.layers = [LayerEntry(id=f"l{i}", name=name, info=infos.get(name)) for i, name in enumerate(names)]
        self._layer_by_id = {entry.id: entry for entry in self.layers}
        self.images_dir = Path(os.path.realpath(images_dir)) if images_dir is not None else None
        self.cache: ByteLRUCache[Any] = ByteLRUCache(self.limits.cache_bytes)
        self.flights = SingleFlight()
        self.model_lock = threading.Lock()
        self.captures = 0  # forward passes run (for tests and /api/status)
        folder = scan_image_folder(self.images_dir) if self.images_dir is not None else []
        # without a folder, a bundled demo model offers its generated samples, so the page starts full
        samples = [] if self.images_dir is not None or scope.loaded.sample is None else [0, 1]
        self.images: IdRegistry[ImageEntry] = IdRegistry(
            "i", max_items=len(folder) + len(samples) + self.limits.max_uploads, evictable=lambda e: e.origin == "upload"
        )
        for item in folder:
            self.images.add(ImageEntry(name=item.name, origin="folder", folder_image=item))
        for seed in samples:
            self.images.add(ImageEntry(name=f"demo sample {seed + 1}", origin="sample", data=scope.sample(seed)))
        self._unet_known: bool | None = None

    # -- lookups --------------------------------------------------------------------------------
    def image(self, image_id: str) -> ImageEntry:
        entry = self.images.get(image_id)
        if entry is None:
            raise ApiError(404, "unknown_image", "unknown image id; list images with GET /api/images")
        return entry

    def layer(self, layer_id: str) -> LayerEntry:
        entry = self._layer_by_id.get(layer_id) if isinstance(layer_id, str) else None
        if entry is None:
            raise ApiError(404, "unknown_layer", "unknown layer id; list layers with GET /api/model")
        return entry

    def model_info(self) -> dict[str, Any]:
        spec = self.scope.adapter.input_spec()
        return {
            "name": self.scope.name,
            "framework": self.scope.adapter.framework,
            "input": {"channels": spec.channels, "spatial_dims": spec.spatial_dims,
                      "size": list(self.size) if isinstance(self.size, (tuple, list)) else self.size},
            "layers": [entry.to_dict() for entry in self.layers],
            "unet": self._unet_known,
            "limits": {"max_upload_bytes": self.limits.max_upload_bytes, "max_pixels": self.limits.max_pixels},
        }

    def image_list(self) -> list[dict[str, Any]]:
        return [entry.to_dict(image_id) for image_id, entry in self.images.items()]

    # -- uploads --------------------------------------------------------------------------------
    def add_upload(self, data: bytes, content_type: str | None, filename: str | None) -> tuple[str, ImageEntry]:
        """Decode, check and register an uploaded image. Raises :class:`ApiError` (400/413/415/422)."""
        try:
            decoded = decode_image(data, content_type=content_type, max_bytes=self.limits.max_upload_bytes,
                                   max_pixels=self.limits.max_pixels)
        except ImageRejected as exc:
            raise ApiError(exc.status, exc.code, str(exc)) from None
        name = Path(filename or "upload").name[:120] or "upload"
        entry = ImageEntry(name=name, origin="upload", data=decoded)
        prepared = self._prepare(entry)  # refuse images the model cannot take, before registering
        image_id, evicted = self.images.add(entry)
        for old in evicted:
            self.cache.discard_where(partial(_keyed_by_image, old))
        self.cache.put(("prep", image_id), prepared, int(prepared.batch.nbytes + (prepared.display.nbytes if prepared.display is not None else 0)))
        return image_id, entry

    # -- inputs and activations -----------------------------------------------------------------
    def _decode(self, entry: ImageEntry) -> Any:
        if entry.data is not None:  # uploads and generated samples
            return entry.data
        if entry.folder_image is None or self.images_dir is None:
            raise ApiError(404, "unknown_image", "the image has no data")
        try:
            return read_folder_image(self.images_dir, entry.folder_image, max_bytes=self.limits.max_file_bytes,
                                     max_pixels=self.limits.max_pixels)
        except ImageRejected as exc:
            raise ApiError(exc.status, exc.code, f"{entry.name}: {exc}") from None

    def _prepare(self, entry: ImageEntry) -> PreparedInput:
        try:
            image = self._decode(entry)
            # the capture of every viewer layer is estimated before any work (same budget as the CLI)
            self.scope.check_memory(image, [layer.name for layer in self.layers], size=self.size,
                                    what=f"the viewer's {len(self.layers)} layers")
            prepared = self.scope.prepare(image, size=self.size, normalize=self.normalize)
            self._note(entry, image, prepared)
            return prepared
        except ApiError:
            raise
        except MemoryBudgetError as exc:
            raise ApiError(413, "too_large", str(exc)) from None
        except ConvscopeError as exc:
            raise ApiError(422, "bad_image", str(exc)) from None

    def _note(self, entry: ImageEntry, image: Any, prepared: PreparedInput) -> None:
        """Record, in words, how ``image`` was made to fit the model (shown by the page)."""
        from ..io.images import planned_shape

        spec = self.scope.adapter.input_spec()
        own = planned_shape(image, channels=None, spatial_dims=spec.spatial_dims or 2)
        used = prepared.batch.shape
        notes = []
        if tuple(own[2:]) != tuple(used[2:]):
            notes.append(f"resized from {'x'.join(map(str, own[2:]))} to {'x'.join(map(str, used[2:]))} "
                         f"({self.size_reason or 'the model'} fixes the input size)")
        else:
            notes.append(f"used at its own size, {'x'.join(map(str, used[2:]))}")
        if own[1] != used[1]:
            if own[1] in (3, 4) and used[1] == 1:
                notes.append("converted from RGB to grayscale (ITU-R 601 luma) because the model takes 1 channel")
            elif own[1] == 4 and used[1] == 3:
                notes.append("alpha channel dropped: the model takes RGB")
            elif own[1] == 1:
                notes.append(f"grayscale repeated to {used[1]} channels because the model takes {used[1]}")
        entry.notes = notes
        entry.size = [int(v) for v in used[2:]]

    def predictions(self, image_id: str, k: int = 5) -> dict[str, Any]:
        """The model's top-``k`` classes for the image, when its output is a vector of class scores.

        Returns ``{"kind": "classes", "top": [{"index", "probability", "score"}], "softmax": bool}``
        (probabilities are the softmax of the scores unless they already sum to 1), or
        ``{"kind": "map"}`` for a spatial output (segmentation, U-Net), ``{"kind": "none"}`` otherwise.
        """
        output = self.output(image_id)
        if output is None:
            return {"kind": "none", "top": []}
        if output.ndim > 2:
            return {"kind": "map", "top": [], "shape": list(output.shape[1:])}
        from ..core.predictions import top_classes

        top = top_classes(output[0], k)
        if top is None:
            return {"kind": "none", "top": []}
        self._unet_known = False  # a vector output: not a U-Net, so the page need not ask
        return {"kind": "classes", **top}

    def output(self, image_id: str) -> np.ndarray | None:
        """The model's output for the image (computed with the activations, cached)."""
        key = ("out", image_id)
        hit = self.cache.get(key)
        if hit is None and self.layers:
            self.activation(image_id, self.layers[0].id)
            hit = self.cache.get(key)
        if hit is None:  # activations still cached but the output evicted: one forward pass for it alone
            prepared = self.prepared(image_id)
            try:
                with self.model_lock:
                    self.captures += 1
                    result = self.scope.adapter.capture(prepared.batch[:1], [])
            except ConvscopeError as exc:
                raise ApiError(422, "forward_failed", str(exc)) from None
            if result.output is None:
                return None
            hit = np.ascontiguousarray(np.asarray(result.output, dtype=np.float32)[:1])
            self.cache.put(key, hit, int(hit.nbytes))
        return hit

    def prepared(self, image_id: str) -> PreparedInput:
        entry = self.image(image_id)
        key = ("prep", image_id)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        with self.flights.hold(key):
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            prepared = self._prepare(entry)
            size = prepared.batch.nbytes + (prepared.display.nbytes if prepared.display is not None else 0)
            self.cache.put(key, prepared, int(size))
            return prepared

    def activation(self, image_id: str, layer_id: str) -> np.ndarray:
        """``(C, *spatial)`` float32 output of the layer for the image (sample 0), computed once per image."""
        layer = self.layer(layer_id)
        self.image(image_id)
        key = ("act", image_id, layer.name)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        with self.flights.hold(("capture", image_id)):
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            prepared = self.prepared(image_id)
            names = [entry.name for entry in self.layers]
            try:
                with self.model_lock:
                    self.captures += 1
                    result = self.scope.adapter.capture(prepared.batch[:1], names)
            except ConvscopeError as exc:
                raise ApiError(422, "forward_failed", str(exc)) from None
            if result.output is not None:
                out = np.ascontiguousarray(np.asarray(result.output, dtype=np.float32)[:1])
                self.cache.put(("out", image_id), out, int(out.nbytes))
            wanted = None
            for name, data in result.activations.items():
                if "#" in name:
                    continue
                sample = np.ascontiguousarray(data[0])
                self.cache.put(("act", image_id, name), sample, int(sample.nbytes))
                if name == layer.name:
                    wanted = sample
            if wanted is None:
                raise ApiError(422, "layer_not_run", f"layer {layer.name!r} did not run in the forward pass for this image")
            return wanted

    # -- numbers --------------------------------------------------------------------------------
    def layer_summary(self, image_id: str, layer_id: str) -> dict[str, Any]:
        layer = self.layer(layer_id)
        maps = self.activation(image_id, layer_id)
        key = ("summary", image_id, layer.name)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        stats = channel_stats(maps)
        health = activation_health(maps, layer=layer.name, type_name=layer.info.type_name if layer.info else None)
        spatial = list(maps.shape[1:])
        view = self._view(image_id)
        summary = {
            "image": image_id,
            "layer": layer.to_dict(),
            "shape": [int(s) for s in maps.shape],
            "channels": int(maps.shape[0]),
            "spatial_dims": len(spatial),
            "slices": view.depth(tuple(spatial)) if len(spatial) == 3 else None,
            "slice_axis": view.axis_text() if len(spatial) == 3 else None,
            "slice_middle": view.index(tuple(spatial)) if len(spatial) == 3 else None,
            "health": health.to_dict(),
            "channel_stats": {k: _finite_list(v) for k, v in stats.items()},
        }
        self.cache.put(key, summary, 64 * maps.shape[0] + 1024)
        return summary

    def weights(self, layer_id: str) -> dict[str, Any]:
        layer = self.layer(layer_id)
        if not (layer.info and layer.info.is_conv):
            raise ApiError(404, "no_kernels", f"layer {layer.name!r} has no convolution kernels")
        bank = self.scope.adapter.kernel(layer.name)
        out = weight_health(bank.weights, layer=layer.name).to_dict()
        out.update(groups=bank.groups, transposed=bank.transposed, layer_id=layer.id)
        return out

    # -- pictures -------------------------------------------------------------------------------
    def _check_channel(self, maps: np.ndarray, channel: int) -> None:
        if not 0 <= channel < maps.shape[0]:
            raise ApiError(422, "channel_out_of_range", f"channel {channel} is out of range: the layer has {maps.shape[0]} channels (0..{maps.shape[0] - 1})")

    def _view(self, image_id: str) -> Any:
        """How the image's 3-D arrays become pictures (a scan's axial plane, else the first axis)."""
        from ..core.view import FIRST_AXIS

        return self.prepared(image_id).view or FIRST_AXIS

    def _slice_map(self, maps2: np.ndarray, slice_index: int | None, view: Any = None) -> np.ndarray:
        """One channel ``(*spatial)`` -> a 1-D or 2-D map (3-D: the requested slice of ``view``, a scan's
        axial slices in radiological view, else slices along the first axis; default its middle)."""
        if maps2.ndim == 3:
            from ..core.view import FIRST_AXIS

            view = view or FIRST_AXIS
            depth = view.depth(maps2.shape)
            k = view.index(maps2.shape) if slice_index is None else slice_index
            if not 0 <= k < depth:
                raise ApiError(422, "slice_out_of_range", f"slice {k} is out of range: the volume has {depth} slices (0..{depth - 1})")
            return view.take(maps2, k)
        if slice_index is not None:
            raise ApiError(422, "not_a_volume", "this layer's maps are not 3-D volumes; omit slice")
        return maps2

    def _png(self, key: tuple[Any, ...], render: Any) -> bytes:
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        data = render().to_png()
        self.cache.put(key, data)
        return data

    def channel_png(self, image_id: str, layer_id: str, channel: int, *, full: bool, slice_index: int | None) -> bytes:
        from ..render.grid import render_activation_grid

        layer = self.layer(layer_id)
        maps = self.activation(image_id, layer_id)
        self._check_channel(maps, channel)
        amap = self._slice_map(maps[channel], slice_index, self._view(image_id))
        key = ("png", image_id, layer.name, channel, "full" if full else "thumb", slice_index)
        min_cell, max_side = (320, 1024) if full else (64, 160)
        return self._png(key, lambda: render_activation_grid(amap[None], cols=1, cmap=self.cmap, min_cell=min_cell, max_side=max_side))

    def input_display(self, image_id: str, slice_index: int | None = None, depth_of: int | None = None) -> np.ndarray:
        """``(H, W, 3)`` uint8 picture of the input (3-D inputs: slice ``slice_index`` of ``depth_of`` slices
        of the image's view: a scan's axial slices, original intensities in the display window; an
        array's slices along its first axis)."""
        prepared = self.prepared(image_id)
        batch = prepared.batch[0]
        if batch.ndim == 4:  # (C, a, b, c)
            plane = self._view(image_id)
            depth = plane.depth(batch.shape)
            if slice_index is None:
                k = plane.index(batch.shape)
            else:
                total = depth_of or depth
                k = int(np.clip(round((slice_index + 0.5) * depth / total - 0.5), 0, depth - 1))
            if prepared.volume is not None and plane.plane == "axial":
                from ..io.images import volume_display

                return volume_display(prepared.volume, plane, tuple(batch.shape[1:]), index=k)[0]
            view = plane.take(batch, k)
            rgb = view[:3] if view.shape[0] >= 3 else np.repeat(view[:1], 3, axis=0)
            rgb = np.moveaxis(rgb, 0, -1)
            finite = np.isfinite(rgb)
            lo = float(rgb[finite].min()) if finite.any() else 0.0
            hi = float(rgb[finite].max()) if finite.any() else 1.0
            unit = np.clip(np.where(finite, (rgb - lo) / (hi - lo if hi > lo else 1.0), 0.0), 0.0, 1.0)
            return (unit * 255 + 0.5).astype(np.uint8)
        if prepared.display is None:
            raise ApiError(422, "no_picture", "1-D inputs have no picture")
        return prepared.display[0]

    def input_png(self, image_id: str, slice_index: int | None = None) -> bytes:
        from ..render.picture import Picture

        key = ("png", image_id, "input", slice_index)
        return self._png(key, lambda: Picture(self.input_display(image_id, slice_index)))

    def overlay_png(self, image_id: str, layer_id: str, channel: int, *, slice_index: int | None) -> bytes:
        from ..render.grid import render_overlay

        layer = self.layer(layer_id)
        maps = self.activation(image_id, layer_id)
        self._check_channel(maps, channel)
        if maps.ndim - 1 == 1:
            raise ApiError(422, "no_overlay", "overlays need 2-D or 3-D maps; this layer is 1-D")
        view = self._view(image_id)
        amap = self._slice_map(maps[channel], slice_index, view)
        depth = view.depth(maps.shape) if maps.ndim == 4 else None
        key = ("png", image_id, layer.name, channel, "overlay", slice_index)
        return self._png(key, lambda: render_overlay(self.input_display(image_id, slice_index, depth), amap, alpha=0.5))

    def grid_png(self, image_id: str, layer_id: str) -> bytes:
        from ..core.activations import Activation

        layer = self.layer(layer_id)
        maps = self.activation(image_id, layer_id)
        key = ("png", image_id, layer.name, "grid")
        return self._png(key, lambda: Activation(layer.name, maps[None]).grid(labels=True, cmap=self.cmap))

    def kernels_png(self, layer_id: str) -> bytes:
        layer = self.layer(layer_id)
        if not (layer.info and layer.info.is_conv):
            raise ApiError(404, "no_kernels", f"layer {layer.name!r} has no convolution kernels")
        key = ("png", "kernels", layer.name)
        return self._png(key, lambda: self.scope.adapter.kernel(layer.name).grid())

    # -- U-Net ----------------------------------------------------------------------------------
    def unet(self, image_id: str) -> dict[str, Any]:
        """Flow figure, level panels and clickable blocks for the image; 422 for a model that is not a U-Net."""
        from ..errors import NotAUNet, UnsupportedModelError
        from .unet_view import unet_view

        self.image(image_id)
        key = ("unet", image_id)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        if self._unet_known is False:
            raise ApiError(422, "not_a_unet", "the model is not a U-Net")
        with self.flights.hold(key):
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            prepared = self.prepared(image_id)
            try:
                with self.model_lock:
                    first = dataclasses.replace(prepared, batch=prepared.batch[:1],  # the prepared input as is:
                                                display=None if prepared.display is None else prepared.display[:1])
                    flow = self.scope.unet(first)  # its display and view (a scan's axial plane) carried along
            except NotAUNet as exc:
                self._unet_known = False
                raise ApiError(422, "not_a_unet", str(exc)) from None
            except MemoryBudgetError as exc:
                raise ApiError(413, "too_large", str(exc)) from None
            except (ImportError, NotImplementedError, UnsupportedModelError) as exc:
                raise ApiError(422, "unet_unavailable", f"the U-Net view is not available: {exc}") from None
            except ConvscopeError as exc:
                raise ApiError(422, "forward_failed", str(exc)) from None
            self._unet_known = True
            self._keep_flow(image_id, flow)
            view = unet_view(flow, {entry.name: entry.id for entry in self.layers})
            self.cache.put(key, view)
            return view

    def _keep_flow(self, image_id: str, flow: Any) -> None:
        values = getattr(flow, "values", {}) or {}
        size = int(flow.batch.nbytes) + sum(int(getattr(v, "nbytes", 0)) for v in values.values())
        self.cache.put(("flow", image_id), flow, size)

    def _flow(self, image_id: str) -> Any:
        """The image's :class:`~convscope.unet_flow.UNetFlow` (built by :meth:`unet`, cached; rebuilt if evicted)."""
        hit = self.cache.get(("flow", image_id))
        if hit is not None:
            return hit
        self.cache.discard_where(lambda key: key == ("unet", image_id))
        self.unet(image_id)
        hit = self.cache.get(("flow", image_id))
        if hit is None:
            raise ApiError(413, "too_large", "the U-Net flow of this image does not fit the viewer's cache; "
                           "start convscope serve with a larger cache or a smaller image")
        return hit

    # -- attribution: CAMs for a target chosen in the page -----------------------------------------
    def cam(self, image_id: str, query: CamQuery) -> dict[str, Any]:
        """The CAMs of ``query`` for the image, computed once per (image, query) and cached.

        U-Nets: one map per encoder level, bottleneck, decoder level and skip branch on one shared
        scale (:meth:`~convscope.unet_flow.UNetFlow.cam`); other models: one map at the last
        convolution. Segmentation outputs: the class's logits summed over the pixel / box / whole
        output; classifiers: the class's logit (default top-1). Returns the record
        ``{"mode", "method", "target", "output_tensor", "passes", "maps": [CamResult], "roles",
        "missing"}`` (arrays included; :func:`cam_public` makes the JSON).
        """
        self.image(image_id)
        key = ("cam", image_id, query.key())
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        with self.flights.hold(key):
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            record = self._compute_cam(image_id, query)
            size = sum(int(c.raw.nbytes + c.data.nbytes) for c in record["maps"]) + 4096
            self.cache.put(key, record, size)
            return record

    def _compute_cam(self, image_id: str, query: CamQuery) -> dict[str, Any]:
        from ..adapters.base import require
        from ..cam import compute_cams
        from ..core import targets as tg
        from ..core.attribution import PostProcess
        from ..errors import UnsupportedModelError

        try:
            require(self.scope.adapter, "gradients", what="the viewer's gradient CAMs")
        except UnsupportedModelError as exc:
            raise ApiError(422, "no_gradients", str(exc)) from None
        prepared = self.prepared(image_id)
        output = self.output(image_id)
        if output is None:
            raise ApiError(422, "no_output", "the model returned no tensor, so there is no target to explain")
        spatial = output.ndim > 2
        if not spatial and (query.pixel is not None or query.box is not None):
            raise ApiError(422, "bad_target", "this model's output is a vector of class scores: pick a class (cls), "
                           "not a pixel or a box")
        try:
            if spatial:
                target: Any = tg.segmentation(cls=query.cls, pixel=query.pixel, region=query.box)
            else:
                target = tg.classification(cls=query.cls)
            target.cotangent(output)  # the target is checked against the output before any work
        except ConvscopeError as exc:
            raise ApiError(422, "bad_target", str(exc)) from None
        unet = spatial and self._unet_known is not False
        if unet:
            try:
                flow = self._flow(image_id)
            except ApiError as exc:
                if exc.code not in ("not_a_unet", "unet_unavailable"):
                    raise
                unet = False
        try:
            if unet:
                self.scope.check_memory(prepared.batch[:1], None, mode="gradients",
                                        what="the U-Net CAM (activations and gradients of every layer)")
                with self.model_lock:
                    self.captures += 1
                    ucam = flow.cam(target=target, method=query.method, progress=False)
                roles = list(ucam.maps)
                maps = [ucam.maps[r] for r in roles]
                cams, missing = ucam.cams, dict(ucam.missing)
                scale = "one scale shared by every U-Net level and branch"
            else:
                layers = self.scope._cam_layers(None)
                self.scope.plan_cam(prepared.batch[:1], layers, [query.method])  # the CAM's own check (backward, Score-CAM)
                post = PostProcess(relu=True, normalize="max", scope="image")
                with self.model_lock:
                    self.captures += 1
                    cams = compute_cams(self.scope.adapter, prepared.batch[:1], layers, target, [query.method], post=post,
                                        display=prepared.display[:1] if prepared.display is not None else None,
                                        progress=False, view=prepared.view)
                maps = list(cams.values())
                roles = [f"{m.layer}" for m in maps]
                missing = {}
                scale = "per map: 1 = the map's maximum"
        except MemoryBudgetError as exc:
            raise ApiError(413, "too_large", str(exc)) from None
        except ConvscopeError as exc:
            raise ApiError(422, "cam_failed", str(exc)) from None
        return {"mode": "unet" if unet else "layer", "method": query.method, "target": cams.target,
                "output_tensor": maps[0].output_name if maps else None, "passes": cams.passes, "scale": scale,
                "roles": roles, "maps": maps, "missing": missing}

    def cam_png(self, image_id: str, query: CamQuery, index: int) -> bytes:
        """Map ``index`` of :meth:`cam` overlaid on the input (middle slice for 3D), with its colour scale."""
        record = self.cam(image_id, query)
        maps = record["maps"]
        if not 0 <= index < len(maps):
            raise ApiError(422, "map_out_of_range", f"map {index} is out of range (0..{len(maps) - 1})")
        key = ("png", image_id, "cam", query.key(), index)
        return self._png(key, lambda: maps[index].overlay(cmap="jet", alpha=0.5, colorbar=True))

    # -- volumes: three linked planes, one slice per request (lazy) ------------------------------
    def volume_info(self, image_id: str) -> dict[str, Any]:
        """Geometry of a scan input for the linked-plane view; 404 when the input is not a 3D scan."""
        record = self._volume_record(image_id)
        vol = record.volume
        from ..render.planes import PLANE_EDGES

        x, y, z = vol.shape
        return {
            "shape": [x, y, z], "spacing_mm": list(vol.spacing), "counts": {"sagittal": x, "coronal": y, "axial": z},
            "edges": PLANE_EDGES, "point": [x // 2, y // 2, z // 2], "units": vol.units,
            "describe": record.describe(),
        }

    def _volume_record(self, image_id: str) -> Any:
        prepared = self.prepared(image_id)
        if prepared.volume is None or prepared.batch.ndim != 5:
            raise ApiError(404, "not_a_volume", "this input is not a 3D scan")
        return prepared.volume

    def volume_slice_png(self, image_id: str, plane: str, index: int, *, layer_id: str | None = None,
                         channel: int | None = None, opacity: float = 0.6, mip: bool = False,
                         cam: tuple[CamQuery, int] | None = None) -> bytes:
        """One plane of the scan (radiological, physical aspect), optionally with a layer's map
        (one channel, or the channel mean) or a CAM (``cam``: the query and the map's index in
        :meth:`cam`) mapped onto the scan's grid; ``mip``: maximum projection."""
        from ..io.volume_prep import channel_window
        from ..render.planes import render_plane

        record = self._volume_record(image_id)
        if plane not in ("axial", "coronal", "sagittal"):
            raise ApiError(422, "bad_plane", "plane must be axial, coronal or sagittal")
        key = ("vol", image_id, plane, index, layer_id, channel, round(opacity, 2), mip,
               None if cam is None else (cam[0].key(), cam[1]))

        def render() -> Any:
            overlay = None
            if cam is not None:
                maps = self.cam(image_id, cam[0])["maps"]
                if not 0 <= cam[1] < len(maps):
                    raise ApiError(422, "map_out_of_range", f"map {cam[1]} is out of range (0..{len(maps) - 1})")
                data = maps[cam[1]].data[0]
                if data.ndim != 3:
                    raise ApiError(422, "not_3d", "this CAM is not a 3D map")
                overlay = record.to_volume(np.asarray(data, dtype=np.float32))
            elif layer_id is not None:
                maps = self.activation(image_id, layer_id)
                if maps.ndim != 4:
                    raise ApiError(422, "not_3d", "this layer's output is not a 3D map")
                if channel is not None:
                    self._check_channel(maps, channel)
                amap = maps[channel] if channel is not None else maps.mean(axis=0)
                overlay = record.to_volume(np.asarray(amap, dtype=np.float32))
            try:
                return render_plane(record.volume, plane, index, window=channel_window(record.window, 0), overlay=overlay,
                                    overlay_alpha=opacity, mip=mip)
            except ValueError as exc:
                raise ApiError(422, "slice_out_of_range", str(exc)) from None

        return self._png(key, render)


def cam_public(record: dict[str, Any], image_id: str, query: CamQuery, layer_ids: dict[str, str]) -> dict[str, Any]:
    """The JSON the CAM route returns: target, passes, scale, and per map its role, layer and PNG URL."""
    qs = query.query_string()
    maps = []
    for i, (role, cam) in enumerate(zip(record["roles"], record["maps"])):
        lo, hi = (float(v) for v in cam.scale[0])
        maps.append({"index": i, "role": role, "layer": cam.layer, "layer_id": layer_ids.get(cam.layer),
                     "url": f"/api/images/{image_id}/cam/{i}.png?{qs}", "scale": [lo, hi],
                     "raw_range": [float(cam.raw[0].min()), float(cam.raw[0].max())], "notes": list(cam.notes)})
    return {"image": image_id, "mode": record["mode"], "method": record["method"], "target": record["target"],
            "output_tensor": record["output_tensor"], "passes": record["passes"], "scale": record["scale"],
            "post_processing": record["maps"][0].post.describe() if record["maps"] else None,
            "maps": maps, "missing": record["missing"]}
