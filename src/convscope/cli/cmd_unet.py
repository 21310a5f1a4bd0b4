"""``convscope unet MODEL IMAGE -o DIR``: the logic, free of typer (the CLI in ``main.py`` wires it).

Writes ``DIR/flow.png``, ``DIR/level-N.png`` (one per level above the bottleneck),
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
    cam_classes: Any = None,
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
        cam_classes: add a Grad-CAM row per class (``[None]``: the predicted class), see ``UNetFlow.cam``.

    Returns:
        The written paths: ``flow.png``, ``level-N.png``..., ``unet.json``, ``manifest.json``.

    Raises:
        NotAUNet: the model is not U-Net shaped (print the message: it says what was found).
    """
    from ..unet_flow import build_unet_flow, unet_backend_for

    backend = unet_backend_for(model_adapter_or_backend)
    from ..adapters.base import ModelAdapter

    adapter = model_adapter_or_backend if isinstance(model_adapter_or_backend, ModelAdapter) else None
    flow = build_unet_flow(backend, batch, display, target=target, mask=mask, adapter=adapter)
    cams = []
    if cam_classes is not None:
        from ..core import targets

        cams = [flow.cam(target=targets.segmentation(cls, mask=mask)) for cls in (list(cam_classes) or [None])]
    return flow.save(out_dir, thumbnail=thumbnail, top=top, cams=cams)
