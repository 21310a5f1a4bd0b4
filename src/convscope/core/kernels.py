"""Convolution kernels in one canonical layout, whatever framework they came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..render.picture import Picture

__all__ = ["KernelBank", "transposed_to_canonical"]


def transposed_to_canonical(weights: np.ndarray, groups: int) -> np.ndarray:
    """A transposed convolution's stored ``(in, out // groups, *k)`` weights -> canonical ``(out, in // groups, *k)``.

    The layout PyTorch ``ConvTranspose*d`` and ONNX ``ConvTranspose`` use. Input channel ``i`` of
    group ``g`` writes output channel ``g * (out // groups) + j`` through ``weights[i, j]``; the
    result holds that kernel at ``[g * (out // groups) + j, i - g * (in // groups)]``. Spatial
    orientation is kept (the pattern each output channel stamps). Returns float32, C-contiguous.

    Raises:
        ValueError: ``groups`` does not divide the input channels.
    """
    in_ch, out_per_group = int(weights.shape[0]), int(weights.shape[1])
    if groups < 1 or in_ch % groups:
        raise ValueError(f"groups={groups} does not divide the {in_ch} input channels of a transposed convolution")
    k = tuple(weights.shape[2:])
    regrouped = np.asarray(weights).reshape(groups, in_ch // groups, out_per_group, *k).swapaxes(1, 2)
    return np.ascontiguousarray(regrouped.reshape(groups * out_per_group, in_ch // groups, *k), dtype=np.float32)


@dataclass(frozen=True, eq=False)
class KernelBank:
    """The weights of one convolution layer.

    Attributes:
        layer: qualified layer name.
        weights: ``(out_channels, in_channels // groups, *kernel_size)`` float32, C-contiguous.
            For a transposed convolution this is the layout of the equivalent *forward* view:
            filter ``o`` is the kernel that writes output channel ``o`` (torch's stored
            ``(in, out // groups, *k)`` is converted by the adapter).
        groups: convolution groups; output channel ``o`` reads input channels
            ``[g * I, (g + 1) * I)`` with ``I = in_channels // groups`` and ``g = o // (out // groups)``.
        transposed: whether the layer is a transposed convolution.
        dilation: per spatial axis (for display only; weights are not dilated).
        type_name: framework class/op name.
        source_dtype: dtype the framework stored the weights in.
        bias: ``(out_channels,)`` float32 or None.
    """

    layer: str
    weights: np.ndarray
    groups: int = 1
    transposed: bool = False
    dilation: tuple[int, ...] | None = None
    type_name: str = ""
    source_dtype: str = "float32"
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        w = self.weights
        if not isinstance(w, np.ndarray) or w.ndim < 3:
            raise ValueError(f"kernel weights must be an (out, in/groups, *k) array, got shape {getattr(w, 'shape', None)}")
        if w.dtype != np.float32 or not w.flags.c_contiguous:
            object.__setattr__(self, "weights", np.ascontiguousarray(w, dtype=np.float32))
        if self.groups < 1 or w.shape[0] % self.groups:
            raise ValueError(f"groups={self.groups} does not divide out_channels={w.shape[0]}")

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def in_per_group(self) -> int:
        return int(self.weights.shape[1])

    @property
    def in_channels(self) -> int:
        return self.in_per_group * self.groups

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.weights.shape[2:])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.weights.shape)

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.in_per_group == 1

    def input_channel_of(self, out_channel: int, local_in: int) -> int:
        """Global input channel index read by ``weights[out_channel, local_in]``."""
        per_group_out = self.out_channels // self.groups
        return (out_channel // per_group_out) * self.in_per_group + local_in

    def stats(self) -> dict[str, Any]:
        """Mean, std, min, max, and per-filter L2 norms (``(out,)``) of the weights."""
        w = self.weights
        flat = w.reshape(w.shape[0], -1)
        return {
            "mean": float(np.mean(w)),
            "std": float(np.std(w)),
            "min": float(np.min(w)),
            "max": float(np.max(w)),
            "filter_l2": np.sqrt(np.sum(flat.astype(np.float64) ** 2, axis=1)).astype(np.float32),
        }

    def grid(
        self,
        *,
        scale: str = "symmetric",
        normalize: str = "filter",
        cmap: str | None = None,
        rgb: bool | None = None,
        cols: int | None = None,
        labels: bool = False,
        max_side: int = 4096,
        title: str | None = None,
    ) -> Picture:
        """Render every filter as a grid image.

        Args:
            scale: ``"symmetric"`` (diverging, 0 at the centre of the colormap), ``"minmax"`` or
                ``"percentile"`` (1st-99th percentile, symmetric about 0).
            normalize: ``"filter"`` (each output filter scaled on its own) or ``"shared"`` (one
                scale for the whole layer, so magnitudes compare across filters).
            cmap: colormap name; default ``"RdBu_r"`` for symmetric/percentile, ``"gray"`` for minmax.
            rgb: draw each filter as a colour image (needs 3 input channels per group). ``None``:
                automatic for a 2D layer with exactly 3 input channels and groups=1.
            cols: grid columns for the RGB layout; default near-square.
            labels: draw filter indices.
            max_side: largest image side in pixels (cell upscaling is reduced to fit, never
                below the readable minimum cell).
            title: the figure's title (default: the layer name).
        """
        from ..render.grid import render_kernel_grid

        if normalize not in ("filter", "shared"):
            raise ValueError(f"normalize must be 'filter' or 'shared', not {normalize!r}")
        if rgb is None:
            rgb = self.in_per_group == 3 and self.groups == 1 and len(self.kernel_size) == 2
        elif rgb and self.in_per_group != 3:
            raise ValueError(
                f"rgb=True needs 3 input channels per filter; layer {self.layer!r} has {self.in_per_group}"
            )
        picture = render_kernel_grid(
            self.weights,
            groups=self.groups,
            scale=scale,
            shared=normalize == "shared",
            cmap=cmap,
            rgb=rgb,
            cols=cols,
            labels=labels,
            max_side=max_side,
            title=self.layer if title is None else title,
        )
        picture.meta.update(
            layer=self.layer,
            kind="kernels",
            shape=list(self.shape),
            groups=self.groups,
            transposed=self.transposed,
            normalization=f"{scale}/{normalize}",
            rgb=rgb,
        )
        return picture

    def _repr_png_(self) -> bytes:
        return self.grid().to_png()
