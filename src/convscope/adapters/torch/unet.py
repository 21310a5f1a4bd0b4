"""U-Net support for eager torch models: the :class:`convscope.unet.backend.UNetBackend` protocol.

Built on the op tracer (:func:`convscope.adapters.torch.graph.trace_torch`): one forward pass gives
the dataflow graph and the node values, plus ONE backward pass when per-merge gradient shares are
asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ...core.graph import CaptureRequest, Graph, GraphCapture
from .graph import trace_torch

__all__ = ["TorchUNetBackend", "gradient_shares"]


def gradient_shares(
    model: Any,
    batch: np.ndarray,
    merges: Iterable[str] | Callable[[Graph], Iterable[str]],
    *,
    objective: str | Callable[[Graph], str] | None = None,
    target: int | None = None,
    mask: Any = None,
    device: Any = None,
) -> dict[str, tuple[float, ...]]:
    """Per merge, each input's share of ``sum |x * grad|`` (one forward + one backward pass).

    Returns:
        merge id -> one fraction per node input (summing to 1), NaN where no gradient arrived.
    """
    capture = trace_torch(
        model, batch, gradient_merges=merges, objective=objective, target=target, mask=mask, device=device
    )
    out: dict[str, tuple[float, ...]] = {}
    for merge, sums in (capture.input_x_gradient or {}).items():
        total = float(np.nansum(sums)) if not all(np.isnan(sums)) else float("nan")
        out[merge] = tuple((s / total) if total and np.isfinite(total) and total > 0 else float("nan") for s in sums)
    return out


class TorchUNetBackend:
    """The torch implementation of :class:`convscope.unet.backend.UNetBackend`.

    Args:
        model: an eager ``torch.nn.Module`` (never changed).
        device: where to run (default: the model's device).
    """

    framework = "torch"

    def __init__(self, model: Any, device: Any = None) -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"TorchUNetBackend needs a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.device = device

    def capture_graph(
        self,
        batch: np.ndarray,
        request: Callable[[Graph], CaptureRequest],
        *,
        target: int | None = None,
        mask: Any = None,
    ) -> GraphCapture:
        """One forward pass (plus one backward pass if ``request`` asks for merges); see the protocol."""
        cache: dict[str, CaptureRequest] = {}

        def decide(graph: Graph) -> CaptureRequest:
            if "r" not in cache:
                cache["r"] = request(graph)
            return cache["r"]

        return trace_torch(
            self.model,
            batch,
            keep=lambda g: decide(g).values,
            gradient_merges=lambda g: decide(g).merges,
            objective=lambda g: decide(g).objective or g.output_ids[0],
            target=target,
            mask=mask,
            device=self.device,
        )
