"""Build the self-contained HTML report (``convscope report``, ``Scope.report``).

Layout of the output folder::

    index.html            the report (Jinja2, autoescaped; CSP allows only files of this folder)
    assets/               report.css, report.js (copied from the package; no CDN)
    inputs/               the input pictures
    kernels/              one kernel grid per convolution layer
    activations/          per layer and image: top-k grid (+ full grid when the layer is wide)
    overlays/             per layer and image: channel-mean map blended over the input
    unet/                 U-Net flow figure and level panels (U-Nets only)
    report.json           every number shown (summary, weight and activation health)
    manifest.json         every file written (convscope.io.output.OutputDir)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from ..core.activations import NOT_EXECUTED, Activation, not_executed
from ..core.health import DEAD_FILTER_REL_TOL, activation_health, weight_health
from ..core.layers import LayerInfo
from ..errors import ConvscopeError
from ..io.output import OutputDir

if TYPE_CHECKING:
    from ..progress import Progress
    from ..render.picture import Picture
    from ..scope import Scope

__all__ = ["build_report", "select_report_layers", "DEFAULT_REPORT_KINDS", "DEFAULT_TOP"]

DEFAULT_REPORT_KINDS: tuple[str, ...] = ("conv", "conv_transpose", "activation")
"""Layer kinds a report shows when neither ``layers`` nor ``kind`` is given."""

DEFAULT_TOP = 64
"""Wider layers show their ``top`` strongest channels (by L2 norm); the full grid loads on demand."""

ASSET_FILES: tuple[str, ...] = ("report.css", "layer-filter.js", "report.js")


def select_report_layers(scope: Scope, layers: str | Sequence[str] | None = None, kind: str | None = None) -> list[str]:
    """The layers a report (or the live viewer) shows, in model order.

    Default (no ``layers``, no ``kind``): every convolution, transposed convolution and activation
    layer (:data:`DEFAULT_REPORT_KINDS`); otherwise :meth:`Scope.select` semantics (names, globs, kinds).
    """
    if layers is None and kind is None:
        names = [info.name for info in scope.adapter.layers() if info.is_leaf and info.kind in DEFAULT_REPORT_KINDS]
        if names:
            return names
    if isinstance(layers, (list, tuple)) and not layers:
        layers = None
    return scope.select(layers, kind=kind)


def _is_single_image(images: Any) -> bool:
    if isinstance(images, (str, os.PathLike, np.ndarray)):
        return True
    if hasattr(images, "detach") and hasattr(images, "cpu"):
        return True
    try:
        from PIL import Image

        return isinstance(images, Image.Image)
    except ImportError:  # pragma: no cover
        return False


def _image_list(images: Any) -> list[Any]:
    if images is None:
        raise ConvscopeError("a report needs at least one input image (a file path, an array, or a list of them)")
    if _is_single_image(images):
        return [images]
    items = list(images)
    if not items:
        raise ConvscopeError("a report needs at least one input image; the list of images is empty")
    return items


def _script_json(obj: Any) -> str:
    """``obj`` as JSON safe inside a ``<script type="application/json">`` block (``<``, ``>``, ``&`` escaped)."""
    import json

    text = json.dumps(obj, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass
class _ImageItem:
    index: int
    label: str
    source_index: int
    sample: int
    input_rel: str | None = None
    planes: dict[str, Any] | None = None


class _SummaryRow(TypedDict):
    """One row of the report's model summary table."""

    info: LayerInfo
    shape: tuple[int, ...] | None
    anchor: str | None


@dataclass
class _LayerSection:
    key: str
    info: LayerInfo | None
    anchor: str
    shape: tuple[int, ...] | None = None
    kernel_rel: str | None = None
    weight: dict[str, Any] | None = None
    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    not_executed: list[str] = field(default_factory=list)
    """Labels of the inputs this selected layer did not run for (a training-only branch, an unused head)."""


def _base_name(key: str) -> str:
    from ..adapters._capture import call_base

    return call_base(key)


def _fmt_shape(shape: Sequence[int] | None) -> str:
    return "x".join(str(int(s)) for s in shape) if shape else "-"


