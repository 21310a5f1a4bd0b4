"""The contract every framework adapter fulfils. Everything it returns is numpy, canonical layout."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ..core.kernels import KernelBank
    from ..core.objective import Objective
    from ..core.layers import LayerInfo

__all__ = ["ModelAdapter", "InputSpec", "CaptureResult", "ActivationCallback", "LayerGradients", "SupportsGradients"]

ActivationCallback = Callable[[str, np.ndarray], None]
"""Called as ``callback(layer_name, array)`` with each captured activation as soon as it exists
(streaming); ``array`` is ``(N, C, *spatial)`` float32 on the host and owned by the callee."""


@dataclass(frozen=True)
class InputSpec:
    """What the model expects as input, channels-first from convscope's point of view.

    Attributes:
        channels: input channel count (from the first convolution), or None if unknown.
        spatial_dims: 1, 2 or 3, or None if unknown.
        spatial_size: fixed spatial size ``(H, W)`` / ``(D, H, W)`` if the model fixes one, else None.
        dtype: numpy dtype name the model computes in (``"float32"``, ``"float16"``...).
    """

    channels: int | None
    spatial_dims: int | None
    spatial_size: tuple[int, ...] | None = None
    dtype: str = "float32"


@dataclass
class CaptureResult:
    """Activations of one forward pass.

    Attributes:
        activations: layer name -> ``(N, C, *spatial)`` float32 host array (empty when streamed).
        output: the model's (first) output as float32 numpy, or None.
        shapes: layer name -> activation shape (also filled when streaming).
        dtypes: layer name -> the dtype the layer produced before upcasting to float32.
    """

    activations: dict[str, np.ndarray] = field(default_factory=dict)
    output: np.ndarray | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerGradients:
    """Activations at some layers and the gradient of an objective with respect to them.

    From ONE forward and ONE backward pass (a vector-Jacobian product of the selected output with
    cotangent ``objective.cotangent(output)``); parameters' ``.grad`` and ``requires_grad`` are
    never touched.

    Attributes:
        activations: layer name (``name#k`` for the k-th extra call of a module) -> ``(N, C, *spatial)``
            float32 host array, the layer's output as the forward pass produced it.
        gradients: same keys and shapes: ``d score / d activation``, float32.
        output: the tensor the gradient started from, ``(N, K, *spatial)`` or ``(N, K)`` float32.
        output_name: which tensor that is, for manifests (e.g. ``"output"``, ``"output['seg']"``,
            ``"output (input of the final Sigmoid)"``).
        score: ``(N,)`` float32, the objective per sample (``sum(W[n] * output[n])``).
        cotangent: the ``W`` used, same shape as ``output``.
        input_gradient: ``d score / d input`` in the batch's ``(N, C, *spatial)`` layout when asked for
            (``with_input=True``), else None.
    """

    activations: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray]
    output: np.ndarray
    output_name: str
    score: np.ndarray
    cotangent: np.ndarray
    input_gradient: np.ndarray | None = None


@runtime_checkable
class SupportsGradients(Protocol):
    """Capability: layer activations and gradients of a framework-free objective."""

    def gradients(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        objective: Objective,
        *,
        with_input: bool = False,
    ) -> LayerGradients:
        """ONE forward + ONE backward pass on ``batch`` (``(N, C, *spatial)`` float32, channels first).

        The model is left exactly as it was (parameters, ``.grad``, ``requires_grad``, modes, hooks),
        also when this raises.
        """
        ...


class ModelAdapter(abc.ABC):
    """One model in one framework, seen through convscope's framework-free types."""

    framework: str = "?"

    @property
    @abc.abstractmethod
    def model(self) -> Any:
        """The wrapped framework model (never modified by convscope)."""

    @abc.abstractmethod
    def layers(self) -> list[LayerInfo]:
        """Every named layer in model order (``out_shape`` None unless known statically)."""

    @abc.abstractmethod
    def input_spec(self) -> InputSpec:
        """What the model takes as input."""

    @abc.abstractmethod
    def kernel(self, layer: str) -> KernelBank:
        """The kernel of convolution layer ``layer`` in canonical ``(out, in/groups, *k)`` layout."""

    @abc.abstractmethod
    def capture(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        *,
        on_activation: ActivationCallback | None = None,
        train_mode: bool = False,
    ) -> CaptureResult:
        """Run ONE forward pass on ``batch`` and capture the outputs of ``layers``.

        Args:
            batch: ``(N, C, *spatial)`` float32, channels first (the adapter converts layouts).
            layers: qualified names from :meth:`layers`.
            on_activation: if given, each activation is handed to it as soon as it is produced
                and not kept (``CaptureResult.activations`` stays empty).
            train_mode: run in training mode (BatchNorm batch statistics, dropout); the model's
                state (including running statistics) is restored afterwards.
        The model is left exactly as it was, also when this raises.
        """

    def describe_layers(self, batch: np.ndarray | None = None) -> list[LayerInfo]:
        """:meth:`layers` with ``out_shape`` filled from one forward pass on ``batch`` if given."""
        infos = self.layers()
        if batch is None:
            return infos
        import dataclasses

        names = [info.name for info in infos]
        result = self.capture(batch, names, on_activation=lambda _n, _a: None)
        return [
            dataclasses.replace(info, out_shape=tuple(result.shapes[info.name][1:]))
            if info.name in result.shapes
            else info
            for info in infos
        ]
