"""``Scope``: the one object users hold. Everything convscope shows starts here."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .adapters import ModelAdapter, adapter_for
from .core.activations import Activation, ActivationSet
from .core.layers import TABLE_HEADER, LayerInfo, format_layer_table, layer_row, select_layers
from .io.images import PreparedInput, prepare_input
from .loading import LoadedModel, load_model

__all__ = ["Scope", "LayerTable", "load"]

LayerSpec = str | Sequence[str] | None


class LayerTable(list[LayerInfo]):
    """A list of :class:`LayerInfo` that prints as a table (``print(scope.layers())``)."""

    def __str__(self) -> str:
        return format_layer_table(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython
        printer.text(str(self))

    def _repr_html_(self) -> str:  # Jupyter: a real table, every model-derived string escaped
        import html

        head = "".join(f"<th>{h}</th>" for h in TABLE_HEADER)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in layer_row(layer)) + "</tr>" for layer in self
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_json(self) -> list[dict[str, Any]]:
        return [layer.to_dict() for layer in self]

    def names(self) -> list[str]:
        return [layer.name for layer in self]


class Scope:
    """Look inside a model: its layers, kernels and activations, and a U-Net's flow.

    Args:
        model: a ``torch.nn.Module``, a Keras 3 model, an ONNX model, a model file path, or a spec
            string (``"demo:unet"``, ``"package.module:Factory"``).
        device: where to run (``"cpu"``, ``"cuda"``, ``"mps"``); default: where the model lives.
            A model object is never moved; a model loaded from a spec/file is placed there.
        kwargs / weights / trust: how to load a spec (see :func:`convscope.load`).
        input_shape: ``(1, C, *spatial)`` the model takes, if you want ``layers()`` to show output shapes
            without an image.
        normalize: default input normalisation (``"imagenet"``, ``"none"``, ``"MEAN,STD"``).

    The model is never changed: parameters, buffers, train/eval mode, ``requires_grad`` and hooks are
    the same after every call, also when the call raises.
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str | None = None,
        kwargs: str | dict[str, Any] | None = None,
        weights: str | os.PathLike[str] | None = None,
        trust: bool = False,
        input_shape: Sequence[int] | None = None,
        normalize: str | None = None,
    ) -> None:
        if isinstance(model, LoadedModel):
            loaded = model
            adapter = adapter_for(loaded.model, device=device)
        elif isinstance(model, (str, os.PathLike)):
            loaded = load_model(model, kwargs=kwargs, weights=weights, trust=trust, device=device)
            adapter = adapter_for(loaded.model, device=device)
        else:
            loaded = LoadedModel(model=model, name=type(model).__name__)
            adapter = adapter_for(model, device=device)
        self.loaded = loaded
        self.adapter: ModelAdapter = adapter
        self.name = loaded.name
        self.input_shape = tuple(input_shape) if input_shape is not None else loaded.input_shape
        self.normalize = normalize if normalize is not None else loaded.normalize

    def __repr__(self) -> str:
        return f"Scope({self.name!r}, framework={self.adapter.framework})"

    @property
    def model(self) -> Any:
        return self.adapter.model

    # -- inputs --------------------------------------------------------------------------------
    def sample(self, seed: int = 0) -> np.ndarray:
        """A sample input ``(C, *spatial)`` float32 for demo models (ValueError for other models)."""
        if self.loaded.sample is None:
            raise ValueError(f"{self.name} has no bundled sample input; pass an image")
        return np.asarray(self.loaded.sample(seed), dtype=np.float32)

    def prepare(self, image: Any, *, size: Any = None, normalize: str | None = None) -> PreparedInput:
        """Turn ``image`` (path, array, PIL image, tensor, or a list of them) into a model batch."""
        spec = self.adapter.input_spec()
        if isinstance(image, (list, tuple)) and image and not isinstance(image[0], (int, float)):
            parts = [self.prepare(item, size=size, normalize=normalize) for item in image]
            batch = np.concatenate([p.batch for p in parts], axis=0)
            displays = [p.display for p in parts]
            display = None if any(d is None for d in displays) else np.concatenate(displays, axis=0)  # type: ignore[arg-type]
            return PreparedInput(batch=batch, display=display, source=", ".join(p.source for p in parts))
        expected = spec.spatial_size
        return prepare_input(
            image,
            channels=spec.channels,
            spatial_dims=spec.spatial_dims or 2,
            size=size,
            normalize=normalize if normalize is not None else self.normalize,
            expected_size=expected if size is None else None,
        )

    def _example_batch(self) -> np.ndarray | None:
        if self.loaded.sample is not None:
            return self.prepare(self.sample()).batch
        if self.input_shape is not None:
            return np.zeros(self.input_shape, dtype=np.float32)
        spec = self.adapter.input_spec()
        if spec.spatial_size is not None and spec.channels is not None:
            return np.zeros((1, spec.channels, *spec.spatial_size), dtype=np.float32)
        return None

    # -- layers --------------------------------------------------------------------------------
    def layers(
        self, image: Any = None, *, kind: str | None = None, containers: bool = False, size: Any = None
    ) -> LayerTable:
        """The model's layers: name, kind, kernel shape, stride, groups, output shape, parameters.

        Output shapes come from one forward pass on ``image`` (or on the model's known input shape).
        ``containers=True`` also lists blocks/Sequentials, not only leaf layers.
        """
        batch = self.prepare(image, size=size).batch if image is not None else self._example_batch()
        infos = self.adapter.describe_layers(batch)
        if not containers:
            infos = [info for info in infos if info.is_leaf]
        if kind is not None:
            infos = select_layers(infos, None, kind=kind)
        return LayerTable(infos)

    def select(self, layers: LayerSpec = None, *, kind: str | None = None, kernels: bool = False) -> list[str]:
        """Names of the layers a call would use (exact names, globs, kinds; default: all convolutions)."""
        chosen = select_layers(self.adapter.layers(), layers, kind=kind, require="kernel" if kernels else None)
        return [info.name for info in chosen]

    # -- kernels -------------------------------------------------------------------------------
    def kernels(self, layers: LayerSpec = None, *, kind: str | None = None) -> Any:
        """Convolution kernels in canonical ``(out, in/groups, *k)`` layout.

        ``scope.kernels("enc1.conv")`` (one exact name) returns a :class:`KernelBank`; a glob, a list or
        None (all convolutions) returns ``{name: KernelBank}`` in model order.
        """
        exact = isinstance(layers, str) and (
            not any(ch in layers for ch in "*?[") or any(info.name == layers for info in self.adapter.layers())
        )
        if exact:
            self.select(layers, kernels=True)  # validates, with close-name suggestions
            return self.adapter.kernel(layers)
        return {name: self.adapter.kernel(name) for name in self.select(layers, kind=kind, kernels=True)}

    # -- activations ---------------------------------------------------------------------------
    def activations(
        self,
        image: Any,
        layers: LayerSpec = None,
        *,
        kind: str | None = None,
        train: bool = False,
        size: Any = None,
        normalize: str | None = None,
    ) -> ActivationSet:
        """Outputs of the chosen layers (default: every convolution) from ONE forward pass.

        Args:
            image: path, numpy array, PIL image or tensor (or a list of them: one batch).
            layers: exact names, globs (``"enc*"``), or None for all convolutions.
            kind: restrict by kind (``"conv"``, ``"activation"``, ``"all"``...).
            train: capture in training mode (batch statistics); the model's state is restored after.
        Returns:
            :class:`ActivationSet` mapping layer name -> :class:`Activation` with ``(N, C, *spatial)``
            float32 data. A module called more than once also appears as ``name#1``, ``name#2``...
        """
        prepared = self.prepare(image, size=size, normalize=normalize)
        names = self.select(layers, kind=kind)
        result = self.adapter.capture(prepared.batch, names, train_mode=train)
        display = prepared.display[0] if prepared.display is not None else None
        items = {
            name: Activation(layer=name, data=data, source_dtype=result.dtypes.get(name, "float32"), input_display=display)
            for name, data in result.activations.items()
        }
        acts = ActivationSet(items, output=result.output, input_batch=prepared.batch)
        acts.input_display = prepared.display  # type: ignore[attr-defined]
        return acts

    # -- dataset scan --------------------------------------------------------------------------
    def scan(
        self,
        data: Any,
        layers: LayerSpec = None,
        *,
        top_k: int = 16,
        score: str = "max",
        batch_size: int = 32,
        workers: int = 2,
        size: Any = None,
        normalize: str | None = None,
        crops: bool = True,
        receptive_field: str = "theoretical",
        out: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> Any:
        """Scan a dataset: per channel of ``layers`` (default: every convolution) its statistics and
        its top-k / bottom-k images, then (``crops=True``) the receptive-field crop of every example.

        Args:
            data: folder(s) (recursive), glob(s), a text file listing images, or a list of those.
            layers: exact names or globs (``"enc*"``).
            top_k: examples kept per channel (and as many bottom examples).
            score: rank images by the channel's spatial ``"max"`` or ``"mean"``.
            receptive_field: ``"theoretical"`` (from the graph) or ``"effective"`` (thresholded input
                gradient of the activation at the arg-max; torch models).
            out: also write the scan folder (``scan.json``, ``state.npz``, channel cards) there.
            options: see :func:`convscope.scan.engine.run_scan` (``resume``, ``checkpoint``,
                ``engine="ray"``, ``ray_address``, ``edges_from``, ``bins``, ``kind`` ...).

        Returns:
            :class:`convscope.ScanResult`.
        """
        from .scan.engine import run_scan

        if out is not None:
            options.setdefault("checkpoint", out)
        result = run_scan(
            self, data, layers=layers, top_k=top_k, score=score, batch_size=batch_size, workers=workers,
            size=size, normalize=normalize, **options,
        )
        if crops:
            from .scan.crops import compute_crops

            compute_crops(self, result, method=receptive_field, size=size, normalize=normalize)
        if out is not None:
            from .scan.cards import write_scan

            write_scan(self, result, out, cards=crops, size=size, normalize=normalize)
        return result

    # -- U-Net ---------------------------------------------------------------------------------
    def unet(self, image: Any, *, target: int | None = None, mask: Any = None, size: Any = None,
             normalize: str | None = None) -> Any:
        """Find the U-Net anatomy and capture its flow for ``image`` (see :mod:`convscope.unet_flow`)."""
        from .unet_flow import build_unet_flow, unet_backend_for

        prepared = self.prepare(image, size=size, normalize=normalize)
        display = prepared.display[0] if prepared.display is not None else None
        return build_unet_flow(unet_backend_for(self.adapter), prepared.batch, display, target=target, mask=mask)

    # -- files ---------------------------------------------------------------------------------
    def save_kernels(self, out: str | os.PathLike[str], layers: LayerSpec = None, **options: Any) -> Any:
        """Write kernel grids (and ``manifest.json``) into ``out``; see :func:`convscope.export.write_kernels`."""
        from .export import write_kernels

        return write_kernels(self, out, layers, **options)

    def save_activations(self, image: Any, out: str | os.PathLike[str], layers: LayerSpec = None, **options: Any) -> Any:
        """Stream activation grids of one forward pass into ``out``; see :func:`convscope.export.write_activations`."""
        from .export import write_activations

        return write_activations(self, image, out, layers, **options)

    def report(self, images: Any, out: str | os.PathLike[str], **options: Any) -> Any:
        """Write a self-contained HTML report into ``out``; returns ``out/index.html``. See :func:`convscope.report.build_report`."""
        from .report.builder import build_report

        return build_report(self, images, out, **options)


def load(
    spec: Any,
    *,
    kwargs: str | dict[str, Any] | None = None,
    weights: str | os.PathLike[str] | None = None,
    trust: bool = False,
    device: str | None = None,
) -> Scope:
    """Load a model (``demo:NAME``, ``package.module:Factory``, or a model file) and return a :class:`Scope`.

    Files are loaded without executing code from them; formats that can run code (pickled whole
    models, TorchScript, ``.pt2``) need ``trust=True``.
    """
    return Scope(load_model(spec, kwargs=kwargs, weights=weights, trust=trust, device=device), device=device)
