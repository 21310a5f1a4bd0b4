"""The contract every framework adapter fulfils. Everything it returns is numpy, canonical layout.

Besides :class:`ModelAdapter` (layers, input spec, kernels, one-pass capture) an adapter *declares*
optional capabilities by implementing ``typing.Protocol`` classes checked with ``isinstance``
(never ``getattr`` probes):

=========================  ==============================================================
:class:`SupportsCapture`     ``capture(batch, layers, on_activation=..., train_mode=...)``
:class:`SupportsKernels`     ``kernel(layer) -> KernelBank``
:class:`SupportsGraphCapture`  ``capture_graph(batch, request, target=, mask=)`` (U-Net backend)
:class:`ProvidesUNetBackend`  ``unet_backend() -> SupportsGraphCapture``
:class:`SupportsGradients`   ``gradients(batch, layers, objective, with_input=)``
:class:`SupportsCpuSharing`  ``computes_on_cpu``, ``concurrent_captures(layers, threads)`` context manager
:class:`SupportsStreaming`   ``streams_activations`` is True: ``capture(on_activation=)`` hands
                             each activation over as the forward pass produces it
=========================  ==============================================================

:func:`require` turns a missing capability into ONE :class:`~convscope.errors.UnsupportedModelError`
naming what would provide it. :class:`LoadedModel` (what loaders return) lives here too, so that
nothing in ``adapters/`` imports the top-level ``loading`` module.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ..core.graph import CaptureRequest, Graph, GraphCapture
    from ..core.kernels import KernelBank
    from ..core.objective import Objective
    from ..core.layers import LayerInfo

__all__ = [
    "ModelAdapter",
    "InputSpec",
    "CaptureResult",
    "ActivationCallback",
    "LayerGradients",
    "LoadedModel",
    "SupportsCapture",
    "SupportsKernels",
    "SupportsWeightsDigest",
    "SupportsGraphCapture",
    "ProvidesUNetBackend",
    "SupportsGradients",
    "SupportsCpuSharing",
    "SupportsStreaming",
    "CAPABILITIES",
    "capabilities",
    "require",
]

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


@runtime_checkable
class SupportsCapture(Protocol):
    """Capability: activations of named layers from ONE forward pass (see :meth:`ModelAdapter.capture`)."""

    def capture(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        *,
        on_activation: ActivationCallback | None = None,
        train_mode: bool = False,
    ) -> CaptureResult: ...


@runtime_checkable
class SupportsKernels(Protocol):
    """Capability: convolution kernels in canonical ``(out, in/groups, *k)`` layout."""

    def kernel(self, layer: str) -> KernelBank: ...


@runtime_checkable
class SupportsGraphCapture(Protocol):
    """Capability (the U-Net backend): the dataflow graph, node values and per-merge gradient sums.

    ``capture_graph`` runs the model once on ``batch``, builds the :class:`~convscope.core.graph.Graph`,
    calls ``request(graph)`` (which may raise ``NotAUNet``) and returns the requested node values and,
    for the requested merges, per input ``sum |x * dS/dx|`` from one backward pass.
    """

    def capture_graph(
        self,
        batch: np.ndarray,
        request: Callable[[Graph], CaptureRequest],
        *,
        target: int | None = None,
        mask: Any = None,
    ) -> GraphCapture: ...


@runtime_checkable
class ProvidesUNetBackend(Protocol):
    """Capability: an adapter whose U-Net backend is a separate object."""

    def unet_backend(self) -> SupportsGraphCapture: ...


@runtime_checkable
class SupportsCpuSharing(Protocol):
    """Capability: say whether the forward pass computes on this machine's CPU cores, and run
    several captures at once on them (a scan's batches, each reduced on its own thread)."""

    @property
    def computes_on_cpu(self) -> bool: ...

    def concurrent_captures(
        self, layers: Sequence[str], threads: int | None = None, *, views: bool = False
    ) -> contextlib.AbstractContextManager[int]: ...


@runtime_checkable
class SupportsWeightsDigest(Protocol):
    """Capability: a digest of every weight of the model (parameters and buffers, initializers and
    weight constants) in the framework's own order, ``"blake2b-128:<hex>"``
    (:func:`convscope.core.digest.digest_arrays`). Equal weights give equal digests; it tells a scan
    whether a checkpoint, a shard or a report's model is the model it scanned."""

    def weights_digest(self) -> str: ...


@runtime_checkable
class SupportsStreaming(Protocol):
    """Capability: ``capture(on_activation=...)`` hands each activation over *as the forward pass
    produces it*, so peak memory does not grow with the number of captured layers.

    Adapters declare it with ``streams_activations = True``; one that collects every activation
    first (one multi-output call) sets it False, and callers estimate memory for all layers at once.
    """

    streams_activations: bool


CAPABILITIES: dict[str, type] = {
    "capture": SupportsCapture,
    "kernels": SupportsKernels,
    "graph": SupportsGraphCapture,
    "gradients": SupportsGradients,
    "cpu_sharing": SupportsCpuSharing,
    "weights_digest": SupportsWeightsDigest,
}
"""Capability name -> protocol, for :func:`capabilities` and :func:`require`."""

_REMEDY: dict[tuple[str, str], str] = {
    ("onnx", "gradients"): "ONNX has no autograd: use eigencam or scorecam, or load the torch model",
    ("torchscript", "gradients"): "TorchScript models are inspected without autograd here: load the eager model "
    "or a torch.export (.pt2) file",
    ("torchscript", "graph"): "their module calls cannot be traced; export the model with torch.export.save (.pt2) "
    "or to ONNX and give that file instead",
    ("*", "gradients"): "this adapter has no gradients: load the model in PyTorch, Keras or as a .pt2 file",
    ("*", "graph"): "U-Net analysis needs the model's dataflow graph, which convscope can trace for PyTorch, .pt2, "
    "Keras functional and ONNX models",
    ("*", "kernels"): "this adapter cannot read kernels",
    ("*", "capture"): "this adapter cannot capture activations",
    ("*", "cpu_sharing"): "this adapter cannot share CPU cores",
    ("*", "weights_digest"): "this adapter cannot read every weight of its model",
    ("*", "streaming"): "this adapter collects every activation before handing them over; capture fewer layers",
}


_DISPLAY = {"torch": "PyTorch", "torchscript": "TorchScript", "torch.export": ".pt2 (torch.export)", "onnx": "ONNX",
            "keras": "Keras"}


def _framework(adapter: Any) -> str:
    framework = str(getattr(type(adapter), "framework", "") or type(adapter).__name__)
    return framework.lower()


def has_capability(adapter: Any, name: str) -> bool:
    """Whether ``adapter`` declares capability ``name`` (a key of :data:`CAPABILITIES` or ``"streaming"``)."""
    if name == "streaming":
        return isinstance(adapter, SupportsStreaming) and adapter.streams_activations is True
    if name == "graph":
        return isinstance(adapter, (SupportsGraphCapture, ProvidesUNetBackend))
    return isinstance(adapter, CAPABILITIES[name])


def capabilities(adapter: Any) -> dict[str, bool]:
    """Every capability name -> whether ``adapter`` declares it (for manifests and ARCHITECTURE.md)."""
    return {name: has_capability(adapter, name) for name in (*CAPABILITIES, "streaming")}


def require(adapter: Any, name: str, *, what: str | None = None) -> Any:
    """``adapter`` if it declares capability ``name``, else ONE UnsupportedModelError naming what would provide it.

    Args:
        adapter: a model adapter.
        name: ``"capture"``, ``"kernels"``, ``"graph"``, ``"gradients"``, ``"cpu_sharing"`` or ``"streaming"``.
        what: the user-facing action, for the message (default: the capability name).
    """
    if has_capability(adapter, name):
        return adapter
    from ..errors import UnsupportedModelError

    framework = _framework(adapter)
    remedy = _REMEDY.get((framework, name)) or _REMEDY.get(("*", name), "")
    label = what or name
    shown = _DISPLAY.get(framework, framework)
    raise UnsupportedModelError(f"{label} is not available for {shown} models: {remedy}")


@dataclass
class LoadedModel:
    """A model plus what convscope knows about its input.

    Attributes:
        model: the framework model (or a ModelAdapter for file formats that need one).
        name: a display name (``demo:unet``, ``mypkg.nets:UNet``, ``model.onnx``).
        input_shape: ``(1, C, *spatial)`` if known (demo models, fixed-size files), else None.
        normalize: default ``--normalize`` for this model, if it has one.
        sample: a function returning a ``(C, *spatial)`` float32 sample input, for demos.
        info: free-form facts for manifests.
    """

    model: Any
    name: str
    input_shape: tuple[int, ...] | None = None
    normalize: str | None = None
    sample: Callable[[int], Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class ModelAdapter(abc.ABC):
    """One model in one framework, seen through convscope's framework-free types."""

    framework: str = "?"
    streams_activations: bool = False
    """True when ``capture(on_activation=...)`` hands each activation over as it is produced
    (:class:`SupportsStreaming`); False when all are collected in one call first."""

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