def _fmt_num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    v = float(value)
    if not np.isfinite(v):
        return str(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def _fmt_pct(value: Any) -> str:
    if value is None:
        return "-"
    v = float(value) * 100.0
    if v == 0:
        return "0%"
    if v < 0.01:
        return "<0.01%"
    return f"{v:.2f}%" if v < 10 else f"{v:.1f}%"


def _hist_bars(counts: Sequence[int], edges: Sequence[float], width: float = 240.0, height: float = 64.0) -> list[dict[str, Any]]:
    top = max(max(counts), 1) if len(counts) else 1
    step = width / max(len(counts), 1)
    bars = []
    for i, count in enumerate(counts):
        h = height * count / top
        bars.append(
            {
                "x": round(i * step, 2),
                "y": round(height - h, 2),
                "w": round(max(step - 0.5, 0.5), 2),
                "h": round(h, 2),
                "title": f"[{_fmt_num(edges[i])}, {_fmt_num(edges[i + 1])}): {int(count):,} weights",
            }
        )
    return bars


def _l2_bars(norms: Sequence[float], dead: Iterable[int], height: float = 64.0) -> list[dict[str, Any]]:
    top = max(max(norms), 1e-30) if len(norms) else 1.0
    dead_set = set(int(i) for i in dead)
    return [
        {
            "x": i,
            "y": round(height - height * n / top, 3),
            "h": round(max(height * n / top, 0.0), 3),
            "dead": i in dead_set,
            "title": f"filter {i}: L2 {_fmt_num(n)}" + (" (dead)" if i in dead_set else ""),
        }
        for i, n in enumerate(norms)
    ]


def _unet_level_count(flow: Any) -> int:
    for source in (flow, getattr(flow, "structure", None)):
        if source is None:
            continue
        for attr in ("levels", "depth", "n_levels", "num_levels"):
            value = getattr(source, attr, None)
            if value is None:
                continue
            if isinstance(value, int):
                return value
            try:
                return len(value)
            except TypeError:
                continue
    return 0


def _as_pictures(panels: Any, prefix: str) -> list[tuple[str, Any]]:
    """``level(i).panels()`` may be one Picture, a mapping name -> Picture, or a sequence."""
    if panels is None:
        return []
    if hasattr(panels, "to_png"):
        return [(prefix, panels)]
    if isinstance(panels, Mapping):
        return [(f"{prefix} {name}", pic) for name, pic in panels.items() if hasattr(pic, "to_png")]
    if isinstance(panels, (list, tuple)):
        out = []
        for i, item in enumerate(panels):
            if hasattr(item, "to_png"):
                out.append((f"{prefix} panel {i + 1}", item))
            elif isinstance(item, tuple) and len(item) == 2 and hasattr(item[1], "to_png"):
                out.append((f"{prefix} {item[0]}", item[1]))
        return out
    return []


def _unet_views(flow: Any) -> tuple[Any | None, list[tuple[str, Any]]]:
    """The flow figure and the level panels of a :class:`UNetFlow`, as (caption, Picture) pairs."""
    figure = flow.figure() if hasattr(flow, "figure") else None
    if figure is not None and not hasattr(figure, "to_png"):
        figure = None
    panels: list[tuple[str, Any]] = []
    if hasattr(flow, "level"):
        for i in range(_unet_level_count(flow)):
            try:
                level = flow.level(i)
            except (IndexError, KeyError, ValueError):
                break
            got = level.panels() if hasattr(level, "panels") else level
            panels.extend(_as_pictures(got, f"level {i}"))
    return figure, panels


def _block_records(flow: Any) -> dict[str, dict[str, Any]]:
    """Block key -> {title, column, level}: the figure's keys are ``input``, ``output``, ``enc{i}``,
    ``dec{i}`` and ``bottleneck`` (see :meth:`UNetFlow.figure`); titles are node names."""
    records: dict[str, dict[str, Any]] = {}
    structure = getattr(flow, "structure", None)
    name_of = getattr(flow, "name", None)
    if structure is not None and callable(name_of):
        try:
            records["input"] = {"title": name_of(structure.input), "column": "input", "level": None}
            records["output"] = {"title": name_of(structure.output), "column": "output", "level": None}
            records["bottleneck"] = {"title": name_of(structure.bottleneck_output), "column": "bottleneck",
                                     "level": int(structure.depth)}
            for lvl in structure.levels:
                if lvl.encoder_output is not None:
                    records[f"enc{lvl.index}"] = {"title": name_of(lvl.encoder_output), "column": "encoder", "level": lvl.index}
                if lvl.decoder_output is not None:
                    records[f"dec{lvl.index}"] = {"title": name_of(lvl.decoder_output), "column": "decoder", "level": lvl.index}
            return records
        except (AttributeError, KeyError, TypeError, ValueError):
            records = {}
    for source in (flow, structure):
        blocks = getattr(source, "blocks", None) if source is not None else None
        if callable(blocks):
            try:
                blocks = blocks()
            except TypeError:
                blocks = None
        if not blocks:
            continue
        for block in blocks:
            key = getattr(block, "key", None)
            if key is None:
                continue
            records[str(key)] = {
                "title": str(getattr(block, "title", key)),
                "column": str(getattr(block, "column", "")),
                "level": getattr(block, "level", None),
            }
        if records:
            break
    return records


def _match_layer(title: str, key: str, layer_ids: Mapping[str, str]) -> str | None:
    """The viewer layer a block stands for: exact name, else the last viewer layer inside that module."""
    for candidate in (title, key):
        if candidate in layer_ids:
            return layer_ids[candidate]
    for candidate in (title, key):
        inside = [name for name in layer_ids if name.startswith(candidate + ".")]
        if inside:
            return layer_ids[inside[-1]]
    return None


def picture_hovers(picture: Any) -> list[dict[str, Any]]:
    """Hover regions of a picture's shortened texts (``[{title, box}]``, box as fractions of the
    picture; see :meth:`~convscope.render.scene.Scene.hover_regions`). A flow figure's blocks are
    left out: their clickable block already carries the full name. ``[]`` for a bare image."""
    scene = getattr(picture, "scene", None)
    if scene is None or not hasattr(scene, "hover_regions"):
        return []
    return scene.hover_regions(exclude=(scene.meta.get("blocks") or {}).values())


def unet_blocks(flow: Any, figure: Any, targets: Mapping[str, str]) -> list[dict[str, Any]]:
    """Clickable blocks of a U-Net flow figure.

    Args:
        flow: the :class:`~convscope.unet_flow.UNetFlow`.
        figure: its ``figure()`` Picture (``meta["blocks"]``: key -> ``[x0, y0, x1, y1]`` pixels).
        targets: layer name -> what a click opens (an anchor or an ID).

    Returns:
        ``[{index, title, column, level, layer_id, box}]`` with ``box`` as fractions of the figure and
        ``layer_id`` the target of the block's layer (exact name, else the last target inside the
        block's module, e.g. ``enc1`` -> ``enc1.relu2``), or None.
    """
    boxes = figure.meta.get("blocks") or {}
    records = _block_records(flow)
    for key, name in (figure.meta.get("block_names") or {}).items():  # blocks the structure has no record of
        records.setdefault(key, {"title": name, "column": "", "level": None})
    blocks = []
    for i, (key, box) in enumerate(boxes.items()):
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            continue
        rec = records.get(str(key), {})
        title = rec.get("title") or str(key)
        level = rec.get("level")
        if level is None:
            digits = re.findall(r"\d+", str(key))
            level = int(digits[-1]) if digits and str(key) not in ("input", "output") else None
        blocks.append({
            "index": i,
            "title": title,
            "column": rec.get("column", ""),
            "level": level if isinstance(level, int) else None,
            "layer_id": _match_layer(title, str(key), targets),
            "box": [x0 / figure.width, y0 / figure.height, x1 / figure.width, y1 / figure.height],
        })
    return blocks


def _jinja_env() -> Any:
    try:
        import jinja2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConvscopeError(f"HTML reports need Jinja2 ({exc}); install it with: pip install 'convscope[report]'") from None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("convscope.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shape"] = _fmt_shape
    env.filters["num"] = _fmt_num
    env.filters["pct"] = _fmt_pct
    return env


def _ready(picture: Picture) -> Callable[[], Picture]:
    """``picture`` as the render callable of :meth:`OutputDir.add_rendered` (already drawn; encoded on the pool)."""
    return lambda: picture


def _asset_bytes(name: str) -> bytes:
    return resources.files("convscope.report").joinpath("assets").joinpath(name).read_bytes()


def build_report(
    scope: Scope,
    images: Any,
    out: str | os.PathLike[str],
    *,
    layers: str | Sequence[str] | None = None,
    kind: str | None = None,
    top: int = DEFAULT_TOP,
    cmap: str = "viridis",
    overlay: bool = True,
    unet: bool = True,
    size: Any = None,
    normalize: str | None = None,
    dead_rel_tol: float = DEAD_FILTER_REL_TOL,
    title: str | None = None,
    progress: bool | None = None,
    kernel_max_side: int = 2048,
    grid_max_side: int = 2048,
    echo: Callable[[str], None] | None = None,
    scan: Any = None,
) -> Path:
    """Write a self-contained HTML report of ``scope``'s model on ``images`` into ``out``.

    Args:
        scope: the :class:`~convscope.Scope` to report on.
        images: one input (path, array, PIL image, tensor) or a list of them. Each is prepared as
            for :meth:`Scope.activations`; a batch ``(N, C, ...)`` counts as ``N`` images.
        out: output folder (created; files of other runs are left alone).
        layers / kind: which layers get a section (default: convolutions and activation layers,
            see :func:`select_report_layers`).
        top: layers with more channels show their ``top`` strongest channels (L2 norm), with the
            full grid behind a "show all channels" toggle that loads it lazily.
        cmap: colormap of activation grids.
        overlay: also draw the channel-mean map over each input.
        unet: add the U-Net flow figure and level panels when the model is a U-Net.
        size / normalize: input resizing and normalisation (see :meth:`Scope.prepare`).
        dead_rel_tol: dead-filter rule (see :mod:`convscope.core.health`).
        title: page title (default ``"convscope report: MODEL"``).
        progress: a progress bar (:class:`convscope.progress.Progress`): None (default) when stderr
            is a terminal or in Jupyter (widget), True always, False never.
        kernel_max_side / grid_max_side: largest side in pixels of kernel and activation grids.
        echo: optional callback for one-line notes (e.g. why the U-Net section is missing).
        scan: a ``convscope scan`` folder (or ScanResult): adds ``atlas.html``, the channel atlas
            (per layer, the channel cards, lazy-loaded), linked from ``index.html``. It must be a
            scan of this model (same weights digest, its layers in the model), else ScanError.

    Returns:
        Path of ``out/index.html``. ``out/report.json`` has every number shown, and
        ``out/manifest.json`` lists every file.

    Raises:
        ConvscopeError: (a ``ValueError``) bad images, layers or options.
    """
    if top < 1:
        raise ConvscopeError(f"top must be a positive number of channels, got {top}")
    if scan is not None:  # read and checked before any work: a scan of another model is refused
        from ..scan.result import ScanResult

        scan = scan if isinstance(scan, ScanResult) else ScanResult.load(scan)
        scan.check_model(scope)
    items = _image_list(images)
    selected = select_report_layers(scope, layers, kind)
    selected_set = set(selected)
    all_infos = scope.adapter.layers()
    info_by_name = {info.name: info for info in all_infos}
    leaf_names = [info.name for info in all_infos if info.is_leaf]
    capture_names = list(dict.fromkeys(leaf_names + selected))
    env = _jinja_env()  # fail early (before any rendering) if Jinja2 is missing
    notes: list[str] = []

    # one bar for the whole report, its total known now: a step per kernel grid, per (image, layer)
    # activation grid and per U-Net flow figure (steps that do not apply are filled in at the end)
    from ..io.images import planned_shape
    from ..progress import Progress

    spec = scope.adapter.input_spec()
    samples = sum(planned_shape(item, channels=spec.channels, spatial_dims=spec.spatial_dims or 2, size=size)[0]
                  for item in items)
    kernel_steps = sum(1 for name in selected if name in info_by_name and info_by_name[name].is_conv)
    prog = Progress(kernel_steps + samples * len(selected) + (samples if unet else 0), "convscope report",
                    unit="grid", enabled=progress)
    try:
        with OutputDir(out, info={"command": "report", "model": scope.name}) as folder:
            for name in ASSET_FILES:
                folder.add_bytes(f"assets/{name}", _asset_bytes(name), kind="asset")

            sections: dict[str, _LayerSection] = {}

            def section_for(key: str) -> _LayerSection:
                if key not in sections:
                    sections[key] = _LayerSection(key=key, info=info_by_name.get(_base_name(key)), anchor=f"layer-{len(sections)}")
                return sections[key]

            for name in selected:
                section_for(name)

            # -- kernels and weight health --------------------------------------------------
            for name in selected:
                info = info_by_name.get(name)
                if info is None or not info.is_conv:
                    continue
                bank = scope.adapter.kernel(name)  # exact name from the adapter (may contain glob characters)
                section = sections[name]
                health = weight_health(bank.weights, layer=name, dead_rel_tol=dead_rel_tol)
                section.weight = health.to_dict()
                section.weight["hist_bars"] = _hist_bars(health.hist_counts.tolist(), health.hist_edges.tolist())
                section.weight["l2_bars"] = _l2_bars(health.filter_l2.tolist(), health.dead.tolist())
                section.weight["groups"] = bank.groups
                section.weight["transposed"] = bank.transposed
                rel = folder.unique_name(name, ".png", "kernels")
                section.kernel_rel = rel
                prog.track(folder.add_rendered(
                    rel, partial(bank.grid, max_side=kernel_max_side), layer=name, kind="kernels",
                    shape=list(bank.shape),
                ))

            # -- activations, one forward pass per input --------------------------------------
            image_items: list[_ImageItem] = []
            summary_shapes: dict[str, tuple[int, ...]] = {}
            for source_index, image in enumerate(items):
                scope.check_memory(image, capture_names, size=size, mode="stream")  # before decoding and the forward pass
                prepared = scope.prepare(image, size=size, normalize=normalize)
                batch_size = prepared.batch.shape[0]
                first = len(image_items)
                for s in range(batch_size):
                    label = prepared.source if prepared.source not in ("array", "tensor", "PIL image") else f"image {source_index + 1}"
                    if batch_size > 1:
                        label = f"{label} [{s}]"
                    item = _ImageItem(index=first + s, label=label, source_index=source_index, sample=s)
                    record = prepared.volume if prepared.volume is not None and prepared.batch.ndim == 5 else None
                    if record is not None:  # a 3D scan: its axial/coronal/sagittal planes (radiological)
                        from ..volume_views import input_planes

                        item.input_rel = f"inputs/image-{item.index}.png"
                        folder.add_picture(item.input_rel, input_planes(record), kind="input", image=item.label)
                        if s == 0:  # linked orthogonal planes (slice PNGs loaded lazily by report.js)
                            from .linked_planes import write_linked_planes

                            item.planes = write_linked_planes(folder, record, item.index)
                    elif prepared.display is not None:
                        from ..render.picture import Picture

                        item.input_rel = f"inputs/image-{item.index}.png"
                        folder.add_picture(item.input_rel, Picture(prepared.display[s]), kind="input", image=item.label)
                    image_items.append(item)
                group = image_items[first:]
                display = prepared.display
                view = prepared.view
                volume_record = prepared.volume if prepared.volume is not None and prepared.batch.ndim == 5 else None

                ran: set[str] = set()

                def on_activation(key: str, data: np.ndarray, group: list[_ImageItem] = group, display: Any = display,
                                  volume_record: Any = volume_record, ran: set[str] = ran, view: Any = view) -> None:
                    ran.add(key)
                    summary_shapes.setdefault(key, tuple(int(v) for v in data.shape[1:]))
                    if _base_name(key) not in selected_set:
                        return
                    section = section_for(key)
                    section.shape = tuple(int(v) for v in data.shape[1:])
                    act = Activation(layer=key, data=data, view=view)  # 3D: the display's plane
                    channels = act.channels
                    wide = channels > top
                    type_name = section.info.type_name if section.info is not None else None
                    for item in group:
                        s = item.sample
                        health = activation_health(data[s], layer=key, type_name=type_name).to_dict()
                        entry: dict[str, Any] = {"health": health, "channels": channels, "shown": min(channels, top), "wide": wide}
                        stem = f"{key}.img{item.index}"
                        rel = folder.unique_name(stem, ".png", "activations")
                        entry["grid_rel"] = rel
                        prog.track(folder.add_rendered(
                            rel,
                            partial(
                                act.grid, top=top if wide else None, order="l2" if wide else "index", sample=s,
                                cmap=cmap, labels=True, max_side=grid_max_side,
                            ),
                            layer=key, kind="activations", image=item.label, sample=s,
                        ))
                        if wide:
                            rel_all = folder.unique_name(f"{stem}.all", ".png", "activations")
                            entry["full_rel"] = rel_all
                            (folder.add_rendered(
                                rel_all,
                                partial(act.grid, order="index", sample=s, cmap=cmap, labels=True, max_side=4096),
                                layer=key, kind="activations-all", image=item.label, sample=s,
                            ))
                        if overlay and volume_record is not None and data.ndim == 5:  # maps on the scan's planes
                            from ..volume_views import map_planes

                            rel_ov = folder.unique_name(stem, ".png", "overlays")
                            entry["overlay_rel"] = rel_ov
                            folder.add_picture(rel_ov, map_planes(volume_record, data[s], key), layer=key, kind="overlay",
                                               image=item.label, sample=s)
                        elif overlay and display is not None and act.spatial_dims in (2, 3):
                            rel_ov = folder.unique_name(stem, ".png", "overlays")
                            entry["overlay_rel"] = rel_ov
                            base = display[s]
                            (folder.add_rendered(
                                rel_ov, partial(act.overlay, base, sample=s),
                                layer=key, kind="overlay", image=item.label, sample=s,
                            ))
                        section.images[item.index] = entry

                scope.adapter.capture(prepared.batch, capture_names, on_activation=on_activation)
                for name in not_executed(selected, ran):
                    sections[name].not_executed.extend(item.label for item in group)

            # -- U-Net flow -----------------------------------------------------------------
            unet_views: list[dict[str, Any]] = []
            unet_data: list[Any] = []
            if unet:
                anchors = {key: sec.anchor for key, sec in sections.items()}
                unet_views, unet_data = _unet_section(scope, items, image_items, folder, prog, size, normalize, notes, anchors)

            # -- classifiers: the top-5 predictions and the CAM of the top-1 class ------------------
            class_views: list[dict[str, Any]] = []
            if not unet_views:
                class_views = _class_section(scope, items, image_items, folder, prog, size, normalize, notes)

            folder.wait()
            files = {entry["file"]: entry for entry in folder.entries}

            def asset(rel: str | None, alt: str) -> dict[str, Any] | None:
                if rel is None or rel not in files:
                    return None
                entry = files[rel]
                return {"src": rel, "width": entry.get("width"), "height": entry.get("height"), "alt": alt}

            # order: model order of the selected layers, each followed by its repeated calls (name#1...)
            ordered: list[_LayerSection] = []
            for name in selected:
                ordered.append(sections[name])
                ordered.extend(sec for key, sec in sections.items() if key != name and _base_name(key) == name)

            summary_rows: list[_SummaryRow] = []
            total_params = 0
            for info in all_infos:
                if not info.is_leaf:
                    continue
                total_params += info.params
                shape = summary_shapes.get(info.name, info.out_shape)
                anchor = sections[info.name].anchor if info.name in sections else None
                summary_rows.append({"info": info, "shape": shape, "anchor": anchor})

            layer_ctx = []
            json_layers = []
            for section in ordered:
                info = section.info
                key = section.key
                imgs = []
                json_images = []
                for item in image_items:
                    entry = section.images.get(item.index)
                    if entry is None:
                        continue
                    shown = entry["shown"]
                    what = f"top {shown} of {entry['channels']} channels by L2 norm" if entry["wide"] else f"all {entry['channels']} channels"
                    imgs.append({
                        "label": item.label,
                        "index": item.index,
                        "grid": asset(entry.get("grid_rel"), f"Activation grid of layer {key} for {item.label}: {what}"),
                        "full": asset(entry.get("full_rel"), f"All {entry['channels']} channels of layer {key} for {item.label}"),
                        "overlay": asset(entry.get("overlay_rel"), f"Channel-mean activation of layer {key} over {item.label}"),
                        "what": what,
                        "wide": entry["wide"],
                        "channels": entry["channels"],
                        "health": entry["health"],
                    })
                    json_images.append({"image": item.label, **entry["health"]})
                layer_ctx.append({
                    "key": key,
                    "anchor": section.anchor,
                    "kind": info.kind if info else "other",
                    "type": info.type_name if info else "",
                    "shape": section.shape,
                    "params": info.params if info else 0,
                    "kernel": asset(section.kernel_rel, f"Kernel grid of layer {key}"),
                    "kernel_layout": files.get(section.kernel_rel or "", {}).get("layout", "cells"),
                    "weight": section.weight,
                    "images": imgs,
                    "not_executed": _not_executed_text(section.not_executed, len(image_items)),
                })
                weight_json = None
                if section.weight is not None:
                    weight_json = {k: v for k, v in section.weight.items() if k not in ("hist_bars", "l2_bars")}
                json_layers.append({
                    "name": key,
                    "kind": info.kind if info else None,
                    "type": info.type_name if info else None,
                    "out_shape": list(section.shape) if section.shape else None,
                    "params": info.params if info else 0,
                    "weight_health": weight_json,
                    "activation_health": json_images,
                    "not_executed_for": list(section.not_executed),
                })

            missing = [sec.key for sec in ordered if sec.not_executed]
            if missing:
                notes.append(f"{len(missing)} selected layer(s) {NOT_EXECUTED}: {', '.join(missing)}")
                folder.info["not_executed"] = {"reason": NOT_EXECUTED, "layers": missing}
            inputs_ctx = [
                {"label": item.label, "img": asset(item.input_rel, f"Input {item.label}"), "index": item.index,
                 "planes": item.planes, "planes_json": None if item.planes is None else _script_json(item.planes)}
                for item in image_items
            ]
            unet_ctx = [
                {
                    "label": view["label"],
                    "figure": asset(view.get("figure_rel"), f"U-Net flow for {view['label']}"),
                    "blocks": view["blocks"],
                    "hovers": view.get("hovers", []),
                    "panels": [(asset(rel, f"U-Net {caption} for {view['label']}") or {}) | {"caption": caption, "hovers": hovers}
                               for caption, rel, hovers in view["panels"] if rel in files],
                }
                for view in unet_views
            ]
            classes_ctx = [
                {"label": view["label"], "top": view["top"], "softmax": view["softmax"], "classes": view["classes"],
                 "cam": asset(view.get("cam_rel"), view.get("cam_alt", "")), "cam_caption": view.get("cam_caption", "")}
                for view in class_views
            ]
            from .._version import __version__

            context = {
                "title": title or f"convscope report: {scope.name}",
                "model": scope.name,
                "framework": scope.adapter.framework,
                "version": __version__,
                "inputs": inputs_ctx,
                "summary": summary_rows,
                "total_params": total_params,
                "layers": layer_ctx,
                "not_executed": [{"key": sec.key, "anchor": sec.anchor, "text": _not_executed_text(sec.not_executed, len(image_items))}
                                 for sec in ordered if sec.not_executed],
                "unet": unet_ctx,
                "classes": classes_ctx,
                "notes": notes,
                "top": top,
                "dead_rel_tol": dead_rel_tol,
            }
            html = env.get_template("report.html.j2").render(**context)
            folder.add_text("index.html", html, kind="report")
            folder.add_json(
                "report.json",
                {
                    "model": scope.name,
                    "framework": scope.adapter.framework,
                    "images": [item.label for item in image_items],
                    "summary": [
                        {**row["info"].to_dict(), "out_shape": list(row["shape"]) if row["shape"] else None}
                        for row in summary_rows
                    ],
                    "total_params": total_params,
                    "layers": json_layers,
                    "not_executed": {"reason": NOT_EXECUTED, "layers": missing},
                    "unet": unet_data,
                    "predictions": [{k: v for k, v in view.items() if k != "cam_alt"} for view in class_views],
                    "notes": notes,
                },
                kind="report-data",
            )
        prog.finish()
    finally:
        prog.close()
    if scan is not None:  # a dataset scan folder: add the channel atlas page (see report/atlas.py)
        from .atlas import write_atlas

        write_atlas(scan, out)
    if echo is not None:
        for note in notes:
            echo(note)
    return ReportPath(Path(out) / "index.html")


class ReportPath(type(Path())):  # type: ignore[misc]  # PosixPath or WindowsPath
    """The path of a report's ``index.html``; Jupyter shows it as a link that opens the report."""

    def _repr_html_(self) -> str:
        import html

        try:
            href = os.path.relpath(self)
        except ValueError:  # another drive (Windows)
            href = self.resolve().as_uri()
        return (f'<a href="{html.escape(href)}" target="_blank" rel="noopener">'
                f'{html.escape(str(self))}</a> (convscope report; open it in a browser)')


def _unet_cam_panel(flow: Any, view: dict[str, Any], folder: OutputDir, prog: Progress, stem: str, label: str,
                    notes: list[str]) -> None:
    """Add the U-Net's CAM row (Grad-CAM of the predicted class at every level, one scale) to ``view``."""
    from ..errors import ConvscopeError

    if not hasattr(flow, "cam"):
        return
    try:
        picture = flow.cam(progress=False).figure()
    except (ConvscopeError, ImportError) as exc:
        note = f"U-Net CAM row not drawn: {exc}"
        if note not in notes:
            notes.append(note)
        return
    rel = folder.unique_name(f"{stem}.cam", ".png", "unet")
    prog.track(folder.add_rendered(rel, lambda: picture, kind="unet-cam", image=label))
    view["panels"].append(("Grad-CAM of the predicted class at every level and skip branch (one shared scale)", rel, _hover_ctx(picture)))


def _class_section(
    scope: Scope,
    items: list[Any],
    image_items: list[_ImageItem],
    folder: OutputDir,
    prog: Progress,
    size: Any,
    normalize: str | None,
    notes: list[str],
) -> list[dict[str, Any]]:
    """Per input sample of a classifier (an ``(N, K)`` output): its top-5 classes and the Grad-CAM of
    its top-1 class at the last convolution (one forward + one backward pass per input). Empty for
    other outputs; a note when the CAM cannot be drawn (e.g. a model without gradients)."""
    from ..core import targets as tg
    from ..core.predictions import top_classes
    from ..errors import ConvscopeError

    views: list[dict[str, Any]] = []
    for source_index, image in enumerate(items):
        prepared = scope.prepare(image, size=size, normalize=normalize)
        output = scope.adapter.capture(prepared.batch, []).output
        if output is None or np.asarray(output).ndim != 2:
            return []
        cam: Any = None
        try:
            cam = scope.cam(image, target=tg.classification(), size=size, normalize=normalize, progress=False)
        except (ConvscopeError, ImportError) as exc:
            note = f"classifier CAM not drawn: {exc}"
            if note not in notes:
                notes.append(note)
        for item in (it for it in image_items if it.source_index == source_index):
            top = top_classes(np.asarray(output)[item.sample])
            if top is None:
                return []
            view: dict[str, Any] = {"label": item.label, **top}
            if cam is not None and hasattr(cam, "overlay"):
                cls = top["top"][0]["index"]
                picture = cam.overlay(sample=item.sample)
                rel = folder.unique_name(f"image-{item.index}.cam-top1", ".png", "cam")
                prog.track(folder.add_rendered(rel, _ready(picture), kind="classifier-cam",
                                               image=item.label, method=cam.method, layer=cam.layer, target_class=cls))
                view.update(cam_rel=rel, cam_layer=cam.layer, cam_method=cam.method, cam_class=cls,
                            cam_alt=f"Grad-CAM of class {cls} at {cam.layer} for {item.label}",
                            cam_caption=f"Grad-CAM of the top-1 class {cls} at {cam.layer} (ReLU, 1 = the map's maximum)")
            views.append(view)
    return views


def _hover_ctx(picture: Any) -> list[dict[str, str]]:
    return [{"title": h["title"], "box": ",".join(f"{v:.5f}" for v in h["box"])} for h in picture_hovers(picture)]


def _not_executed_text(labels: Sequence[str], n_images: int) -> str:
    """``"not executed for this input"`` (or ``"... for image 2, image 3"`` when only some inputs skip it)."""
    if not labels:
        return ""
    if len(labels) >= n_images:
        return NOT_EXECUTED if n_images <= 1 else f"not executed for any of the {n_images} inputs"
    return f"{NOT_EXECUTED}: {', '.join(labels)}"


def _unet_section(
    scope: Scope,
    items: list[Any],
    image_items: list[_ImageItem],
    folder: OutputDir,
    prog: Progress,
    size: Any,
    normalize: str | None,
    notes: list[str],
    anchors: Mapping[str, str],
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Flow figure + level panels per input image, or a note saying why there are none."""
    from ..errors import NotAUNet, UnsupportedModelError

    views: list[dict[str, Any]] = []
    data: list[Any] = []
    for source_index, image in enumerate(items):
        label = next((it.label for it in image_items if it.source_index == source_index), f"image {source_index + 1}")
        try:
            flow = scope.unet(image, size=size, normalize=normalize)
        except NotAUNet:
            return [], []
        except (ImportError, NotImplementedError, UnsupportedModelError) as exc:
            notes.append(f"U-Net flow not drawn: {exc}")
            return [], []
        figure, panels = _unet_views(flow)
        view: dict[str, Any] = {"label": label, "panels": [], "blocks": [], "hovers": []}
        stem = f"image-{source_index}"
        if figure is not None:
            view["blocks"] = [
                {"href": f"#{block['layer_id']}", "title": block["title"],
                 "box": ",".join(f"{v:.5f}" for v in block["box"])}
                for block in unet_blocks(flow, figure, anchors) if block["layer_id"]
            ]
            view["hovers"] = _hover_ctx(figure)
            view["figure_rel"] = f"unet/{stem}.flow.png"
            prog.track(folder.add_rendered(view["figure_rel"], _ready(figure), kind="unet-flow", image=label))
        for caption, picture in panels:
            rel = folder.unique_name(f"{stem}.{caption}", ".png", "unet")
            prog.track(folder.add_rendered(rel, _ready(picture), kind="unet-level", image=label, caption=caption))
            view["panels"].append((caption, rel, _hover_ctx(picture)))
        _unet_cam_panel(flow, view, folder, prog, stem, label, notes)
        views.append(view)
        if hasattr(flow, "to_json"):
            try:
                import json

                raw = flow.to_json()
                data.append(json.loads(raw) if isinstance(raw, str) else raw)
            except (TypeError, ValueError):
                pass
    return views, data
