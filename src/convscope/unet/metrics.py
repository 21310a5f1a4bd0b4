"""Skip metrics of a U-Net, from one capture (numpy only).

Skip metrics (computed over the whole batch):

- **energy share**: at the merge, the skip branch's summed squared activation divided by the
  summed squared activation of all branches entering the merge (skip + upsampled decoder [+ other
  skips in UNet++]). 0 means the skip delivers nothing, 0.5 means as much as the decoder branch.
- **gradient share**: the same fraction for ``sum |x * dS/dx|`` (input x gradient) of each branch,
  where ``S`` is the model's output score: the sum of the predicted class's logits (or of channel
  ``target``), optionally inside ``mask``. It measures how much the prediction actually depends on
  what the skip delivers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.graph import Graph
from ..core.unet import UNetStructure

__all__ = ["SkipMetrics", "SkipMetricsList", "SkipSums", "skip_metrics", "skip_sums", "metrics_from_sums", "skip_table"]


@dataclass(frozen=True)
class SkipMetrics:
    """The numbers of one skip (see the module docstring for the definitions).

    Attributes:
        level: level index of the merge.
        source / merge: node names of the skip's source tensor and of the merge.
        merge_kind: ``"concat"`` or ``"add"``.
        energy_share: skip branch's fraction of the summed squared activation at the merge (None if
            the merge carries no energy at all).
        gradient_share: skip branch's fraction of ``sum |x * grad|`` at the merge (None if not
            computed or no gradient reached the merge).
        skip_energy / decoder_energy / merge_energy: ``sum x**2`` of the skip branch, the upsampled
            decoder branch and all branches entering the merge.
    """

    level: int
    source: str
    merge: str
    merge_kind: str
    energy_share: float | None
    gradient_share: float | None
    skip_energy: float
    decoder_energy: float
    merge_energy: float

    def _repr_html_(self) -> str:  # Jupyter
        return skip_table([self])

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "from": self.source,
            "to": self.merge,
            "merge": self.merge_kind,
            "energy_share": _finite_or_none(self.energy_share),
            "gradient_share": _finite_or_none(self.gradient_share),
        }


class SkipMetricsList(list["SkipMetrics"]):
    """``UNetFlow.metrics``: a list of :class:`SkipMetrics` that Jupyter shows as a table."""

    def _repr_html_(self) -> str:
        return skip_table(self)


def skip_table(metrics: list[SkipMetrics], names: Any = None) -> str:
    """HTML table of skips: level, from, to, merge, energy and gradient shares (rounded percentages)."""
    from .._html import plural, table

    def share(value: float | None) -> str:
        value = _finite_or_none(value)
        return "-" if value is None else f"{100 * value:.1f}%"

    nm = names or (lambda node: node)
    rows = [[str(m.level), nm(m.source), nm(m.merge), m.merge_kind, share(m.energy_share), share(m.gradient_share)]
            for m in metrics]
    return table(["level", "from", "to", "merge", "energy share", "gradient share"], rows,
                 caption=f"skip metrics: {plural(len(metrics), 'skip')}")


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _energy(value: np.ndarray | None) -> float:
    if value is None:
        return float("nan")
    flat = value.astype(np.float64, copy=False)
    return float(np.sum(flat * flat))


@dataclass(frozen=True)
class SkipSums:
    """The raw sums behind one skip's metrics; they add up over batches (:meth:`plus`), so a batch fed in
    chunks gives the metrics of the whole batch.

    Attributes:
        energies: ``sum x**2`` of each input of the merge (NaN: not captured).
        own: ``sum x**2`` of the skip branch itself (differs from ``energies[skip_position]`` when the
            branch is part of a nested concat folded into this merge).
        gradients: per merge input ``sum |x * grad|`` (None: no gradient shares).
    """

    energies: tuple[float, ...]
    own: float
    gradients: tuple[float, ...] | None

    def plus(self, other: SkipSums) -> SkipSums:
        grads = None if self.gradients is None or other.gradients is None or len(self.gradients) != len(other.gradients) \
            else tuple(a + b for a, b in zip(self.gradients, other.gradients))
        return SkipSums(energies=tuple(a + b for a, b in zip(self.energies, other.energies)), own=self.own + other.own,
                        gradients=grads)


def skip_sums(
    structure: UNetStructure,
    graph: Graph,
    values: dict[str, np.ndarray],
    input_x_gradient: dict[str, tuple[float, ...]] | None,
) -> list[SkipSums]:
    """The raw sums of every skip of ``structure`` (in ``structure.skips`` order) for one capture."""
    out = []
    for skip in structure.skips:
        node = graph.node(skip.merge)
        energies = tuple(_energy(values.get(i)) for i in node.inputs)
        folded = node.inputs[skip.skip_position] != skip.skip_input
        own = _energy(values.get(skip.skip_input)) if folded else energies[skip.skip_position]
        sums = (input_x_gradient or {}).get(skip.merge)
        out.append(SkipSums(energies=energies, own=own, gradients=tuple(float(v) for v in sums) if sums is not None else None))
    return out


def metrics_from_sums(structure: UNetStructure, graph: Graph, sums: list[SkipSums]) -> list[SkipMetrics]:
    """Energy and gradient shares from :func:`skip_sums` (of one capture, or added over chunks)."""
    out = []
    for skip, raw in zip(structure.skips, sums):
        node = graph.node(skip.merge)
        energies = list(raw.energies)
        total = float(np.nansum(energies)) if any(math.isfinite(e) for e in energies) else float("nan")
        mine = raw.own
        folded = node.inputs[skip.skip_position] != skip.skip_input  # a branch of a nested concat folded into this merge
        if not math.isfinite(mine) or any(not math.isfinite(e) for e in energies):
            energy_share = None
        else:
            energy_share = mine / total if total > 0 else None
        gradient_share = None
        grads = raw.gradients
        if not folded and grads is not None and len(grads) == len(node.inputs) and math.isfinite(grads[skip.skip_position]):
            g_total = float(sum(s for s in grads if math.isfinite(s)))
            gradient_share = grads[skip.skip_position] / g_total if g_total > 0 else None
        out.append(
            SkipMetrics(
                level=skip.level,
                source=graph.name_of(skip.source),
                merge=graph.name_of(skip.merge),
                merge_kind=skip.merge_kind,
                energy_share=energy_share,
                gradient_share=gradient_share,
                skip_energy=mine,
                decoder_energy=energies[skip.decoder_position],
                merge_energy=total,
            )
        )
    return out


def skip_metrics(
    structure: UNetStructure,
    graph: Graph,
    values: dict[str, np.ndarray],
    input_x_gradient: dict[str, tuple[float, ...]] | None,
) -> list[SkipMetrics]:
    """Energy and gradient shares of every skip of ``structure``.

    Args:
        structure: from :func:`find_unet`.
        graph: the graph the structure was found in.
        values: node id -> ``(N, *shape)`` values; must hold every input of every skip merge.
        input_x_gradient: merge id -> per-input ``sum |x * grad|`` (None: no gradient shares).

    Returns:
        One :class:`SkipMetrics` per skip, in ``structure.skips`` order.
    """
    return metrics_from_sums(structure, graph, skip_sums(structure, graph, values, input_x_gradient))
