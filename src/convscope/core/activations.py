"""Captured activations (feature maps) and what can be drawn from them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .view import FIRST_AXIS, MiddleView

if TYPE_CHECKING:
    from ..render.picture import Picture

__all__ = ["Activation", "ActivationSet", "channel_order", "ORDERS", "NOT_EXECUTED", "not_executed"]

ORDERS = ("index", "mean", "max", "l2")


def channel_order(maps: np.ndarray, order: str = "index") -> np.ndarray:
    """Channel indices sorted for display.

    Args:
        maps: ``(C, *spatial)`` float32.
        order: ``"index"`` (0..C-1), or ``"mean"``, ``"max"``, ``"l2"`` (descending by that score;
            NaN scores sort last, ties keep index order).

    Returns:
        ``(C,)`` int64 channel indices.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    channels = maps.shape[0]
    if order == "index":
        return np.arange(channels)
    flat = maps.reshape(channels, -1).astype(np.float64, copy=False)
    finite = np.where(np.isfinite(flat), flat, np.nan)
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        if order == "mean":
            score = np.nanmean(finite, axis=1)
        elif order == "max":
            score = np.nanmax(finite, axis=1)
        else:
            score = np.sqrt(np.nansum(finite**2, axis=1))
    score = np.where(np.isnan(score), -np.inf, score)
    return np.argsort(-score, kind="stable")


class _quiet_nan_warnings:
    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def map_stats(maps: np.ndarray) -> dict[str, Any]:
    """Summary numbers of ``(C, *spatial)`` maps: finite min/max/mean, NaN and Inf counts."""
    finite_mask = np.isfinite(maps)
    finite = maps[finite_mask]
    return {
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "nan": int(np.isnan(maps).sum()),
        "inf": int(np.isinf(maps).sum()),
    }


