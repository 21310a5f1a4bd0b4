"""U-Net anatomy and flow (split into :mod:`convscope.unet`; this module re-exports its public names): find encoder, decoder and skips automatically, draw the U, measure the skips.

``scope.unet(image)`` returns a :class:`UNetFlow`::

    flow = scope.unet(image)          # raises NotAUNet with the reason for a plain CNN
    flow.structure                    # levels, encoder, bottleneck, decoder, skips
    flow.figure().save("flow.png")    # the U picture
    flow.level(1).panels().save("level1.png")
    flow.metrics                      # per-skip energy and gradient shares

A framework plugs in by implementing :class:`UNetBackend` (one method). The torch backend is
:class:`convscope.adapters.torch.unet.TorchUNetBackend`.

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

from typing import Any

from .unet.backend import UNetBackend, unet_backend_for
from .unet.build import build_unet_flow
from .unet.flow import LevelView, UNetCam, UNetFlow
from .unet.flow import _share_text as _share_text  # older tests import it from here
from .unet.metrics import SkipMetrics, SkipMetricsList, skip_metrics, skip_table

__all__ = [
    "UNetBackend",
    "SkipMetrics",
    "SkipMetricsList",
    "LevelView",
    "UNetFlow",
    "build_unet_flow",
    "unet_backend_for",
    "skip_metrics",
    "skip_table",
    "UNetCam",
]


def __getattr__(name: str) -> Any:
    """``convscope.unet_flow.TorchUNetBackend`` without importing torch at module import time."""
    if name == "TorchUNetBackend":
        from .adapters.torch.unet import TorchUNetBackend

        return TorchUNetBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
