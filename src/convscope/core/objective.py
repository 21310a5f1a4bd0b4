"""Framework-free objectives: the scalar per sample that gradients are taken of.

An objective is *linear in the selected model output*: the score of sample ``n`` is
``score[n] = sum(W[n] * output[n])`` where ``W = objective.cotangent(output_values)`` is computed in
numpy from the clean forward pass's output (so "the predicted class", "the predicted mask" and
"the largest connected component" are frozen from the clean pass, as Captum's segmentation
tutorial does). Every adapter implements gradients the same way: one forward pass, one host copy
of the selected output, ``W`` from this module, then ONE vector-Jacobian product with cotangent
``W`` (``torch.autograd.grad(out, acts, grad_outputs=W)``, ``tape.gradient(out, acts,
output_gradients=W)``, ``jax.vjp(f, ...)[1](W)``). No framework code lives here.

The richer user-facing targets (``convscope.targets``) build on :class:`Objective`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import ConvscopeError

__all__ = ["Objective", "ChannelObjective", "fit_mask", "select_output"]


@dataclass(frozen=True)
class Objective:
    """Base objective. Subclasses override :meth:`cotangent` (and :meth:`describe`).

    Attributes:
        output: which model output the gradient starts from: ``None`` = the default output (the
            first full-resolution one for segmentation models, the first one otherwise), an ``int``
            index into a tuple/list output, or a ``str`` key of a dict output.
        from_logits: when the selected output is produced by a final Sigmoid/Softmax (module or
            functional), start from that op's *input* (the logits) instead; adapters report which
            tensor they used in :attr:`LayerGradients.output_name`.
    """

    output: int | str | None = None
    from_logits: bool = True

    def cotangent(self, output: np.ndarray) -> np.ndarray:
        """``W`` with ``output``'s shape, float32, such that ``score[n] = sum(W[n] * output[n])``.

        Args:
            output: the selected output of the clean forward pass, ``(N, K, *spatial)`` or ``(N, K)``
                float32, channels first.
        """
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for manifests (kind, class, region, reduction, output)."""
        return {"kind": type(self).__name__, "output": self.output, "from_logits": self.from_logits}


@dataclass(frozen=True)
class ChannelObjective(Objective):
    """Sum (or mean) of one output channel, or of the predicted class, over a region.

    Attributes:
        channel: output channel (class) to score; ``None`` = the predicted class, frozen from the
            clean pass: per position the arg-max channel for ``(N, K, *spatial)`` outputs (channel 0
            when ``K == 1``), per sample the top-1 class for ``(N, K)`` outputs.
        mask: optional region ``(*spatial)`` or ``(N, *spatial)``, nearest-resized to the output;
            values are weights (0/1 for a region).
        reduce: ``"sum"`` (default) or ``"mean"`` over the region (mean divides by the mask's sum).

    This reproduces the first wave's gradient-share objective (sum of the predicted logits over the
    mask) exactly: the max over channels has gradient one-hot at the arg-max.
    """

    channel: int | None = None
    mask: Any = field(default=None, compare=False)
    reduce: Literal["sum", "mean"] = "sum"

    def cotangent(self, output: np.ndarray) -> np.ndarray:
        out = np.asarray(output)
        if out.ndim < 2:
            raise ConvscopeError(f"the objective output has shape {out.shape}; it must be (N, K, *spatial) or (N, K)")
        n, k = int(out.shape[0]), int(out.shape[1])
        spatial = tuple(int(s) for s in out.shape[2:])
        weights = np.zeros(out.shape, dtype=np.float32)
        if self.channel is not None:
            if not isinstance(self.channel, (int, np.integer)) or not 0 <= int(self.channel) < k:
                raise ConvscopeError(f"class/channel must be an index of the output, 0..{k - 1}; got {self.channel!r}")
            weights[:, int(self.channel)] = 1.0
        elif k == 1:
            weights[:, 0] = 1.0
        else:
            best = np.argmax(out, axis=1)  # (N, *spatial)
            np.put_along_axis(weights, best[:, None], 1.0, axis=1)
        region = np.ones((n, *spatial), dtype=np.float32) if self.mask is None else fit_mask(self.mask, n, spatial)
        if self.reduce == "mean":
            area = region.reshape(n, -1).sum(axis=1)
            if np.any(area <= 0):
                raise ConvscopeError("the target region is empty for at least one sample; give a non-empty mask")
            region = region / area.reshape((n,) + (1,) * len(spatial))
        elif self.reduce != "sum":
            raise ConvscopeError(f"reduce must be 'sum' or 'mean', got {self.reduce!r}")
        return np.ascontiguousarray(weights * region[:, None], dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            {
                "class": "predicted" if self.channel is None else int(self.channel),
                "region": "all" if self.mask is None else "mask",
                "reduce": self.reduce,
            }
        )
        return info


def fit_mask(mask: Any, batch: int, spatial: tuple[int, ...]) -> np.ndarray:
    """``mask`` as ``(batch, *spatial)`` float32 (nearest-resized if its spatial size differs).

    Accepts ``(*spatial)`` (shared by all samples) or ``(N, *spatial)`` with N 1 or ``batch``.
    """
    arr = np.asarray(mask)
    if arr.dtype == object or arr.ndim < len(spatial) or arr.ndim > len(spatial) + 1:
        raise ConvscopeError(
            f"mask must be a boolean/0-1 array of the output's spatial shape {spatial} (or (N, *spatial)), "
            f"got shape {arr.shape}"
        )
    if arr.ndim == len(spatial):
        arr = arr[None]
    if arr.shape[0] not in (1, batch):
        raise ConvscopeError(f"mask has {arr.shape[0]} samples but the batch has {batch}; give one mask or one per sample")
    arr = arr.astype(np.float32)
    if tuple(arr.shape[1:]) != tuple(spatial):
        index = np.ix_(*[np.minimum((np.arange(t) * s) // t, s - 1) for s, t in zip(arr.shape[1:], spatial)])
        arr = np.stack([a[index] for a in arr])
    if arr.shape[0] != batch:
        arr = np.repeat(arr, batch, axis=0)
    return np.ascontiguousarray(arr)


def select_output(outputs: Mapping[str, np.ndarray], objective: Objective) -> str:
    """Name of the output ``objective`` selects among ``outputs`` (ordered name -> host array).

    Names are adapter-made: ``"output"`` for a single tensor, ``"output[i]"`` for tuple/list items,
    ``"output['key']"`` for dict items. ``None`` picks the first output with the largest spatial
    size (the full-resolution one for deep-supervision U-Nets), else the first.
    """
    names = list(outputs)
    if not names:
        raise ConvscopeError("the model returned no tensor output; nothing to take gradients of")
    want = objective.output
    if want is None:
        sizes = [int(np.prod(outputs[n].shape[2:])) if outputs[n].ndim > 2 else 0 for n in names]
        return names[int(np.argmax(sizes))]
    key = f"output[{want}]" if isinstance(want, int) else f"output[{want!r}]"
    if key in outputs:
        return key
    if want in outputs:
        return str(want)
    raise ConvscopeError(f"the model has no output {want!r}; its outputs are: {', '.join(names)} (use --output)")