@dataclass(frozen=True, eq=False)
class Activation:
    """The output of one layer for a batch of inputs.

    Attributes:
        layer: qualified layer name.
        data: ``(N, C, *spatial)`` float32 host array, channels first (1, 2 or 3 spatial axes).
        source_dtype: dtype the layer produced before the upcast to float32.
        input_display: ``(H, W, 3)`` uint8 picture of the input sample 0 (for overlays), if known.
    """

    layer: str
    data: np.ndarray
    source_dtype: str = "float32"
    input_display: np.ndarray | None = field(default=None, repr=False)
    view: MiddleView | None = field(default=None, repr=False)
    """3D maps: how they become pictures (:class:`~convscope.core.view.MiddleView`, a volume's axial
    middle plane); None: the middle slice along the first spatial axis."""

    def __post_init__(self) -> None:
        if self.data.ndim < 2:
            raise ValueError(f"activation of {self.layer!r} must be (N, C, ...), got shape {self.data.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def batch_size(self) -> int:
        return int(self.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def spatial_dims(self) -> int:
        return self.data.ndim - 2

    def sample(self, index: int = 0) -> np.ndarray:
        """``(C, *spatial)`` maps of one sample."""
        if not -self.batch_size <= index < self.batch_size:
            raise ValueError(
                f"sample {index} is out of range: layer {self.layer!r} has a batch of {self.batch_size}"
            )
        return self.data[index]

    def order(self, order: str = "mean", sample: int = 0) -> np.ndarray:
        """Channel indices of ``sample`` sorted by ``order`` (see :func:`channel_order`)."""
        return channel_order(self.sample(sample), order)

    def stats(self, sample: int = 0) -> dict[str, Any]:
        return map_stats(self.sample(sample))

    def select_channels(
        self, *, top: int | None = None, order: str = "index", sample: int = 0, channels: Sequence[int] | None = None
    ) -> np.ndarray:
        """The channel indices a grid would show (explicit ``channels``, else ``order`` then ``top``)."""
        count = self.channels
        if channels is not None:
            chosen = np.asarray(list(channels), dtype=np.int64)
            bad = chosen[(chosen < 0) | (chosen >= count)]
            if bad.size:
                raise ValueError(f"channel {int(bad[0])} is out of range: {self.layer!r} has {count} channels (0..{count - 1})")
            return chosen
        ranked = channel_order(self.sample(sample), order)
        if top is not None:
            if top < 1:
                raise ValueError(f"top must be a positive number of channels, got {top}")
            ranked = ranked[:top]
        return ranked

    def grid(
        self,
        *,
        top: int | None = None,
        order: str = "index",
        sample: int = 0,
        channels: Sequence[int] | None = None,
        cmap: str = "viridis",
        scale: str = "minmax",
        normalize: str = "channel",
        labels: bool = False,
        cols: int | None = None,
        volume: str = "slices",
        max_side: int | None = 4096,
        title: str | None = None,
        min_cell: int = 48,
    ) -> Picture:
        """All channels (or the ``top`` ones by ``order``) of one sample as a grid image.

        Args:
            top: show only this many channels (after ordering).
            order: ``"index"``, ``"mean"``, ``"max"`` or ``"l2"`` (descending).
            sample: which sample of the batch.
            channels: explicit channel indices (overrides ``top``/``order``).
            cmap: colormap name.
            scale: ``"minmax"``, ``"symmetric"`` (0 at the colormap centre) or ``"percentile"``.
            normalize: ``"channel"`` (each map on its own scale) or ``"shared"`` (one scale for all).
            labels: draw channel indices on the cells.
            cols: grid columns (default near-square).
            volume: for 3D maps, ``"slices"`` (middle slice along each axis) or ``"mip"``
                (maximum intensity projection along each axis). With a scan's :attr:`view` the
                three views are its sagittal, coronal and axial planes in radiological view.
            max_side: largest grid side in pixels; cells are downsampled (block means) when 1 px
                per value does not fit; None keeps full resolution.
            title: the figure's title (default: the layer name); the figure (``picture.scene``)
                adds a colour bar stating the normalisation.
            min_cell: smallest short side of a cell in pixels (small maps are upscaled to it).
        """
        from ..render.grid import render_activation_grid

        if normalize not in ("channel", "shared"):
            raise ValueError(f"normalize must be 'channel' or 'shared', not {normalize!r}")
        chosen = self.select_channels(top=top, order=order, sample=sample, channels=channels)
        picture = render_activation_grid(
            self.sample(sample),
            channels=chosen,
            cmap=cmap,
            scale=scale,
            shared=normalize == "shared",
            cols=cols,
            labels=labels,
            volume=volume,
            max_side=max_side,
            title=self.layer if title is None else title,
            min_cell=min_cell,
            orientation="radiological" if self.view is not None and self.view.plane is not None else "array",
        )
        picture.meta.update(
            layer=self.layer,
            kind="activations",
            shape=list(self.shape),
            sample=sample,
            order=order,
            normalization=f"{scale}/{normalize}",
            channels=[int(c) for c in chosen],
        )
        return picture

    def channel_map(self, channel: int | str = "mean", sample: int = 0) -> np.ndarray:
        """One ``(*spatial)`` map: a channel index, or ``"mean"``/``"max"``/``"l2"`` over channels."""
        maps = self.sample(sample)
        if isinstance(channel, str):
            with np.errstate(all="ignore"), _quiet_nan_warnings():
                if channel == "mean":
                    return np.nanmean(maps, axis=0).astype(np.float32)
                if channel == "max":
                    return np.nanmax(maps, axis=0).astype(np.float32)
                if channel == "l2":
                    return np.sqrt(np.nansum(maps.astype(np.float64) ** 2, axis=0)).astype(np.float32)
            raise ValueError(f"channel must be an index or one of 'mean', 'max', 'l2'; got {channel!r}")
        if not 0 <= int(channel) < self.channels:
            raise ValueError(
                f"channel {channel} is out of range: {self.layer!r} has {self.channels} channels (0..{self.channels - 1})"
            )
        return maps[int(channel)]

    def overlay(
        self,
        image: Any = None,
        *,
        channel: int | str = "mean",
        sample: int = 0,
        alpha: float = 0.5,
        cmap: str = "jet",
        scale: str = "minmax",
        title: str | None = None,
    ) -> Picture:
        """The activation map, upsampled bilinearly to the input size, blended over the input.

        Args:
            image: the input as given to ``activations()`` (path, array, PIL image, tensor), or None to
                use the input recorded at capture time.
            channel: channel index, or ``"mean"``/``"max"``/``"l2"`` across channels.
            alpha: weight of the heat map (0 = only the image, 1 = only the map).
        For 3D activations the :attr:`view`'s slice is used (a volume's axial middle plane in
        radiological view; without a view the middle slice along the first spatial axis).
        """
        from ..io.images import to_display_image
        from ..render.grid import render_overlay

        if self.spatial_dims not in (2, 3):
            raise ValueError(f"overlays need 2D or 3D maps; {self.layer!r} has {self.spatial_dims} spatial axes")
        amap = self.channel_map(channel, sample)
        where = ""
        if self.spatial_dims == 3:
            view = self.view or FIRST_AXIS
            where = f", {view.label(amap.shape)}"
            amap = view.take(amap)
        base = self.input_display if image is None else to_display_image(image, sample=sample)
        if base is None:
            raise ValueError("no input image to overlay on: pass image=... (the input given to activations())")
        picture = render_overlay(base, amap, cmap=cmap, alpha=alpha, scale=scale,
                                 title=f"{self.layer} ({channel if isinstance(channel, str) else f'channel {channel}'}{where})"
                                 if title is None else title)
        picture.meta.update(layer=self.layer, kind="overlay", channel=channel, sample=sample, shape=list(self.shape))
        if self.spatial_dims == 3:
            picture.meta["view"] = (self.view or FIRST_AXIS).describe()
        return picture

    def _repr_png_(self) -> bytes:
        return self.grid().to_png()


NOT_EXECUTED = "not executed for this input"
"""How a selected layer that never ran in the forward pass is listed (output, manifest, API)."""


def not_executed(selected: Iterable[str], ran: Iterable[str]) -> tuple[str, ...]:
    """The ``selected`` layer names that produced no output in the pass (``ran``: the captured names,
    ``"name"`` for a layer's first call, ``"name#k"`` for later ones): a branch only used in
    training, a head the forward never called."""
    done = set(ran)
    return tuple(name for name in dict.fromkeys(selected) if name not in done)


class ActivationSet(Mapping[str, Activation]):
    """Activations of several layers from one forward pass, in model order.

    ``acts["enc1.conv"]`` gives an :class:`Activation`; an unknown name raises a ``KeyError``
    (``LayerNotFoundError``) that lists the captured layers closest to it. Layers that were selected
    but did not run on this input are in :attr:`not_executed` (and asking for one says so).
    """

    def __init__(
        self,
        activations: Mapping[str, Activation],
        *,
        output: np.ndarray | None = None,
        input_batch: np.ndarray | None = None,
        not_executed: Iterable[str] = (),
        input_display: np.ndarray | None = None,
    ) -> None:
        self._items = dict(activations)
        self.output = output
        self.input_batch = input_batch
        self.input_display = input_display
        """``(N, H, W, 3)`` uint8 pictures of the un-normalised input (2D inputs), if known."""
        self.not_executed: tuple[str, ...] = tuple(not_executed)
        """Selected layer names that were not executed for this input (no activation exists)."""

    def __getitem__(self, name: str) -> Activation:
        if name in self.not_executed and name not in self._items:
            from ..errors import LayerNotFoundError

            raise LayerNotFoundError(
                f"layer {name!r} was selected but {NOT_EXECUTED}: the forward pass never called it (a branch used "
                "only in training, or a head this forward does not call), so it has no activation"
            )
        try:
            return self._items[name]
        except KeyError:
            from ..errors import LayerNotFoundError, close_matches

            near = close_matches(name, self._items)
            raise LayerNotFoundError(
                f"layer {name!r} was not captured"
                + (f"; captured layers closest to it: {', '.join(near)}" if near else "")
                + ". Pass it in layers=... when calling activations()."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._items.items())
        if self.not_executed:
            inner += (", " if inner else "") + f"{NOT_EXECUTED}: {', '.join(self.not_executed)}"
        return f"ActivationSet({inner})"

    THUMBNAILS = 64
    """Jupyter shows a mean-map thumbnail for at most this many layers."""

    def _repr_html_(self) -> str:
        """Jupyter: one row per layer (shape, min/mean/max rounded, channel-mean thumbnail of sample 0)."""
        from .._html import number, plural, table, thumbnail

        rows = []
        for i, (name, act) in enumerate(self._items.items()):
            data = act.data
            thumb = ""
            if i < self.THUMBNAILS and data.ndim >= 4:
                sample = data[0].mean(axis=0)
                thumb = thumbnail(sample if sample.ndim == 2 else sample[sample.shape[0] // 2])
            with _quiet_nan_warnings():
                low, mean, high = (np.nanmin(data), np.nanmean(data), np.nanmax(data)) if data.size else (None,) * 3
            rows.append([name, "x".join(str(v) for v in data.shape), number(low), number(mean), number(high), thumb])
        return table(["layer", "shape (N, C, ...)", "min", "mean", "max", "mean map"], rows, raw_columns=(5,),
                     caption=f"ActivationSet: {plural(len(self._items), 'layer')}")
