"""``Scope``: the one object users hold. Everything convscope shows starts here."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from .adapters import ModelAdapter, adapter_for
from .core.activations import Activation, ActivationSet, not_executed
from .core.budget import ChunkPlan, MemoryEstimate
from .core.layers import TABLE_HEADER, LayerInfo, format_layer_table, layer_row, select_layers
from .io.images import PreparedInput, prepare_input
from .io.volume_prep import VolumeOptions, probe_downsampling
from .loading import LoadedModel, load_model

if TYPE_CHECKING:
    from .cam import CamResult, CamSet
    from .core.kernels import KernelBank
    from .scan.result import ScanResult
    from .unet_flow import UNetFlow

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
        self.volume_options: VolumeOptions | None = None
        """How volume inputs (NIfTI, DICOM) become model input (series, channels, intensity, ROI, slice)."""
        self.max_memory: int | None = None
        """Memory budget in bytes for one capture (None: ``convscope.core.budget.default_budget()``)."""
        self._probe_cache: dict[tuple[int, ...], dict[str, tuple[int, ...]]] = {}
        self._volume_cache: tuple[tuple[Any, ...], PreparedInput] | None = None

    def __repr__(self) -> str:
        return f"Scope({self.name!r}, framework={self.adapter.framework})"

    def _repr_html_(self) -> str:
        """Jupyter: the model's name, framework, counts and its layer table (no forward pass)."""
        import html

        from ._html import plural

        table = LayerTable(info for info in self.adapter.layers() if info.is_leaf)
        convs = sum(1 for info in table if info.is_conv)
        params = sum(info.params for info in table)
        head = (f"<p><b>{html.escape(self.name)}</b> ({html.escape(self.adapter.framework)}): "
                f"{plural(len(table), 'layer')}, {plural(convs, 'convolution')}, {params:,} parameters</p>")
        return head + table._repr_html_()

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
        """Turn ``image`` (path, array, PIL image, tensor, or a list of them) into a model batch.

        A :class:`PreparedInput` is returned as it is. A volume file (NIfTI, DICOM) is read once: the last one prepared is remembered (by path,
        modification time and options), so :meth:`check_memory` and the command share one read.
        """
        if isinstance(image, PreparedInput):  # prepared already (a viewer's cached input): as it is
            return image
        key = self._volume_key(image, size, normalize)
        if key is not None and self._volume_cache is not None and self._volume_cache[0] == key:
            return self._volume_cache[1]
        prepared = self._prepare(image, size=size, normalize=normalize)
        if key is not None:
            self._volume_cache = (key, prepared)
        return prepared

    def _volume_key(self, image: Any, size: Any, normalize: str | None) -> tuple[Any, ...] | None:
        """Cache key of a volume input (a volume file, or the ``--channels`` files), None for anything else."""
        options = self.volume_options
        if options is not None and options.channels:
            paths = [Path(p) for p in options.channels]
        elif isinstance(image, (str, os.PathLike)):
            from .io.readers import reader_for_path

            path = Path(image)
            reader = reader_for_path(path) if path.exists() else None
            if reader is None or not reader.volume:
                return None
            paths = [path]
        else:
            return None
        stamps = tuple((str(p.resolve()), p.stat().st_mtime_ns if p.exists() else None) for p in paths)
        return (stamps, repr(size), repr(normalize), repr(options))

    def _prepare(self, image: Any, *, size: Any = None, normalize: str | None = None) -> PreparedInput:
        spec = self.adapter.input_spec()
        if isinstance(image, (list, tuple)) and image and not isinstance(image[0], (int, float)):
            parts = [self.prepare(item, size=size, normalize=normalize) for item in image]
            batch = np.concatenate([p.batch for p in parts], axis=0)
            shown = [p.display for p in parts if p.display is not None]
            display = np.concatenate(shown, axis=0) if len(shown) == len(parts) else None
            views = {p.view for p in parts}  # 3D parts: one view for all of them (else the batch cannot be one)
            return PreparedInput(batch=batch, display=display, source=", ".join(p.source for p in parts),
                                 view=views.pop() if len(views) == 1 else None)
        expected = spec.spatial_size
        return prepare_input(
            image,
            channels=spec.channels,
            spatial_dims=spec.spatial_dims or 2,
            size=size,
            normalize=normalize if normalize is not None else self.normalize,
            expected_size=expected if size is None else None,
            volume_options=self.volume_options,
            downsampling=lambda: self._downsampling(spec.channels, spec.spatial_dims or 2),
        )

    def _downsampling(self, channels: int | None, spatial_dims: int) -> int:
        """The model's total downsampling (measured once on a small probe, then remembered)."""
        cached = getattr(self, "_downsampling_factor", None)
        if cached is None:
            cached = probe_downsampling(self.adapter, channels, spatial_dims)
            self._downsampling_factor = cached
        return cached
    def check_memory(
        self, image: Any, layers: Sequence[str] | None = None, *, size: Any = None, mode: str = "hold",
        what: str | None = None, masked: int = 0,
    ) -> MemoryEstimate:
        """Estimate the memory a capture of ``layers`` (default: every layer) on ``image`` needs and
        raise :class:`~convscope.core.budget.MemoryBudgetError` when it is above :attr:`max_memory`.

        Runs before the image is decoded (its size comes from the file header) and before the
        forward pass; see :mod:`convscope.core.budget` for what is counted. The whole batch is one
        pass here; :meth:`plan_slices` splits the slices of a volume (``--slices``) into chunks instead.
        ``mode="gradients"`` counts one backward pass (U-Net flow, CAMs); ``masked`` Score-CAM's
        masked inputs per forward pass.
        """
        from .core.budget import check_capture

        shape, chosen, channels, label, hint = self._budget_inputs(image, layers, size, what)
        return check_capture(shape, chosen, channels_by_layer=channels, probe=self._probe_shapes,
                             fixed=self.adapter.input_spec().spatial_size, budget=self.max_memory, mode=mode,
                             what=label, hint=hint, masked=masked, workspace=self._workspace(shape))

    def plan_slices(
        self, image: Any, layers: Sequence[str] | None = None, *, size: Any = None, mode: str = "hold",
        what: str | None = None, chunked: bool = True, why_whole: str = "", masked: int = 0,
    ) -> ChunkPlan:
        """How many samples go through the model per forward pass: the slices of a volume fed to a
        2D model (``--slices PLANE``) in chunks sized to :attr:`max_memory`, anything else in one pass.

        The per-sample capture estimate of :mod:`convscope.core.budget` gives the chunk size (the
        whole stack when it fits); a chunk holds its own captures only, so memory is bounded by one
        chunk plus what the command keeps. ``chunked=False`` (batch statistics in training mode,
        results that need every slice at once) checks the whole batch like :meth:`check_memory`,
        ``why_whole`` saying why in the refusal. Raises
        :class:`~convscope.core.budget.MemoryBudgetError` when not even one slice fits.
        """
        from .core.budget import check_capture, plan_chunks

        shape, chosen, channels, label, hint = self._budget_inputs(image, layers, size, what)
        fixed = self.adapter.input_spec().spatial_size
        record = self._slice_record(image, size)
        if record is None or not chunked:
            estimate = check_capture(shape, chosen, channels_by_layer=channels, probe=self._probe_shapes, fixed=fixed,
                                     budget=self.max_memory, mode=mode, what=label,
                                     hint=hint + (f" ({why_whole})" if why_whole and hint else ""), masked=masked,
                                     workspace=self._workspace(shape))
            return ChunkPlan(total=int(shape[0]), size=max(1, int(shape[0])), estimate=estimate)
        return plan_chunks(shape, chosen, channels_by_layer=channels, probe=self._probe_shapes, fixed=fixed,
                           budget=self.max_memory, mode=mode, what=f"{label} of one {record.plane} slice",
                           hint=f"; feed one slice with --slice {record.plane}:N or raise --max-memory", masked=masked,
                           workspace=self._workspace(shape))

    def _workspace(self, shape: tuple[int, ...]) -> int:
        """Bytes per sample of the largest kernel scratch buffer (PyTorch's unfold path of small 3D
        convolutions on the CPU: :func:`~convscope.core.budget.unfold_workspace`); 0 elsewhere."""
        from .core.budget import unfold_workspace

        if self.adapter.framework != "torch":
            return 0
        return unfold_workspace([info for info in self.adapter.layers() if info.is_leaf], shape)

    def _slice_record(self, image: Any, size: Any) -> Any:
        """The input's VolumeInput when it is several slices of a volume for a 2D model, else None."""
        if self._volume_key(image, size, None) is None:
            return None
        record = self.prepare(image, size=size).volume
        if record is None or record.plane is None or len(record.slice_indices) < 2:
            return None
        return record

    def _budget_inputs(
        self, image: Any, layers: Sequence[str] | None, size: Any, what: str | None
    ) -> tuple[tuple[int, ...], list[str], dict[str, int | None], str, str]:
        from .io.images import planned_shape

        spec = self.adapter.input_spec()
        record = self._slice_record(image, size)
        if isinstance(image, PreparedInput):  # prepared already: its batch is the model input
            image = image.batch
        elif self._volume_key(image, size, None) is not None:  # a volume's model input depends on its read
            image = self.prepare(image, size=size).batch      # (fit, ROI, slices); the read is remembered
        shape = planned_shape(image, channels=spec.channels, spatial_dims=spec.spatial_dims or 2, size=size)
        leaves = [info for info in self.adapter.layers() if info.is_leaf]
        chosen = list(layers) if layers is not None else [info.name for info in leaves]
        channels = {info.name: info.out_channels if info.is_conv else None for info in leaves}
        for name in chosen:
            channels.setdefault(name, None)
        label = what or f"the activations of {len(chosen)} layer{'s' if len(chosen) != 1 else ''}"
        hint = f"; or feed one slice with --slice {record.plane}:N" if record is not None else ""
        return tuple(int(v) for v in shape), chosen, channels, label, hint

    def _probe_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Per-sample output shapes of every leaf layer from one forward pass on zeros of ``shape`` (cached)."""
        if shape not in self._probe_cache:
            names = [info.name for info in self.adapter.layers() if info.is_leaf]
            result = self.adapter.capture(np.zeros(shape, dtype=np.float32), names, on_activation=lambda _n, _a: None)
            self._probe_cache[shape] = {name: tuple(s[1:]) for name, s in result.shapes.items()}
        return self._probe_cache[shape]

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
        if image is not None:
            self.check_memory(image, size=size, mode="stream", what="the shape pass")
        batch = self.prepare(image, size=size).batch if image is not None else self._example_batch()
        infos = self.adapter.describe_layers(batch)
        if not containers:
            infos = [info for info in infos if info.is_leaf]
        if kind is not None:
            infos = select_layers(infos, None, kind=kind)
        return LayerTable(infos)

    def weights_digest(self) -> str | None:
        """A digest of every weight of the model (``"blake2b-128:<hex>"``), or None when its adapter
        cannot read them all (no such capability, or reading them failed). Equal weights give equal digests (see :mod:`convscope.core.digest`);
        a scan records it to recognise its model later. Computed anew each call (the model may change)."""
        from .adapters.base import SupportsWeightsDigest

        if not isinstance(self.adapter, SupportsWeightsDigest):
            return None
        try:
            return self.adapter.weights_digest()
        except Exception:  # noqa: BLE001 - a model whose weights cannot all be read (a custom state_dict
            return None  # that raises, tensors on a meta device): no digest, the checks use the layers

    def select(self, layers: LayerSpec = None, *, kind: str | None = None, kernels: bool = False) -> list[str]:
        """Names of the layers a call would use (exact names, globs, kinds; default: all convolutions)."""
        chosen = select_layers(self.adapter.layers(), layers, kind=kind, require="kernel" if kernels else None)
        return [info.name for info in chosen]

    # -- kernels -------------------------------------------------------------------------------
    @overload
    def kernels(self, layers: str, *, kind: str | None = None) -> KernelBank | dict[str, KernelBank]: ...
    @overload
    def kernels(self, layers: list[str] | tuple[str, ...] | None = None, *,
                kind: str | None = None) -> dict[str, KernelBank]: ...
    @overload
    def kernels(self, layers: LayerSpec = None, *, kind: str | None = None) -> KernelBank | dict[str, KernelBank]: ...

    def kernels(self, layers: LayerSpec = None, *, kind: str | None = None) -> KernelBank | dict[str, KernelBank]:
        """Convolution kernels in canonical ``(out, in/groups, *k)`` layout.

        ``scope.kernels("enc1.conv")`` (one exact name) returns a :class:`KernelBank`; a glob, a list or
        None (all convolutions) returns ``{name: KernelBank}`` in model order.
        """
        exact = isinstance(layers, str) and (
            not any(ch in layers for ch in "*?[") or any(info.name == layers for info in self.adapter.layers())
        )
        if exact:
            assert isinstance(layers, str)
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
            Selected layers the forward pass never called are listed in ``.not_executed``.
        """
        names = self.select(layers, kind=kind)
        self.check_memory(image, names, size=size)
        prepared = self.prepare(image, size=size, normalize=normalize)
        result = self.adapter.capture(prepared.batch, names, train_mode=train)
        display = prepared.display[0] if prepared.display is not None else None
        items = {
            name: Activation(layer=name, data=data, source_dtype=result.dtypes.get(name, "float32"), input_display=display,
                             view=prepared.view)
            for name, data in result.activations.items()
        }
        return ActivationSet(items, output=result.output, input_batch=prepared.batch,
                             not_executed=not_executed(names, result.shapes), input_display=prepared.display)

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
    ) -> ScanResult:
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

        if crops:
            from .scan.crops import check_method

            check_method(self, receptive_field)  # before pass 1: no scan is spent on a method that cannot run
        if out is not None:
            options.setdefault("checkpoint", out)
            # the complete pass-1 state stays in the checkpoint until the folder is written: an
            # interrupted pass 2 resumes without scanning again
            options.setdefault("keep_checkpoint", Path(options["checkpoint"]).resolve() == Path(out).resolve())
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
            if options.get("keep_checkpoint"):
                from .scan.engine import finish_checkpoint

                finish_checkpoint(out)
        return result

    # -- U-Net ---------------------------------------------------------------------------------
    def unet(self, image: Any, *, target: int | None = None, mask: Any = None, size: Any = None,
             normalize: str | None = None) -> UNetFlow:
        """Find the U-Net anatomy and capture its flow for ``image`` (see :mod:`convscope.unet_flow`).

        The slices of a volume fed to a 2D U-Net (``volume_options.slices``) go in chunks that fit
        :attr:`max_memory` (:meth:`plan_slices`): the skip metrics cover every slice, the flow keeps
        the values of the first chunk."""
        from .unet import build_unet_flow, unet_backend_for

        plan = self.plan_slices(image, size=size, mode="gradients", what="the U-Net flow (every layer, one backward pass)")
        prepared = self.prepare(image, size=size, normalize=normalize)
        display = prepared.display[0] if prepared.display is not None else None
        return build_unet_flow(unet_backend_for(self.adapter), prepared.batch, display, target=target, mask=mask,
                               adapter=self.adapter, chunks=plan.ranges() if plan.chunks > 1 else None,
                               view=prepared.view)

    # -- attribution ---------------------------------------------------------------------------
    @overload
    def cam(self, image: Any, layer: LayerSpec = None, target: Any = None, method: str | Sequence[str] = "gradcam", *,
            relu: bool = True, cam_normalize: str = "max", shared: bool = False, size: Any = None,
            normalize: str | None = None, scorecam_budget_mb: float | None = None, progress: bool = True,
            as_set: Literal[True]) -> CamSet: ...
    @overload
    def cam(self, image: Any, layer: LayerSpec = None, target: Any = None, method: str | Sequence[str] = "gradcam", *,
            relu: bool = True, cam_normalize: str = "max", shared: bool = False, size: Any = None,
            normalize: str | None = None, scorecam_budget_mb: float | None = None, progress: bool = True,
            as_set: bool = False) -> CamResult | CamSet: ...

    def cam(
        self,
        image: Any,
        layer: LayerSpec = None,
        target: Any = None,
        method: str | Sequence[str] = "gradcam",
        *,
        relu: bool = True,
        cam_normalize: str = "max",
        shared: bool = False,
        size: Any = None,
        normalize: str | None = None,
        scorecam_budget_mb: float | None = None,
        progress: bool = True,
        as_set: bool = False,
    ) -> CamResult | CamSet:
        """Class activation maps of ``target`` at ``layer`` (see :mod:`convscope.cam`).

        Args:
            image: path, array, PIL image or tensor (or a list: one batch).
            layer: exact name (``name#k`` for a module's k-th extra call), glob or list; default the
                last convolution.
            target: from :mod:`convscope.targets` (or a list, one per sample); default: the predicted
                class over the whole output (segmentation) or the top-1 class (classification).
            method: one name or a list (``gradcam``, ``gradcam++``, ``hirescam``, ``xgradcam``,
                ``layercam``, ``eigencam``, ``scorecam``, ``inputxgrad``, ``saliency``).
            size / normalize: input resizing and normalisation, as in :meth:`activations`.
            relu / cam_normalize / shared: post-processing of ``data`` (``raw`` is always the signed map):
                ReLU first (default on), then divide by the max (``"max"``, default), ``"minmax"`` or
                ``"none"``, per image (default) or ``shared`` across every map of this call.
            as_set: always return a :class:`~convscope.cam.CamSet`.
        Returns:
            :class:`~convscope.cam.CamResult` for one exact layer and one method, else a
            :class:`~convscope.cam.CamSet` keyed ``(layer, method)``. All gradient methods at all
            layers come from ONE forward + ONE backward pass (one per chunk for the slices of a volume
            fed to a 2D model, ``volume_options.slices``: chunks sized to :attr:`max_memory` by
            :meth:`plan_slices`, joined into the maps of every slice; ``.chunks`` says how).
        """
        from .cam import DEFAULT_SCORECAM_BUDGET_MB, chunk_target, compute_cams, fit_target_masks, merge_cam_sets
        from .core import targets as tg
        from .core.attribution import PostProcess, check_methods

        names = self._cam_layers(layer)
        methods = check_methods(method)
        budget_mb = scorecam_budget_mb or DEFAULT_SCORECAM_BUDGET_MB
        checked = self.plan_cam(image, names, methods, size=size, scorecam_budget_mb=budget_mb)  # before any pass
        plan = checked if self._slice_record(image, size) is not None else None  # None: one pass
        prepared = self.prepare(image, size=size, normalize=normalize)
        if target is None:
            target = tg.auto()
        elif isinstance(target, (list, tuple)):
            target = tg.per_sample(target)
        target = fit_target_masks(target, prepared.volume)  # a NIfTI/DICOM mask: on the scan's grid, fitted like the input
        post = PostProcess(relu=relu, normalize=cam_normalize, scope="shared" if shared else "image")  # type: ignore[arg-type]

        def run(batch: np.ndarray, goal: Any, display: np.ndarray | None) -> CamSet:
            return compute_cams(self.adapter, batch, names, goal, methods, post=post, display=display,
                                scorecam_budget_mb=budget_mb, progress=progress, view=prepared.view)

        if plan is None or plan.chunks == 1:
            result = run(prepared.batch, target, prepared.display)
        else:  # independent slices: chunk by chunk, joined (a shared scale recomputed over all of them)
            total = int(prepared.batch.shape[0])
            parts = [(start, run(prepared.batch[start:stop], chunk_target(target, start, stop, total),
                                 prepared.display[start:stop] if prepared.display is not None else None))
                     for start, stop in plan.ranges()]
            result = merge_cam_sets(parts, post)
        if plan is not None:
            result.chunks = plan.describe()
        single_layer = isinstance(layer, str) and not any(ch in layer for ch in "*?[")
        if not as_set and (single_layer or layer is None) and len(methods) == 1 and len(result) == 1:
            return next(iter(result.values()))
        return result

    def plan_cam(
        self, image: Any, layers: Sequence[str], methods: Sequence[str], *, size: Any = None,
        scorecam_budget_mb: float | None = None,
    ) -> ChunkPlan:
        """The memory check of :meth:`cam` (:meth:`plan_slices`): gradient methods count one backward
        pass (mode ``"gradients"``), forward-only ones the capture of ``layers``, Score-CAM also its
        batches of masked inputs (as many as :mod:`convscope.cam` puts in one forward pass). Raises
        :class:`~convscope.core.budget.MemoryBudgetError` before any work when it does not fit."""
        from .cam import DEFAULT_SCORECAM_BUDGET_MB, _chunk_size
        from .core.attribution import GRADIENT_METHODS, INPUT_METHODS, check_methods

        methods = check_methods(methods)  # canonical names (aliases like "grad-cam")
        backward = any(m in GRADIENT_METHODS or m in INPUT_METHODS for m in methods)
        masked = 0
        if "scorecam" in methods:
            shape, _, channels, _, _ = self._budget_inputs(image, layers, size, None)
            one = np.broadcast_to(np.float32(0), (1, *shape[1:]))  # no memory: the chunk size needs the shape only
            cap = _chunk_size(one, scorecam_budget_mb or DEFAULT_SCORECAM_BUDGET_MB)
            widest = max((channels.get(name) or cap for name in layers), default=cap)
            masked = min(cap, int(shape[0]) * widest)  # one masked input per sample and channel, at most cap a pass
        what = "the CAMs (activations and gradients)" if backward else "the CAMs"
        return self.plan_slices(image, list(layers), size=size, mode="gradients" if backward else "hold", what=what,
                                masked=masked)

    def _cam_layers(self, layer: LayerSpec) -> list[str]:
        from .errors import ConvscopeError

        infos = self.adapter.layers()
        if layer is None:
            convs = [i.name for i in infos if i.kind == "conv"]
            if not convs:
                raise ConvscopeError("the model has no convolution; give layer= (a layer with a spatial output)")
            return [convs[-1]]
        specs = [layer] if isinstance(layer, str) else list(layer)
        known = {i.name for i in infos}
        names: list[str] = []
        for spec in specs:
            base, sep, k = spec.rpartition("#")
            if sep and k.isdigit() and base in known:
                names.append(spec)
            elif spec in known:
                names.append(spec)
            else:  # a glob: the convolutions it matches (any layer it matches when it matches no convolution)
                try:
                    names.extend(self.select(spec, kind="conv"))
                except LookupError:
                    names.extend(self.select(spec, kind="all"))
        return list(dict.fromkeys(names))

    # -- files ---------------------------------------------------------------------------------
    def save_kernels(self, out: str | os.PathLike[str], layers: LayerSpec = None, **options: Any) -> Path:
        """Write kernel grids (and ``manifest.json``) into ``out``; see :func:`convscope.export.write_kernels`."""
        from .export import write_kernels

        return write_kernels(self, out, layers, **options)

    def save_activations(self, image: Any, out: str | os.PathLike[str], layers: LayerSpec = None, **options: Any) -> Path:
        """Stream activation grids of one forward pass into ``out``; see :func:`convscope.export.write_activations`."""
        from .export import write_activations

        return write_activations(self, image, out, layers, **options)

    def report(self, images: Any, out: str | os.PathLike[str], **options: Any) -> Path:
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
