"""``convscope unet MODEL IMAGE -o DIR``: the logic, free of typer (the CLI in ``main.py`` wires it).

Writes ``DIR/flow.png``, ``DIR/level-N.png`` (one per level above the bottleneck; ``.svg``/``.pdf`` too with ``formats``),
``DIR/unet.json`` and ``DIR/manifest.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_unet"]


def run_unet(
    model_adapter_or_backend: Any,
    batch: np.ndarray,
    display: np.ndarray | None,
    out_dir: str | os.PathLike[str],
    *,
    target: int | None = None,
    mask: Any = None,
    thumbnail: str = "mean",
    top: int = 8,
    formats: str = "png",
    volume: Any = None,
    progress: bool | None = None,
    cam_classes: Any = None,
    chunks: Any = None,
    view: Any = None,
) -> list[Path]:
    """Find the U-Net, draw its flow and level panels, and write them with ``unet.json``.

    Args:
        model_adapter_or_backend: a :class:`~convscope.unet_flow.UNetBackend`, a model adapter
            (e.g. ``scope.adapter``) or a bare ``torch.nn.Module``.
        batch: ``(N, C, *spatial)`` float32 model input (``scope.prepare(image).batch``).
        display: ``(H, W, 3)`` uint8 picture of the input (``prepare(...).display[0]``) or None.
        out_dir: output folder (created; only this run's files are written).
        target: output channel for the gradient share (default: the predicted class).
        mask: ``(*spatial)`` 0/1 region for the gradient share's score.
        thumbnail: ``"mean"`` or ``"top"`` for the flow figure's thumbnails.
        top: channels per grid in the level panels.
        formats: ``"png"``, ``"svg"``, ``"pdf"`` or several (``"pdf,svg"``): each figure in each format.
        volume: ``prepare(...).volume`` for scans: adds three-plane figures and the geometry.
        progress: one bar over the two steps (None: when stderr is a terminal; see convscope.progress).
        cam_classes: add a Grad-CAM row per class (``[None]``: the predicted class), see ``UNetFlow.cam``.
        chunks: a :class:`~convscope.core.budget.ChunkPlan` (``Scope.plan_slices``): the slices of a
            volume fed to a 2D U-Net go through the model chunk by chunk (skip metrics, input channel
            shares and the plane figures cover every slice; the flow and level figures show slice 0).
        view: how 3D maps are drawn (``prepare(...).view``); None: a 3D ``volume``'s axial middle plane
            (:meth:`~convscope.core.view.MiddleView.of_volume`), else the middle slice along the first axis.

    Returns:
        The written paths: ``flow.png``, ``level-N.png``..., ``unet.json``, ``manifest.json``.

    Raises:
        NotAUNet: the model is not U-Net shaped (print the message: it says what was found).
    """
    from ..render.scene import parse_formats
    from ..unet import build_unet_flow, unet_backend_for

    from ..progress import Progress

    chosen = parse_formats(formats)  # a bad --format fails before the forward pass
    backend = unet_backend_for(model_adapter_or_backend)
    from ..adapters.base import ModelAdapter

    adapter = model_adapter_or_backend if isinstance(model_adapter_or_backend, ModelAdapter) else None
    # one bar, two steps known up front: the analysis (forward + backward pass), then drawing and writing
    with Progress(2, "convscope unet", unit="step", enabled=progress) as bar:
        ranges = chunks.ranges() if chunks is not None else None
        stack = None
        if volume is not None and volume.plane is not None and len(volume.slice_indices) > 1:
            from ..volume_views import SliceStack  # a 2D U-Net on every slice: keep per-slice reductions only

            stack = SliceStack(int(batch.shape[0]))
        if view is None and volume is not None and volume.plane is None and np.ndim(batch) == 5:
            from ..core.view import MiddleView

            view = MiddleView.of_volume(volume)
        flow = build_unet_flow(backend, batch, display, target=target, mask=mask, adapter=adapter, chunks=ranges,
                               on_chunk=stack, view=view)
        cams = []
        if cam_classes is not None:
            from ..core import targets

            cams = [flow.cam(target=targets.segmentation(cls, mask=mask)) for cls in (list(cam_classes) or [None])]
        info: dict[str, Any] = {}
        if stack is not None and chunks is not None:
            info["chunks"] = chunks.describe()
        if batch.shape[1] > 1:  # several input channels (modalities): each one's share of the attribution
            from ..volume_views import input_channel_shares

            names = volume.volume.channel_names if volume is not None else None
            shares = input_channel_shares(model_adapter_or_backend, batch, target=target, mask=mask, names=names,
                                          chunks=ranges)
            info["input_channel_shares"] = (
                shares if shares is not None else "needs an adapter with gradients (SupportsGradients)"
            )
        bar.advance()
        planes = stack.planes(volume) if stack is not None else None
        return flow.save(out_dir, thumbnail=thumbnail, top=top, formats=chosen, volume=volume, info=info, cams=cams,
                         planes=planes)
