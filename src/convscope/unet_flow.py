"""U-Net anatomy and flow: find encoder, decoder and skips automatically, draw the U, measure the skips.

``scope.unet(image)`` returns a :class:`UNetFlow`::

    flow = scope.unet(image)          # raises NotAUNet with the reason for a plain CNN
    flow.structure                    # levels, encoder, bottleneck, decoder, skips
    flow.figure().save("flow.png")    # the U picture
    flow.level(1).panels().save("level1.png")
    flow.metrics                      # per-skip energy and gradient shares

A framework plugs in by implementing :class:`UNetBackend` (one method). The torch backend is
:class:`convscope.adapters.torch_graph.TorchUNetBackend`.

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
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .core.graph import CaptureRequest, Graph, GraphCapture
from .core.unet import Level, Skip, UNetStructure, find_unet
from .errors import ConvscopeError

if TYPE_CHECKING:
    from .render.picture import Picture

__all__ = [
    "UNetBackend",
    "SkipMetrics",
    "LevelView",
    "UNetFlow",
    "build_unet_flow",
    "unet_backend_for",
    "skip_metrics",
]


@runtime_checkable
class UNetBackend(Protocol):
    """What a framework adapter provides for U-Net support (one forward pass, at most one backward).

    ``capture_graph`` runs the model once on ``batch``, builds the dataflow :class:`Graph`, calls
    ``request(graph)`` (which finds the U-Net and may raise ``NotAUNet``) and returns the values of
    the requested nodes and, when ``request`` names merges, per merge input ``sum |x * dS/dx|``
    from one backward pass of the score ``S`` of the requested output (sum of the predicted class's
    logits, or of channel ``target``, inside ``mask``). A backend without gradients returns
    ``input_x_gradient=None``; the gradient shares are then None.
    """

    def capture_graph(
        self,
        batch: np.ndarray,
        request: Callable[[Graph], CaptureRequest],
        *,
        target: int | None = None,
        mask: Any = None,
    ) -> GraphCapture: ...


def unet_backend_for(obj: Any, device: Any = None) -> UNetBackend:
    """The :class:`UNetBackend` for a backend, a model adapter or a bare model.

    Accepts an object that declares :class:`~convscope.adapters.base.SupportsGraphCapture` (a
    backend, or an adapter that is its own backend: ONNX, ``.pt2``), an adapter that declares
    :class:`~convscope.adapters.base.ProvidesUNetBackend` (torch, Keras), or a bare
    ``torch.nn.Module`` / Keras model (wrapped in its adapter first).

    Raises:
        UnsupportedModelError: no U-Net backend exists for this framework (the message says what would).
    """
    from .adapters.base import ModelAdapter, ProvidesUNetBackend, SupportsGraphCapture, require

    if isinstance(obj, SupportsGraphCapture):
        return obj  # type: ignore[return-value]
    if isinstance(obj, ProvidesUNetBackend):
        return obj.unet_backend()  # type: ignore[return-value]
    if not isinstance(obj, ModelAdapter):
        from .adapters import adapter_for

        try:
            adapter = adapter_for(obj, device=device)
        except TypeError:
            adapter = None
        if adapter is not None:
            return unet_backend_for(adapter, device)
    require(obj, "graph", what="U-Net analysis")
    raise AssertionError("unreachable")  # require raised


def __getattr__(name: str) -> Any:
    """``convscope.unet_flow.TorchUNetBackend`` without importing torch at module import time."""
    if name == "TorchUNetBackend":
        from .adapters.torch_graph import TorchUNetBackend

        return TorchUNetBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------------


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "from": self.source,
            "to": self.merge,
            "merge": self.merge_kind,
            "energy_share": _finite_or_none(self.energy_share),
            "gradient_share": _finite_or_none(self.gradient_share),
        }


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _energy(value: np.ndarray | None) -> float:
    if value is None:
        return float("nan")
    flat = value.astype(np.float64, copy=False)
    return float(np.sum(flat * flat))


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
    out = []
    for skip in structure.skips:
        node = graph.node(skip.merge)
        energies = [_energy(values.get(i)) for i in node.inputs]
        total = float(np.nansum(energies)) if any(math.isfinite(e) for e in energies) else float("nan")
        mine = energies[skip.skip_position]
        if not math.isfinite(mine) or any(not math.isfinite(e) for e in energies):
            energy_share = None
        else:
            energy_share = mine / total if total > 0 else None
        gradient_share = None
        sums = (input_x_gradient or {}).get(skip.merge)
        if sums is not None and len(sums) == len(node.inputs) and math.isfinite(sums[skip.skip_position]):
            g_total = float(sum(s for s in sums if math.isfinite(s)))
            gradient_share = sums[skip.skip_position] / g_total if g_total > 0 else None
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


# ------------------------------------------------------------------------------------------------
# the flow object
# ------------------------------------------------------------------------------------------------


def _shape_text(shape: Sequence[int] | None) -> str:
    if not shape:
        return "?"
    return f"{shape[0]}x" + "x".join(str(s) for s in shape[1:]) if len(shape) > 1 else str(shape[0])


def _share_text(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


@dataclass(frozen=True, eq=False)
class LevelView:
    """One level of a :class:`UNetFlow`: its skip(s) and the four-panel view.

    Attributes:
        flow: the flow it belongs to.
        index: level index (0 = highest resolution).
    """

    flow: UNetFlow
    index: int

    @property
    def level(self) -> Level:
        return self.flow.structure.levels[self.index]

    @property
    def skips(self) -> tuple[Skip, ...]:
        return self.flow.structure.skips_at(self.index)

    @property
    def skip(self) -> Skip | None:
        """The skip the panels show (into the level's last merge, from the encoder output if possible)."""
        return self.flow.structure.primary_skip(self.index)

    @property
    def metrics(self) -> list[SkipMetrics]:
        return [m for m in self.flow.metrics if m.level == self.index]

    def _nodes(self, skip: Skip | None) -> list[tuple[str, str | None]]:
        enc = self.level.encoder_output or (skip.source if skip else None)
        if skip is None:
            return [("encoder output", enc), ("decoder output", self.level.decoder_output)]
        return [
            ("encoder output", enc),
            ("skip -> merge", skip.skip_input),
            ("upsampled decoder", skip.decoder_input),
            (f"merged ({skip.merge_kind})", skip.merge),
        ]

    def tensors(self, sample: int = 0, skip: int | None = None) -> dict[str, np.ndarray]:
        """``{"encoder", "skip", "decoder", "merged"}`` -> ``(C, *spatial)`` float32 maps of one sample."""
        chosen = self._choose(skip)
        keys = ("encoder", "skip", "decoder", "merged")
        return {
            key: self.flow.sample_maps(nid, sample)
            for key, (_, nid) in zip(keys, self._nodes(chosen))
            if nid is not None
        }

    def _choose(self, skip: int | None) -> Skip | None:
        if skip is None:
            return self.skip
        at = self.skips
        if not 0 <= skip < len(at):
            raise ValueError(f"level {self.index} has {len(at)} skip(s); choose skip=0..{max(len(at) - 1, 0)}")
        return at[skip]

    def panels(self, top: int = 8, *, cmap: str = "viridis", sample: int = 0, skip: int | None = None) -> Picture:
        """Encoder output | skip as it enters the merge | upsampled decoder | merged result.

        Each panel: the channel-mean map and a grid of the ``top`` channels with the largest mean.

        Args:
            top: channels per grid (``0`` for no grids).
            cmap: colormap name.
            sample: which sample of the batch.
            skip: which skip of this level (index into :attr:`skips`; default the primary one).
        """
        from .core.activations import channel_order
        from .render.flow import PanelColumn, colorize_map, map_to_2d, render_level_panels
        from .render.grid import render_activation_grid

        if top < 0:
            raise ValueError(f"top must be >= 0 channels per grid, got {top}")
        chosen = self._choose(skip)
        columns = []
        for title, nid in self._nodes(chosen):
            if nid is None:
                continue
            maps = self.flow.sample_maps(nid, sample)
            grid = None
            caption = ""
            if top:
                order = channel_order(maps, "mean")[:top]
                grid = render_activation_grid(
                    maps, channels=order, cmap=cmap, labels=True, cols=min(4, len(order)), max_side=1024
                ).pixels
                caption = f"top {len(order)} of {maps.shape[0]} channels by mean"
            finite = maps[np.isfinite(maps)]
            stats = f" | mean {finite.mean():.3g} | max {finite.max():.3g}" if finite.size else ""
            columns.append(
                PanelColumn(
                    title=title,
                    name=self.flow.name(nid),
                    subtitle=_shape_text(maps.shape) + stats,
                    mean_image=colorize_map(map_to_2d(maps, "mean"), cmap),
                    grid_image=grid,
                    grid_caption=caption,
                )
            )
        footer = []
        for m in self.metrics:
            if chosen is not None and m.merge != self.flow.name(chosen.merge) and len(self.metrics) > 4:
                continue
            footer.append(
                f"skip {m.source} -> {m.merge} ({m.merge_kind}): energy share {_share_text(m.energy_share)}, "
                f"gradient share {_share_text(m.gradient_share)}"
            )
        if footer:
            footer.append(
                "energy share: skip's fraction of the merge's summed squared activation; gradient share: its "
                "fraction of |input x gradient| of the output score"
            )
        spatial = "x".join(map(str, self.level.spatial))
        what = "encoder | skip | upsampled decoder | merged" if chosen else "no skip connection at this level"
        if not columns:
            raise ConvscopeError(f"level {self.index} has no captured tensors to show")
        picture = render_level_panels(columns, title=f"level {self.index} ({spatial}): {what}", footer=footer)
        picture.meta.update(
            kind="unet_level",
            level=self.index,
            layer=self.flow.name(chosen.merge) if chosen else None,
            shape=list(self.level.shape),
            sample=sample,
        )
        return picture


class UNetFlow:
    """The anatomy, activations and skip metrics of one U-Net forward pass.

    Attributes:
        structure: :class:`~convscope.core.unet.UNetStructure` (node ids; torch ids are names).
        graph: the dataflow graph of the pass.
        metrics: one :class:`SkipMetrics` per skip, in ``structure.skips`` order.
        values: node id -> ``(N, *shape)`` float32 for the nodes the figures need.
        batch: the ``(N, C, *spatial)`` input.
        display: ``(H, W, 3)`` uint8 picture of the input (sample 0), or None.
    """

    def __init__(
        self,
        structure: UNetStructure,
        graph: Graph,
        values: dict[str, np.ndarray],
        metrics: list[SkipMetrics],
        *,
        batch: np.ndarray,
        display: np.ndarray | None = None,
    ) -> None:
        self.structure = structure
        self.graph = graph
        self.values = values
        self.metrics = metrics
        self.batch = batch
        self.display = display

    def __repr__(self) -> str:
        return f"UNetFlow(\n{self.structure.summary(self.graph)}\n)"

    def name(self, node_id: str) -> str:
        """The node's name (what unet.json and the figures show)."""
        return self.graph.name_of(node_id)

    @property
    def levels(self) -> tuple[LevelView, ...]:
        return tuple(LevelView(self, i) for i in range(self.structure.depth))

    def level(self, index: int) -> LevelView:
        """The view of level ``index`` (0 = highest resolution, ``depth - 1`` above the bottleneck)."""
        if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < self.structure.depth:
            raise ValueError(
                f"level {index!r} does not exist: this U-Net has levels 0..{self.structure.depth - 1} above the "
                "bottleneck"
            )
        return LevelView(self, int(index))

    def activation(self, node_id: str) -> np.ndarray:
        """``(N, *shape)`` float32 value of a captured node."""
        if node_id not in self.values:
            if node_id in self.graph:
                raise ConvscopeError(
                    f"node {node_id!r} was not kept in this flow; captured nodes: {', '.join(sorted(self.values)[:8])}..."
                )
            self.graph.node(node_id)  # raises LayerNotFoundError with close matches
        return self.values[node_id]

    def sample_maps(self, node_id: str, sample: int = 0) -> np.ndarray:
        """``(C, *spatial)`` maps of one sample (extra leading axes, e.g. of ``stack``, folded into C)."""
        value = self.activation(node_id)
        if not -value.shape[0] <= sample < value.shape[0]:
            raise ValueError(f"sample {sample} is out of range: the batch has {value.shape[0]} sample(s)")
        maps = value[sample]
        dims = self.structure.spatial_dims
        if maps.ndim > dims + 1:
            maps = maps.reshape(-1, *maps.shape[-dims:])
        return maps

    # -- figures --------------------------------------------------------------------------------
    def _thumb(self, node_id: str, mode: str, cmap: str, sample: int) -> np.ndarray:
        from .render.flow import colorize_map, map_to_2d

        return colorize_map(map_to_2d(self.sample_maps(node_id, sample), mode), cmap)

    def prediction_image(self, sample: int = 0, *, overlay: bool = True) -> np.ndarray:
        """``(h, w, 3)`` uint8 picture of the main output: class colours (argmax) for several channels,
        a heat map for one channel; blended over the input picture when ``overlay`` and one is known."""
        from .render.flow import blend, colorize_map, label_image, map_to_2d, resize_nearest

        maps = self.sample_maps(self.structure.output, sample)
        if maps.shape[0] > 1:
            labels = np.argmax(np.nan_to_num(maps, nan=-np.inf), axis=0)
            if labels.ndim == 3:
                labels = labels[labels.shape[0] // 2]
            if labels.ndim == 1:
                labels = np.repeat(labels[None], max(4, labels.shape[0] // 8), axis=0)
            picture = label_image(labels).astype(np.uint8)
        else:
            picture = colorize_map(map_to_2d(maps, "mean"), "magma")
        if overlay and self.display is not None and self.structure.spatial_dims >= 2:
            return blend(self.display, resize_nearest(picture, *self.display.shape[:2]), 0.5)
        return picture

    def _input_image(self, sample: int) -> np.ndarray:
        from .render.flow import colorize_map, map_to_2d

        if self.display is not None and sample == 0:
            return self.display
        return colorize_map(map_to_2d(self.batch[sample], "mean"), "gray")

    def figure(self, *, thumbnail: str = "mean", cmap: str = "viridis", sample: int = 0, thumb: int = 112) -> Picture:
        """The U picture: encoder down the left, bottleneck at the bottom, decoder up the right.

        Args:
            thumbnail: ``"mean"`` (channel mean) or ``"top"`` (the channel with the largest mean).
            cmap: colormap of the thumbnails.
            sample: which sample of the batch.
            thumb: thumbnail size in pixels.

        Returns:
            :class:`~convscope.render.picture.Picture`; input at the top left, output (prediction
            over the input) at the top right, skip arrows labelled with their merge kind and the
            energy (E) and gradient (G) shares.
        """
        from .render.flow import FlowBlock, FlowLink, render_flow_figure

        if thumbnail not in ("mean", "top"):
            raise ValueError(f"thumbnail must be 'mean' (channel mean) or 'top' (strongest channel), not {thumbnail!r}")
        s = self.structure
        blocks = [
            FlowBlock("input", "input", 0, f"input {self.name(s.input)}" if self.name(s.input) != "input" else "input",
                      _shape_text(self.graph.node(s.input).shape), self._input_image(sample)),
            FlowBlock("output", "output", 0, f"output: {self.name(s.output)}",
                      _shape_text(self.graph.node(s.output).shape), self.prediction_image(sample)),
        ]
        links: list[FlowLink] = []
        previous = "input"
        for lvl in s.levels:
            if lvl.encoder_output is not None:
                key = f"enc{lvl.index}"
                blocks.append(FlowBlock(key, "encoder", lvl.index, self.name(lvl.encoder_output),
                                        _shape_text(self.graph.node(lvl.encoder_output).shape),
                                        self._thumb(lvl.encoder_output, thumbnail, cmap, sample)))
                links.append(FlowLink(previous, key, "io" if previous == "input" else "down"))
                previous = key
        blocks.append(FlowBlock("bottleneck", "bottleneck", s.depth, self.name(s.bottleneck_output),
                                _shape_text(s.bottleneck_shape), self._thumb(s.bottleneck_output, thumbnail, cmap, sample)))
        links.append(FlowLink(previous, "bottleneck", "down"))
        previous = "bottleneck"
        for lvl in reversed(s.levels):
            if lvl.decoder_output is None:
                continue
            key = f"dec{lvl.index}"
            blocks.append(FlowBlock(key, "decoder", lvl.index, self.name(lvl.decoder_output),
                                    _shape_text(self.graph.node(lvl.decoder_output).shape),
                                    self._thumb(lvl.decoder_output, thumbnail, cmap, sample)))
            links.append(FlowLink(previous, key, "up"))
            previous = key
        links.append(FlowLink(previous, "output", "io"))
        for lvl in s.levels:
            skip = s.primary_skip(lvl.index)
            if skip is None:
                continue
            count = len(s.skips_at(lvl.index))
            metric = next(m for m, k in zip(self.metrics, s.skips) if k is skip)
            label = f"{skip.merge_kind}" + (f" (1 of {count} skips)" if count > 1 else "")
            label += f"\nE {_share_text(metric.energy_share)} | G {_share_text(metric.gradient_share)}"
            links.append(FlowLink(f"enc{lvl.index}", f"dec{lvl.index}", "skip", label))
        title = (
            f"U-Net flow: {s.num_levels} levels, {len(s.skips)} skip(s), {s.spatial_dims}D "
            f"- thumbnails: {'channel mean' if thumbnail == 'mean' else 'top channel'}"
        )
        legend = (
            "blue: encoder (down) | green: decoder (up) | orange: skip connection\n"
            "E = energy share, G = gradient share of the skip branch at its merge (0: unused, 0.5: as much as the decoder)"
        )
        picture = render_flow_figure(blocks, links, depth=s.depth, title=title, thumb=thumb, legend=legend)
        picture.meta.update(kind="unet_flow", layer=self.name(s.output), thumbnail=thumbnail, sample=sample)
        return picture

    # -- files ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The anatomy and skip metrics as a JSON-ready dict (written to ``unet.json``).

        Schema (names are node names; levels are ordered from the input's resolution down)::

            {
              "levels": [{"level": 0, "shape": [C, H, W], "encoder": [names], "decoder": [names]}],
              "bottleneck": [names],
              "skips": [{"level": 0, "from": name, "to": name, "merge": "concat" | "add",
                         "energy_share": x, "gradient_share": y,
                         "skip_input": name, "decoder_input": name}],
              "input": name, "output": name, "side_outputs": [names],
              "bottleneck_shape": [C, h, w], "spatial_dims": 2
            }

        ``shape`` is ``(C, *spatial)`` of the level's encoder output (``[C, D, H, W]`` in 3D);
        ``energy_share``/``gradient_share`` are in ``[0, 1]`` or null when undefined; ``from`` is
        the skip's source tensor, ``to`` the merge node; ``skip_input``/``decoder_input`` are the two
        branches as they enter the merge. Keys after ``skips`` are additions to the core schema.
        """
        s = self.structure
        skips = []
        for skip, metric in zip(s.skips, self.metrics):
            entry = metric.to_dict()
            entry["skip_input"] = self.name(skip.skip_input)
            entry["decoder_input"] = self.name(skip.decoder_input)
            skips.append(entry)
        return {
            "levels": [
                {
                    "level": lvl.index,
                    "shape": list(lvl.shape),
                    "encoder": [self.name(n) for n in lvl.encoder],
                    "decoder": [self.name(n) for n in lvl.decoder],
                }
                for lvl in s.levels
            ],
            "bottleneck": [self.name(n) for n in s.bottleneck],
            "skips": skips,
            "input": self.name(s.input),
            "output": self.name(s.output),
            "side_outputs": [self.name(n) for n in s.side_outputs],
            "bottleneck_shape": list(s.bottleneck_shape),
            "spatial_dims": s.spatial_dims,
        }

    def save(self, out_dir: str | os.PathLike[str], *, thumbnail: str = "mean", top: int = 8) -> list[Path]:
        """Write ``flow.png``, ``level-N.png`` (one per level), ``unet.json`` and ``manifest.json``.

        Every file is written atomically; the manifest lists each file with its ``kind``
        (``unet_flow``, ``unet_level``, ``unet_json``), ``layer`` (node name) and ``shape``.

        Returns:
            The written paths, ``manifest.json`` last.
        """
        from .io.output import OutputDir

        written: list[Path] = []
        with OutputDir(out_dir, info={"command": "unet"}) as out:
            out.add_picture("flow.png", self.figure(thumbnail=thumbnail), kind="unet_flow",
                            layer=self.name(self.structure.output),
                            shape=list(self.graph.node(self.structure.output).shape or ()))
            written.append(out.path / "flow.png")
            for view in self.levels:
                rel = f"level-{view.index}.png"
                skip = view.skip
                out.add_picture(rel, view.panels(top=top), kind="unet_level", level=view.index,
                                layer=self.name(skip.merge) if skip else None, shape=list(view.level.shape))
                written.append(out.path / rel)
            out.add_json("unet.json", self.to_json(), kind="unet_json", layer=None, shape=None)
            written.append(out.path / "unet.json")
        written.append(out.path / "manifest.json")
        return written


# ------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------


def _needed_nodes(structure: UNetStructure, graph: Graph) -> set[str]:
    ids = {structure.input, structure.output, structure.bottleneck_output}
    for lvl in structure.levels:
        ids.update(n for n in (lvl.encoder_output, lvl.decoder_output) if n is not None)
    for skip in structure.skips:
        ids.update((skip.source, skip.skip_input, skip.decoder_input, skip.merge))
        ids.update(graph.node(skip.merge).inputs)
    return ids


def build_unet_flow(
    backend: UNetBackend,
    batch: np.ndarray,
    display_image: np.ndarray | None = None,
    *,
    target: int | None = None,
    mask: Any = None,
) -> UNetFlow:
    """Find the U-Net in one forward pass of ``batch`` and capture its flow and skip metrics.

    Args:
        backend: a :class:`UNetBackend` (see :func:`unet_backend_for`).
        batch: ``(N, C, *spatial)`` float32 input, channels first (1 to 3 spatial axes).
        display_image: ``(H, W, 3)`` uint8 picture of sample 0 (or ``(N, H, W, 3)``), for the figure.
        target: output channel for the gradient share's score (default: the predicted class).
        mask: ``(*spatial)`` 0/1 region for the score (default: every pixel).

    Returns:
        :class:`UNetFlow`.

    Raises:
        NotAUNet: the model is not U-Net shaped (the message says what was found).
        ConvscopeError: bad batch, display image, target or mask.
    """
    arr = np.asarray(batch)
    if arr.ndim not in (3, 4, 5) or not np.issubdtype(arr.dtype, np.floating):
        raise ConvscopeError(
            f"batch must be a float (N, C, *spatial) array with 1 to 3 spatial axes, got shape {arr.shape} {arr.dtype}; "
            "prepare images with scope.prepare(image)"
        )
    display = None
    if display_image is not None:
        display = np.asarray(display_image)
        if display.ndim == 4:
            display = display[0]
        if display.dtype != np.uint8 or display.ndim != 3 or display.shape[2] != 3:
            raise ConvscopeError(
                f"display_image must be an (H, W, 3) uint8 picture, got shape {display.shape} {display.dtype}"
            )
    found: dict[str, UNetStructure] = {}

    def request(graph: Graph) -> CaptureRequest:
        structure = find_unet(graph)
        found["structure"] = structure
        merges = tuple(dict.fromkeys(s.merge for s in structure.skips))
        return CaptureRequest(values=frozenset(_needed_nodes(structure, graph)), merges=merges, objective=structure.output)

    capture = backend.capture_graph(arr, request, target=target, mask=mask)
    structure = found.get("structure") or find_unet(capture.graph)
    metrics = skip_metrics(structure, capture.graph, capture.values, capture.input_x_gradient)
    return UNetFlow(structure, capture.graph, capture.values, metrics, batch=arr, display=display)
