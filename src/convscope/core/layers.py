"""Layer records and layer selection (framework-free)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import LayerNotFoundError, close_matches

__all__ = ["LayerInfo", "LayerKind", "KINDS", "TABLE_HEADER", "layer_row", "select_layers", "format_layer_table"]

LayerKind = str
"""One of :data:`KINDS`."""

KINDS: tuple[str, ...] = (
    "conv",  # any convolution, transposed included (``kind="conv"`` selects both)
    "conv_transpose",
    "linear",
    "norm",
    "activation",
    "pool",
    "upsample",
    "dropout",
    "merge",
    "container",
    "other",
)


@dataclass(frozen=True)
class LayerInfo:
    """One named layer of a model.

    Attributes:
        name: qualified dotted path (torch ``named_modules`` name, Keras layer path, ONNX node name).
        kind: coarse category, one of :data:`KINDS`.
        type_name: the framework's class or op name (``"Conv2d"``, ``"Conv2DTranspose"``, ``"Conv"``).
        in_channels / out_channels: channel counts when known.
        kernel_size, stride, padding, dilation: per spatial axis, when the layer has them.
        groups: convolution groups (1 for an ordinary conv, ``in_channels`` for depthwise).
        transposed: True for transposed convolutions.
        params: number of parameters owned directly by the layer.
        out_shape: output shape without the batch axis, channels first ``(C, *spatial)``,
            once known from a forward pass; ``None`` before.
        is_leaf: False for containers (Sequential, blocks, sub-models).
    """

    name: str
    kind: LayerKind
    type_name: str
    in_channels: int | None = None
    out_channels: int | None = None
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | str | None = None
    dilation: tuple[int, ...] | None = None
    groups: int = 1
    transposed: bool = False
    params: int = 0
    out_shape: tuple[int, ...] | None = None
    is_leaf: bool = True

    @property
    def is_conv(self) -> bool:
        return self.kind in ("conv", "conv_transpose")

    @property
    def spatial_dims(self) -> int | None:
        return len(self.kernel_size) if self.kernel_size is not None else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


def _kind_matches(layer: LayerInfo, kind: str) -> bool:
    if kind == "all":
        return True
    if kind == "conv":
        return layer.is_conv
    return layer.kind == kind


def _is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def select_layers(
    layers: Sequence[LayerInfo],
    names: str | Iterable[str] | None = None,
    *,
    kind: str | None = None,
    default_kind: str = "conv",
    require: str | None = None,
) -> list[LayerInfo]:
    """Pick layers by exact name, glob pattern and/or kind, in model order.

    Args:
        layers: every layer of the model, in model order.
        names: ``None`` (all layers of ``kind``, or of ``default_kind`` when ``kind`` is None too),
            an exact qualified name, a glob (``"encoder.*"``, ``"enc?.conv"``), or several of these.
        kind: restrict to a kind (``"conv"`` means every convolution, transposed ones included;
            ``"all"`` means no restriction).
        default_kind: the kind used when neither names nor kind are given.
        require: if ``"kernel"``, keep only layers that have a convolution kernel; an exact name
            that is not a convolution raises a ``ValueError`` saying so.

    Raises:
        LayerNotFoundError: an exact name or a pattern matched nothing; the message lists the
            closest layer names.
    """
    if kind is not None and kind not in KINDS and kind != "all":
        raise ValueError(f"unknown layer kind {kind!r}; choose one of: all, {', '.join(KINDS)}")
    by_name = {layer.name: layer for layer in layers}
    all_names = list(by_name)
    if names is None:
        wanted_kind = kind or default_kind
        chosen = [layer for layer in layers if _kind_matches(layer, wanted_kind)]
        if require == "kernel":
            chosen = [layer for layer in chosen if layer.is_conv]
        if not chosen:
            raise LayerNotFoundError(
                f"the model has no layer of kind {wanted_kind!r}; "
                f"kinds present: {', '.join(sorted({l.kind for l in layers})) or 'none'}; "
                f"choose layers by name (layers=... / --layer) or kind (kind=... / --kind)"
            )
        return chosen

    patterns = [names] if isinstance(names, str) else list(names)
    if not patterns:
        raise ValueError("an empty list of layer names was given; pass None to select the default layers")
    picked: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"layer names must be non-empty strings, got {pattern!r}")
        if _is_pattern(pattern) and pattern not in by_name:  # an exact name wins over glob reading
            hits = [n for n in all_names if fnmatch.fnmatchcase(n, pattern)]
            if kind is not None:
                hits = [n for n in hits if _kind_matches(by_name[n], kind)]
            if require == "kernel":
                hits = [n for n in hits if by_name[n].is_conv]
            if not hits:
                stem = pattern.replace("*", "").replace("?", "").strip(".")
                near = close_matches(stem, all_names) if stem else all_names[:5]
                what = "convolution layer" if require == "kernel" else "layer"
                raise LayerNotFoundError(
                    f"pattern {pattern!r} matches no {what}"
                    + (f" of kind {kind!r}" if kind else "")
                    + (f"; closest names: {', '.join(near)}" if near else "")
                    + ". Run `convscope layers MODEL` (or scope.layers()) to list them."
                )
            picked.update(hits)
        else:
            if pattern not in by_name:
                near = close_matches(pattern, all_names)
                raise LayerNotFoundError(
                    f"no layer named {pattern!r}"
                    + (f"; did you mean: {', '.join(near)}?" if near else "")
                    + " Run `convscope layers MODEL` (or scope.layers()) to list all layer names."
                )
            layer = by_name[pattern]
            if require == "kernel" and not layer.is_conv:
                convs = [l.name for l in layers if l.is_conv]
                near = close_matches(pattern, convs)
                raise ValueError(
                    f"layer {pattern!r} is a {layer.type_name} ({layer.kind}), not a convolution, so it "
                    f"has no kernels to show"
                    + (f"; convolution layers nearby: {', '.join(near)}" if near else "")
                )
            if kind is not None and not _kind_matches(layer, kind):
                raise ValueError(f"layer {pattern!r} is of kind {layer.kind!r}, not {kind!r}")
            picked.add(pattern)
    return [layer for layer in layers if layer.name in picked]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value) if value else "-"
    return str(value)


TABLE_HEADER = ("name", "kind", "type", "kernel", "stride", "groups", "out shape", "params")


def layer_row(layer: LayerInfo) -> tuple[str, ...]:
    """One layer as the text cells of :data:`TABLE_HEADER`."""
    return (
        layer.name,
        layer.kind,
        layer.type_name,
        _fmt(layer.kernel_size),
        _fmt(layer.stride),
        _fmt(layer.groups) if layer.is_conv else "-",
        _fmt(layer.out_shape),
        f"{layer.params:,}",
    )


def format_layer_table(layers: Sequence[LayerInfo]) -> str:
    """A fixed-width text table: name, kind, type, kernel, stride, groups, out shape, params."""
    header = TABLE_HEADER
    rows = [header, *(layer_row(layer) for layer in layers)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
