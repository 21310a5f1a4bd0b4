"""The U-Net view objects: :class:`UNetFlow` (the U picture, skip table, files), its
:class:`LevelView` per level and :class:`UNetCam` (attribution maps on the U).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.graph import Graph
from ..core.view import FIRST_AXIS, MiddleView
from ..core.unet import Level, Skip, UNetStructure
from ..errors import ConvscopeError, UnsupportedModelError
from .metrics import SkipMetrics, SkipMetricsList, skip_table

if TYPE_CHECKING:
    from ..render.picture import Picture

__all__ = ["LevelView", "UNetFlow", "UNetCam"]


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

    def panels(
        self, top: int = 8, *, cmap: str = "viridis", sample: int = 0, skip: int | None = None, cam: UNetCam | None = None
    ) -> Picture:
        """Encoder output | skip as it enters the merge | upsampled decoder | merged result.

        Each panel: the channel-mean map and a grid of the ``top`` channels with the largest mean.
        With ``cam`` (from :meth:`UNetFlow.cam`) a last column shows this level's CAMs on the flow's
        shared scale: the decoder output large, and encoder | skip branch | decoder branch | decoder below.

        Args:
            top: channels per grid (``0`` for no grids).
            cmap: colormap name.
            sample: which sample of the batch.
            skip: which skip of this level (index into :attr:`skips`; default the primary one).
        """
        from ..core.activations import channel_order
        from ..render.colormap import get_colormap
        from ..render.flow import PanelColumn, colorize_map, map_to_2d, render_level_panels
        from ..render.grid import render_activation_grid

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
                scan = self.flow.view.plane is not None
                grid = render_activation_grid(
                    maps, channels=order, cmap=cmap, labels=True, cols=min(4, len(order)), max_side=1024,
                    orientation="radiological" if scan and maps.ndim == 4 else "array",
                ).pixels
                caption = f"top {len(order)} of {maps.shape[0]} channels by mean, each on its own min-max"
                if scan and maps.ndim == 4:
                    caption += "; each cell: sagittal | coronal | axial, radiological"
            mean_map = map_to_2d(maps, "mean", self.flow.view)
            finite = maps[np.isfinite(maps)]
            stats = f" | mean {finite.mean():.3g} | max {finite.max():.3g}" if finite.size else ""
            columns.append(
                PanelColumn(
                    title=title,
                    name=self.flow.name(nid),
                    subtitle=_shape_text(maps.shape) + stats,
                    mean_image=self.flow._stretch(colorize_map(mean_map, cmap), maps.shape),
                    mean_range=_finite_range(mean_map),
                    lut=get_colormap(cmap),
                    grid_image=grid,
                    grid_caption=caption,
                )
            )
        if cam is not None:
            column = cam.level_column(self.index, sample=sample)
            if column is not None:
                columns.append(column)
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
        if self.flow.structure.spatial_dims == 3:
            footer.append(f"3D maps shown as the {self.flow.view.label()}"
                          + (" (radiological: patient left on the image's right, anterior at the top)"
                             if self.flow.view.plane else ""))
        what = "encoder | skip | upsampled decoder | merged" if chosen else "no skip connection at this level"
        if chosen is not None and len(self.skips) > 1:  # say which of the level's skips these panels show
            k = self.skips.index(chosen)
            what += (f" - skip {k + 1} of {len(self.skips)}: {self.flow.name(chosen.source)} -> "
                     f"{self.flow.name(chosen.merge)} (panels(skip=i) for the others)")
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
        if self.flow.structure.spatial_dims == 3:
            picture.meta["view"] = self.flow.view.describe()
        return picture


def _finite_range(amap: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite values (the colours' ends of a min-max map), or None."""
    finite = amap[np.isfinite(amap)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


class UNetFlow:
    """The anatomy, activations and skip metrics of one U-Net forward pass.

    Attributes:
        structure: :class:`~convscope.core.unet.UNetStructure` (node ids; torch ids are names).
        graph: the dataflow graph of the pass.
        metrics: one :class:`SkipMetrics` per skip, in ``structure.skips`` order.
        values: node id -> ``(N, *shape)`` float32 for the nodes the figures need.
        batch: the ``(N, C, *spatial)`` input.
        display: ``(H, W, 3)`` uint8 picture of the input (sample 0), or None.
        view: for a 3D U-Net, how every 3D map becomes a picture (:class:`~convscope.core.view.MiddleView`;
            :meth:`convscope.Scope.unet` sets a volume's axial middle plane); default the middle slice
            along the first spatial axis.
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
        adapter: Any = None,
        view: MiddleView | None = None,
    ) -> None:
        self.view: MiddleView = view or FIRST_AXIS
        self.adapter = adapter  # the model adapter, for flow.cam (gradients at the levels)
        self.structure = structure
        self.graph = graph
        self.values = values
        self.metrics = SkipMetricsList(metrics)
        self.batch = batch
        self.display = display

    def __repr__(self) -> str:
        return f"UNetFlow(\n{self.structure.summary(self.graph)}\n)"

    def _repr_html_(self) -> str:
        """Jupyter: the levels (size, channels, encoder/decoder node) and the skip metrics, as tables."""
        import html

        from .._html import plural, table

        st = self.structure

        def nm(node: str | None) -> str:
            return "-" if node is None else (self.graph.name_of(node) if node in self.graph else node)

        levels = [[str(lvl.index), "x".join(map(str, lvl.spatial)), str(lvl.channels), nm(lvl.encoder_output),
                   nm(lvl.decoder_output)] for lvl in st.levels]
        head = (f"<p><b>U-Net</b>, {st.spatial_dims}D, {plural(st.num_levels, 'resolution level')}, "
                f"{plural(len(st.skips), 'skip')}; bottleneck {html.escape(nm(st.bottleneck_output))} "
                f"({'x'.join(map(str, st.bottleneck_shape[1:]))})</p>")
        return (head + table(["level", "size", "channels", "encoder", "decoder"], levels, caption="levels")
                + skip_table(list(self.metrics), nm))

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
        from ..render.flow import colorize_map, map_to_2d

        return colorize_map(map_to_2d(self.sample_maps(node_id, sample), mode, self.view), cmap)

    def _stretch(self, picture: np.ndarray, shape: Sequence[int] | None = None) -> np.ndarray:
        """A 3D map's picture at the physical aspect of :attr:`view` (``shape``: the map's, default the batch's)."""
        if self.structure.spatial_dims != 3:
            return picture
        return self.view.stretch(picture, tuple(shape) if shape is not None else tuple(self.batch.shape[2:]))

    def prediction_image(self, sample: int = 0, *, overlay: bool = True) -> np.ndarray:
        """``(h, w, 3)`` uint8 picture of the main output: class colours (argmax) for several channels,
        a heat map for one channel; blended over the input picture when ``overlay`` and one is known."""
        from ..render.flow import blend, colorize_map, label_image, map_to_2d, resize_nearest

        maps = self.sample_maps(self.structure.output, sample)
        if maps.shape[0] > 1:
            labels = np.argmax(np.nan_to_num(maps, nan=-np.inf), axis=0)
            if labels.ndim == 3:
                labels = self.view.take(labels)
            if labels.ndim == 1:
                labels = np.repeat(labels[None], max(4, labels.shape[0] // 8), axis=0)
            picture = label_image(labels).astype(np.uint8)
        else:
            picture = colorize_map(map_to_2d(maps, "mean", self.view), "magma")
        if overlay and self.display is not None and self.structure.spatial_dims >= 2:
            return blend(self.display, resize_nearest(picture, *self.display.shape[:2]), 0.5)
        return picture

    def _input_image(self, sample: int) -> np.ndarray:
        from ..render.flow import colorize_map, map_to_2d

        if self.display is not None and sample == 0:
            return self.display
        return colorize_map(map_to_2d(self.batch[sample], "mean", self.view), "gray")

    def _block(self, key: str, column: str, level: int, node_id: str, pixels: np.ndarray, role: str,
               shape: Sequence[int] | None = None) -> Any:
        from ..render.flow import FlowBlock

        name = self.name(node_id)
        return FlowBlock(key, column, level, name, _shape_text(shape or self.graph.node(node_id).shape), pixels,
                         hover=f"{role}: {name}")

    def figure(
        self, *, thumbnail: str = "mean", cmap: str = "viridis", sample: int = 0, thumb: int = 112, cam: UNetCam | None = None
    ) -> Picture:
        """The U picture: encoder down the left, bottleneck at the bottom, decoder up the right.

        Args:
            thumbnail: ``"mean"`` (channel mean) or ``"top"`` (the channel with the largest mean).
            cam: a :meth:`cam` result: the thumbnails are then its maps (one shared scale) over the input.
            cmap: colormap of the thumbnails.
            sample: which sample of the batch.
            thumb: thumbnail size in pixels.

        Returns:
            :class:`~convscope.render.picture.Picture`; input at the top left, output (prediction
            over the input) at the top right, skip arrows labelled with their merge kind and the
            energy (E) and gradient (G) shares.
        """
        from ..render.flow import FlowBlock, FlowLink, render_flow_figure

        if thumbnail not in ("mean", "top"):
            raise ValueError(f"thumbnail must be 'mean' (channel mean) or 'top' (strongest channel), not {thumbnail!r}")
        s = self.structure

        def picture_of(node_id: str, role: str) -> np.ndarray:
            if cam is not None and role in cam.maps:
                return cam.maps[role].overlay(sample=sample, colorbar=False).pixels  # stretched by the CAM's view
            return self._stretch(self._thumb(node_id, thumbnail, cmap, sample), self.sample_maps(node_id, sample).shape)

        blocks = [
            FlowBlock("input", "input", 0, f"input {self.name(s.input)}" if self.name(s.input) != "input" else "input",
                      _shape_text(self.graph.node(s.input).shape), self._stretch(self._input_image(sample))),
            FlowBlock("output", "output", 0, f"output: {self.name(s.output)}",
                      _shape_text(self.graph.node(s.output).shape), self._stretch(self.prediction_image(sample))),
        ]
        links: list[FlowLink] = []
        previous = "input"
        enc_key: dict[int, str] = {}
        dec_key: dict[int, str] = {}
        for lvl in s.levels:
            at = s.skips_at(lvl.index)
            # the tensor the skip leaves from (else the first skip source of the level)
            enc = lvl.encoder_output or (at[0].source if at else None)
            if enc is not None:
                key = enc_key[lvl.index] = f"enc{lvl.index}"
                blocks.append(self._block(key, "encoder", lvl.index, enc, picture_of(enc, f"encoder {lvl.index}"),
                                          "skip source" if at else "encoder output"))
                links.append(FlowLink(previous, key, "io" if previous == "input" else "down"))
                previous = key
        blocks.append(self._block("bottleneck", "bottleneck", s.depth, s.bottleneck_output,
                                  picture_of(s.bottleneck_output, "bottleneck"), "bottleneck output",
                                  shape=s.bottleneck_shape))
        links.append(FlowLink(previous, "bottleneck", "down"))
        previous = "bottleneck"
        for lvl in reversed(s.levels):
            at = s.skips_at(lvl.index)
            # the tensor the decoder produces at this resolution (else the level's last merge)
            dec = lvl.decoder_output or (at[-1].merge if at else None)
            if dec is None:
                continue
            key = dec_key[lvl.index] = f"dec{lvl.index}"
            blocks.append(self._block(key, "decoder", lvl.index, dec, picture_of(dec, f"decoder {lvl.index}"),
                                      "decoder output"))
            links.append(FlowLink(previous, key, "up"))
            previous = key
        links.append(FlowLink(previous, "output", "io"))
        for skip, metric in zip(s.skips, self.metrics):  # every skip gets its own arrow and label
            if skip.level >= s.depth:  # the bottom level's skip: a loop at the bottleneck block
                src = dst = "bottleneck"
            else:
                src = enc_key.get(skip.level, f"enc{skip.level}")
                dst = dec_key.get(skip.level, f"dec{skip.level}")
            source, merge = self.name(skip.source), self.name(skip.merge)
            shares = f"E {_share_text(metric.energy_share)} | G {_share_text(metric.gradient_share)}"
            label = f"{source} -> {merge}\n{skip.merge_kind} | {shares}"
            hover = (f"{'bottom skip' if src == dst else f'level {skip.level} skip'}: {source} -> {merge} "
                     f"({skip.merge_kind}), energy share {_share_text(metric.energy_share)}, "
                     f"gradient share {_share_text(metric.gradient_share)}")
            links.append(FlowLink(src, dst, "skip", label, hover))
        title = (
            f"U-Net flow: {s.num_levels} levels, {len(s.skips)} skip(s), {s.spatial_dims}D "
            f"- thumbnails: {'channel mean' if thumbnail == 'mean' else 'top channel'}"
        )
        if cam is not None:
            title = (f"U-Net flow: {s.num_levels} levels, {s.spatial_dims}D - thumbnails: {cam.method} for "
                     f"{_target_text(cam.cams.target)} (one scale)")
        legend = (
            "blue: encoder (down), the tensor the level's skip leaves from | green: decoder (up), the tensor the "
            "decoder produces at that resolution\norange: one arrow per skip connection, labelled source -> merge"
            + (" (the loop at the bottleneck: the bottom level's skip)" if s.bottom_skip else "")
            + "\nE = energy share, G = gradient share of the skip branch at its merge (0: unused, 0.5: as much as the decoder)"
        )
        if s.spatial_dims == 3:
            legend += (f"\n3D maps shown as the {self.view.label()}"
                       + (" (radiological: patient left on the image's right, anterior at the top)" if self.view.plane else ""))
        from ..render.colormap import get_colormap

        picture = render_flow_figure(blocks, links, depth=s.depth, title=title, thumb=thumb, legend=legend,
                                     colorbar_lut=get_colormap("jet" if cam is not None else cmap))  # CAM thumbnails: jet overlays
        picture.meta.update(kind="unet_flow", layer=self.name(s.output), thumbnail="cam" if cam else thumbnail,
                            sample=sample)
        if s.spatial_dims == 3:
            picture.meta["view"] = self.view.describe()
        return picture

    # -- attribution ---------------------------------------------------------------------------
    def cam_roles(self) -> list[tuple[str, str]]:
        """``(role, node id)`` for every map :meth:`cam` draws: each encoder level, the bottleneck, each
        decoder level and both branches (skip, upsampled decoder) of every skip merge, in U order."""
        s = self.structure
        roles: list[tuple[str, str]] = []
        for lvl in s.levels:
            if lvl.encoder_output is not None:
                roles.append((f"encoder {lvl.index}", lvl.encoder_output))
        roles.append(("bottleneck", s.bottleneck_output))
        for lvl in reversed(s.levels):
            at_level = s.skips_at(lvl.index)
            for k, skip in enumerate(at_level):
                tag = f"skip {lvl.index}" + (f".{k}" if len(at_level) > 1 else "")
                roles.append((f"{tag}: skip branch", skip.skip_input))
                roles.append((f"{tag}: decoder branch", skip.decoder_input))
            if lvl.decoder_output is not None:
                roles.append((f"decoder {lvl.index}", lvl.decoder_output))
        return roles

    def cam(
        self,
        target: Any = None,
        method: str = "gradcam",
        *,
        relu: bool = True,
        cam_normalize: str = "max",
        progress: bool = True,
    ) -> UNetCam:
        """One CAM per encoder level, the bottleneck, each decoder level and both branches of every skip
        merge, for ``target`` (default: the predicted class over the whole output), on ONE shared scale.

        ONE forward + ONE backward pass (after the flow's own pass). Maps exist for tensors a module
        produced (the usual case); a branch made by a functional op (a crop, ``F.interpolate``) is listed
        in :attr:`UNetCam.missing` with the reason.
        """
        from ..cam import compute_cams
        from ..core import targets as tg
        from ..core.attribution import PostProcess, check_methods

        adapter = self.adapter
        if adapter is None:
            raise UnsupportedModelError("this flow was built without a model adapter; build it with scope.unet(image)")
        (name,) = check_methods(method)
        if target is None:
            target = tg.segmentation()
        layer_of: dict[str, str] = {}
        missing: dict[str, str] = {}
        known = {info.name for info in adapter.layers()}
        for role, nid in self.cam_roles():
            node = self.graph.node(nid)
            base = node.name.rpartition("#")[0] if "#" in node.name else node.name
            if node.module_type is None:
                missing[role] = f"{node.name} is made by a functional op ({node.op}), not a module: no hook point"
            elif base not in known:
                missing[role] = f"{node.name} is not a named layer of the model"
            else:
                layer_of[role] = node.name
        post = PostProcess(relu=relu, normalize=cam_normalize, scope="shared")  # type: ignore[arg-type]
        display = None if self.display is None else self.display[None]
        cams = compute_cams(adapter, self.batch, list(dict.fromkeys(layer_of.values())), target, [name], post=post,
                            display=display, progress=progress,
                            view=self.view if self.structure.spatial_dims == 3 else None)
        by_role = {role: cams[(layer, name)] for role, layer in layer_of.items()}
        return UNetCam(flow=self, maps=by_role, missing=missing, cams=cams, method=name)

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

    def save(
        self, out_dir: str | os.PathLike[str], *, thumbnail: str = "mean", top: int = 8,
        formats: str | Sequence[str] = ("png",), volume: Any = None, info: dict[str, Any] | None = None,
        cams: Sequence[UNetCam] = (), planes: Sequence[tuple[str, Any]] | None = None,
    ) -> list[Path]:
        """Write ``flow.png``, ``level-N.png`` (one per level), ``unet.json`` and ``manifest.json``
        (and per :meth:`cam` result in ``cams`` a CAM row ``cam[-class-C].png`` with ``cam[-class-C].json``).

        ``formats`` (``"png"``, ``"svg"``, ``"pdf"`` or several, ``"pdf,svg"``) writes each figure in
        each format (``flow.pdf``, ``level-0.pdf``...): one page per figure, text as text.
        ``planes``: ``[(file name, Picture)]`` plane figures made elsewhere (a 2D U-Net on a volume's
        slices: :class:`convscope.volume_views.SliceStack`), written instead of a 3D scan's.
        Every file is written atomically; the manifest lists each file with its ``kind``
        (``unet_flow``, ``unet_level``, ``unet_json``), ``layer`` (node name) and ``shape``.

        Returns:
            The written paths, ``manifest.json`` last.
        """
        from ..io.output import OutputDir
        from ..render.scene import parse_formats

        chosen = parse_formats(formats)
        written: list[Path] = []
        info = {"command": "unet", **(info or {})}
        if volume is not None:  # a VolumeInput (3D scan): geometry, intensity and window in the manifest
            info["volume"] = volume.describe()
        with OutputDir(out_dir, info=info, formats=chosen) as out:
            if planes is None and volume is not None and self.structure.spatial_dims == 3:
                from ..volume_views import unet_planes

                planes = unet_planes(self, volume)
            if planes is not None:
                for rel, picture in planes:
                    out.add_picture(rel, picture, kind="volume_planes", layer=picture.meta.get("layer"))
                    written.append(out.path / rel)
            out.add_picture("flow.png", self.figure(thumbnail=thumbnail), kind="unet_flow",
                            layer=self.name(self.structure.output),
                            shape=list(self.graph.node(self.structure.output).shape or ()))
            written += [out.path / f"flow.{fmt}" for fmt in chosen]
            for view in self.levels:
                rel = f"level-{view.index}.png"
                skip = view.skip
                out.add_picture(rel, view.panels(top=top, cam=cams[0] if cams else None), kind="unet_level", level=view.index,
                                layer=self.name(skip.merge) if skip else None, shape=list(view.level.shape))
                written += [out.path / f"level-{view.index}.{fmt}" for fmt in chosen]
            out.add_json("unet.json", self.to_json(), kind="unet_json", layer=None, shape=None)
            written.append(out.path / "unet.json")
            for cam in cams:
                cls = cam.cams.target.get("class")
                stem = "cam" if len(cams) == 1 or not isinstance(cls, int) else f"cam-class-{cls}"
                stem = out.unique_name(stem, ".png")[: -len(".png")]
                out.add_picture(f"{stem}.png", cam.figure(), kind="unet_cam", method=cam.method, target=cam.cams.target,
                                post_processing=next(iter(cam.maps.values())).post.describe() if cam.maps else None)
                out.add_json(f"{stem}.json", cam.to_json(), kind="unet_cam_json", layer=None, shape=None)
                out.add_picture(f"{stem}-flow.png", self.figure(cam=cam), kind="unet_cam_flow", method=cam.method,
                                target=cam.cams.target)
                written += [out.path / f"{name}.{fmt}" for name in (stem, f"{stem}-flow") for fmt in chosen]
                written.append(out.path / f"{stem}.json")
        written.append(out.path / "manifest.json")
        return written


class UNetCam:
    """The CAMs of :meth:`UNetFlow.cam`: ``maps`` role -> :class:`~convscope.cam.CamResult`, one shared scale.

    Attributes:
        maps: ``"encoder 0"``..., ``"bottleneck"``, ``"skip 0: skip branch"``, ``"skip 0: decoder branch"``,
            ``"decoder 0"``... in U order (down the encoder, up the decoder).
        missing: role -> why it has no map.
        cams: the underlying :class:`~convscope.cam.CamSet` (manifest, passes, notes).
        method: the method used.
    """

    def __init__(self, *, flow: UNetFlow, maps: dict[str, Any], missing: dict[str, str], cams: Any, method: str) -> None:
        self.flow = flow
        self.maps = maps
        self.missing = missing
        self.cams = cams
        self.method = method

    def __repr__(self) -> str:
        return f"UNetCam({self.method}: {len(self.maps)} maps, {len(self.missing)} missing)"

    def to_json(self) -> dict[str, Any]:
        """Method, target, passes, per role the map's description, and the missing roles."""
        return {
            "method": self.method,
            "target": self.cams.target,
            "passes": self.cams.passes,
            "scale": "one scale per image shared across all U-Net levels and branches",
            "maps": [{"role": role, **cam.describe()} for role, cam in self.maps.items()],
            "missing": self.missing,
        }

    def level_column(self, level: int, *, sample: int = 0, cmap: str = "jet", alpha: float = 0.5) -> Any:
        """A :class:`~convscope.render.flow.PanelColumn` of one level's CAMs (None if the level has none)."""
        from ..render.flow import PanelColumn, fit_into

        roles = [f"encoder {level}", f"skip {level}: skip branch", f"skip {level}: decoder branch", f"decoder {level}"]
        have = [(r, self.maps[r]) for r in roles if r in self.maps]
        if not have:
            return None
        tiles = [fit_into(c.overlay(sample=sample, cmap=cmap, alpha=alpha, colorbar=False).pixels, 96, 96) for _, c in have]
        h = max(t.shape[0] for t in tiles)
        strip = np.full((h, sum(t.shape[1] for t in tiles) + 4 * (len(tiles) - 1), 3), 255, dtype=np.uint8)
        x = 0
        for t in tiles:
            strip[: t.shape[0], x : x + t.shape[1]] = t
            x += t.shape[1] + 4
        main_role, main = have[-1]
        lo, hi = (float(v) for v in main.scale[sample])
        return PanelColumn(
            title=f"{self.method} ({main_role})",
            name=main.layer,
            subtitle=f"one scale for all levels: 0..{hi:.3g}" if lo == 0 else f"scale {lo:.3g}..{hi:.3g}",
            mean_image=main.overlay(sample=sample, cmap=cmap, alpha=alpha, colorbar=True).pixels,
            grid_image=strip,
            grid_caption=" | ".join(r.split(": ")[-1].replace(f" {level}", "") for r, _ in have),
        )

    def figure(self, *, sample: int = 0, cmap: str = "jet", alpha: float = 0.5, thumb: int = 112) -> Picture:
        """The CAM row: one overlay per role (U order), labelled, with the one shared colour scale."""
        from ..cam import render_cam_row

        tiles = []
        for role, cam in self.maps.items():
            pic = cam.overlay(sample=sample, cmap=cmap, alpha=alpha, colorbar=False)
            tiles.append((role, cam.layer, pic.pixels))
        first = next(iter(self.maps.values()), None)
        lo, hi = (0.0, 1.0) if first is None else (float(v) for v in first.scale[sample])
        title = f"{self.method} for {_target_text(self.cams.target)}, from {first.output_name if first else '?'}"
        if first is not None and first.data.ndim == 4:  # 3D maps: say which plane the tiles show
            title += f" - {(first.view or FIRST_AXIS).label()}"
        picture = render_cam_row(tiles, title=title, cmap=cmap, lo=lo, hi=hi, thumb=thumb,
                                 footer=[f"no map for {r}: {why}" for r, why in self.missing.items()])
        picture.meta.update(kind="unet_cam", method=self.method, sample=sample)
        if first is not None and first.data.ndim == 4:
            picture.meta["view"] = (first.view or FIRST_AXIS).describe()
        return picture


def _target_text(target: dict[str, Any]) -> str:
    cls = target.get("class", "?")
    region = target.get("region", "all")
    where = region if isinstance(region, str) else ", ".join(f"{k}={v}" for k, v in region.items())
    return f"class {cls} ({target.get('reduce', 'sum')} over {where})"
