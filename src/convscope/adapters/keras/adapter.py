"""Keras 3 adapter: layers, canonical kernels and one-pass activation capture for ``keras.Model``.

Works with any Keras 3 backend (torch, JAX, TensorFlow): tensors are only touched through
``keras.ops``. Keras is imported lazily, inside functions, so ``import convscope`` never needs it.

Names
    A layer is named by its Keras name; a layer inside a nested sub-model (Functional or
    Sequential, or a layer that owns sub-layers) by the dotted path ``"submodel.layer"``.
    A ``SeparableConv1D/2D`` layer ``sep`` appears twice: ``"sep"`` is its depthwise half (kernel
    ``(in * depth_multiplier, 1, *k)``, ``groups = in``; activation = the depthwise intermediate,
    which Keras never exposes, recomputed from the layer input with ``keras.ops.depthwise_conv``)
    and ``"sep:pointwise"`` its pointwise half (kernel ``(filters, in * depth_multiplier, 1, ...)``;
    activation = the layer's output, after bias and activation).

Layouts
    Activations come back channels first ``(N, C, *spatial)`` float32 whatever the model's
    ``data_format``; kernels in ``(out, in / groups, *k)`` float32. Keras stores
    ``(*k, in / groups, out)`` for convolutions, ``(*k, out, in)`` for transposed convolutions and
    ``(*k, in, depth_multiplier)`` for depthwise kernels; :meth:`KerasAdapter.kernel` converts.

Capture
    Activations of any set of layers come from ONE forward pass. When every requested layer is
    a top-level layer of a functional model (or of a Sequential with a known input shape) that pass
    is one call of a cached multi-output ``keras.Model(model.inputs, [layer outputs..., model
    outputs...])`` with ``training=False``. When a requested layer sits inside a nested sub-model,
    the pass walks the functional graph (entering those sub-models; see :mod:`.graph`) and
    calls each layer once. Subclassed models have no recorded graph: their kernels work, their
    activations need a functional model (the error says so).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.kernels import KernelBank
from ...core.layers import LayerInfo
from ...errors import (
    ConvscopeError,
    LayerNotFoundError,
    UnsupportedModelError,
    close_matches,
)
from .._capture import Collector, first_line, forward_failed
from ..base import ActivationCallback, CaptureResult, InputSpec, LayerGradients, ModelAdapter
from .graph import class_names, graph_of, is_container, layer_kind, no_grad, sublayers, walk
from .runtime import _keras, _to_numpy, call_with_training, is_keras_model, run_in_call_context

if TYPE_CHECKING:
    from ...core.objective import Objective

__all__ = ["KerasAdapter", "load_keras_file", "is_keras_model", "POINTWISE"]

POINTWISE = ":pointwise"
"""Suffix naming the pointwise half of a separable convolution (``"sep:pointwise"``)."""

_CAPTURE_CACHE_SIZE = 8

def _ints(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


_first_line = first_line


@dataclass(frozen=True)
class _Entry:
    """One named layer: the Keras layer, which half of a separable conv, and its containers."""

    name: str
    layer: Any
    part: str | None  # None, or "pointwise" for the pointwise half of a separable convolution
    parents: tuple[Any, ...]  # enclosing containers below the root model, outermost first
    parent_names: tuple[str, ...] = ()  # their qualified names

    @property
    def separable(self) -> bool:
        return "BaseSeparableConv" in class_names(self.layer)


class KerasAdapter(ModelAdapter):
    """Wraps a Keras 3 model (Sequential, Functional, subclassed). The model is never changed.

    Args:
        model: a ``keras.Model``.

    Raises:
        TypeError: ``model`` is not a Keras model.
    """

    framework = "keras"
    streams_activations = True  # capture(on_activation=...) walks the graph layer by layer

    def __init__(self, model: Any) -> None:
        keras = _keras()
        if not isinstance(model, keras.Model):
            raise TypeError(f"KerasAdapter needs a keras.Model, got {type(model).__name__}")
        self._model = model
        self._entries: dict[str, _Entry] | None = None
        self._capture_models: dict[tuple[str, ...], Any] = {}
        self._layer_infos: list[LayerInfo] | None = None
        self._channels_first: bool | None = None

    @property
    def model(self) -> Any:
        return self._model

    def weights_digest(self) -> str:
        """A digest of every weight (see :class:`~convscope.adapters.base.SupportsWeightsDigest`)."""
        from ...core.digest import digest_arrays

        return digest_arrays((str(getattr(v, "path", v.name)), _to_numpy(v)) for v in self._model.weights)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (Ray actors, multiprocessing): the cached capture models are rebuilt on use.

        (The same method as wave2/i14's, carried here because this file moved from keras_adapter.py.)
        """
        state = self.__dict__.copy()
        state["_capture_models"] = {}
        state["_entries"] = None  # holds layer objects of this process's model
        return state

    # -- structure -----------------------------------------------------------------------------
    def _root_graph(self) -> Any | None:
        return graph_of(self._model)

    def _all_entries(self) -> dict[str, _Entry]:
        if self._entries is None:
            entries: dict[str, _Entry] = {}
            seen: set[int] = set()

            def visit(container: Any, prefix: str, parents: tuple[Any, ...], parent_names: tuple[str, ...]) -> None:
                for layer in sublayers(container):
                    if id(layer) in seen:  # the same layer object reachable twice: keep the first name
                        continue
                    seen.add(id(layer))
                    name = prefix + layer.name
                    entries[name] = _Entry(name, layer, None, parents, parent_names)
                    if "BaseSeparableConv" in class_names(layer):
                        entries[name + POINTWISE] = _Entry(name + POINTWISE, layer, "pointwise", parents, parent_names)
                    if is_container(layer):
                        visit(layer, name + ".", (*parents, layer), (*parent_names, name))

            visit(self._model, "", (), ())
            self._entries = entries
        return self._entries

    def _entry(self, name: str) -> _Entry:
        entries = self._all_entries()
        if name not in entries:
            near = close_matches(name, entries)
            raise LayerNotFoundError(
                f"no layer named {name!r}" + (f"; did you mean: {', '.join(near)}?" if near else "")
                + " Run scope.layers() to list the layer names."
            )
        return entries[name]

    def layers(self) -> list[LayerInfo]:
        if self._layer_infos is None:
            self._layer_infos = [self._describe(entry) for entry in self._all_entries().values()]
        return list(self._layer_infos)

    def _describe(self, entry: _Entry) -> LayerInfo:
        layer = entry.layer
        kind = layer_kind(layer)
        type_name = type(layer).__name__
        container = kind == "container"
        params = _count_params(layer)
        if entry.separable:
            rank = len(layer.kernel_size)
            depthwise = getattr(layer, "depthwise_kernel", None)
            in_ch = int(depthwise.shape[-2]) if depthwise is not None else None
            mid = in_ch * int(layer.depth_multiplier) if in_ch is not None else None
            dw_params = int(np.prod(depthwise.shape)) if depthwise is not None else 0
            if entry.part == "pointwise":
                return LayerInfo(
                    name=entry.name, kind="conv", type_name=f"{type_name}{POINTWISE}", in_channels=mid,
                    out_channels=int(layer.filters), kernel_size=(1,) * rank, stride=(1,) * rank,
                    padding="valid", dilation=(1,) * rank, groups=1, params=params - dw_params,
                )
            return LayerInfo(
                name=entry.name, kind="conv", type_name=type_name, in_channels=in_ch, out_channels=mid,
                kernel_size=_ints(layer.kernel_size), stride=_ints(layer.strides), padding=str(layer.padding),
                dilation=_ints(layer.dilation_rate), groups=in_ch or 1, params=dw_params,
            )
        common: dict[str, Any] = dict(
            name=entry.name, kind=kind, type_name=type_name, params=params, is_leaf=not container
        )
        names = class_names(layer)
        kernel = getattr(layer, "kernel", None) if kind in ("conv", "conv_transpose", "linear") else None
        if kind == "conv_transpose":
            return LayerInfo(
                **common, in_channels=int(kernel.shape[-1]) if kernel is not None else None,
                out_channels=int(layer.filters), kernel_size=_ints(layer.kernel_size), stride=_ints(layer.strides),
                padding=str(layer.padding), dilation=_ints(layer.dilation_rate), groups=1, transposed=True,
            )
        if "BaseDepthwiseConv" in names:
            in_ch = int(kernel.shape[-2]) if kernel is not None else None
            return LayerInfo(
                **common, in_channels=in_ch,
                out_channels=in_ch * int(layer.depth_multiplier) if in_ch is not None else None,
                kernel_size=_ints(layer.kernel_size), stride=_ints(layer.strides), padding=str(layer.padding),
                dilation=_ints(layer.dilation_rate), groups=in_ch or 1,
            )
        if kind == "conv":
            groups = int(getattr(layer, "groups", 1) or 1)
            return LayerInfo(
                **common, in_channels=int(kernel.shape[-2]) * groups if kernel is not None else None,
                out_channels=int(layer.filters), kernel_size=_ints(layer.kernel_size), stride=_ints(layer.strides),
                padding=str(layer.padding), dilation=_ints(layer.dilation_rate), groups=groups,
            )
        if kind == "linear" and kernel is not None and len(kernel.shape) == 2:
            return LayerInfo(**common, in_channels=int(kernel.shape[0]), out_channels=int(kernel.shape[1]))
        if kind == "pool" and hasattr(layer, "pool_size"):
            return LayerInfo(**common, kernel_size=_ints(layer.pool_size), stride=_ints(layer.strides))
        return LayerInfo(**common)

    def describe_layers(self, batch: np.ndarray | None = None) -> list[LayerInfo]:
        """:meth:`layers` with ``out_shape`` from one forward pass on ``batch`` where Keras can show it.

        Layers of a subclassed model (or inside a subclassed layer) keep ``out_shape=None``
        instead of failing: their outputs are not reachable without a functional graph.
        """
        import dataclasses

        infos = self.layers()
        root = self._root_graph()
        if batch is None or root is None or len(root.inputs) != 1:
            return infos
        entries = self._all_entries()
        names = [info.name for info in infos if all(graph_of(p) is not None for p in entries[info.name].parents)]
        result = self.capture(batch, names, on_activation=lambda _n, _a: None)
        return [
            dataclasses.replace(info, out_shape=tuple(result.shapes[info.name][1:]))
            if info.name in result.shapes
            else info
            for info in infos
        ]

    # -- layout --------------------------------------------------------------------------------
    def channels_first(self, layer: Any | None = None) -> bool:
        """Whether ``layer`` (default: the model) works channels first.

        A layer with a ``data_format`` says so itself; otherwise the model's layout is that of its
        first layer with a ``data_format``, else ``keras.config.image_data_format()``.
        """
        if layer is not None:
            fmt = getattr(layer, "data_format", None)
            if fmt in ("channels_first", "channels_last"):
                return fmt == "channels_first"
        if self._channels_first is None:
            found = None
            for entry in self._all_entries().values():
                fmt = getattr(entry.layer, "data_format", None)
                if fmt in ("channels_first", "channels_last"):
                    found = fmt == "channels_first"
                    break
            if found is None:
                found = _keras().config.image_data_format() == "channels_first"
            self._channels_first = found
        return self._channels_first

    def _inputs(self) -> list[Any] | None:
        graph = self._root_graph()
        return list(graph.inputs) if graph is not None else None

    def input_spec(self) -> InputSpec:
        inputs = self._inputs()
        if inputs:
            ref = inputs[0]
            shape = tuple(ref.shape)
            dtype = str(getattr(ref, "dtype", "float32"))
            if len(shape) >= 3:
                if self.channels_first():
                    channels, spatial = shape[1], shape[2:]
                else:
                    channels, spatial = shape[-1], shape[1:-1]
                fixed = tuple(int(s) for s in spatial) if all(s is not None for s in spatial) else None
                return InputSpec(
                    channels=int(channels) if channels is not None else None,
                    spatial_dims=len(spatial),
                    spatial_size=fixed,
                    dtype=dtype,
                )
            return InputSpec(channels=None, spatial_dims=None, dtype=dtype)
        for info in self.layers():
            if info.is_conv and info.kernel_size is not None:
                return InputSpec(channels=info.in_channels, spatial_dims=len(info.kernel_size))
        return InputSpec(channels=None, spatial_dims=None)

    def input_shape(self) -> tuple[int, ...] | None:
        """``(1, C, *spatial)`` channels first when the model fixes its input size, else None."""
        spec = self.input_spec()
        if spec.channels is None or spec.spatial_size is None:
            return None
        return (1, spec.channels, *spec.spatial_size)

    # -- kernels -------------------------------------------------------------------------------
    def kernel(self, layer: str) -> KernelBank:
        entry = self._entry(layer)
        module = entry.layer
        names = class_names(module)
        if not names & {"BaseConv", "BaseConvTranspose", "BaseDepthwiseConv", "BaseSeparableConv"}:
            raise ConvscopeError(f"layer {layer!r} is a {type(module).__name__}, not a convolution; it has no kernels")
        if not module.built:
            raise ConvscopeError(
                f"layer {layer!r} has no weights yet (the model was never built); call the model once on an input "
                f"or give it a keras.Input"
            )
        rank = len(module.kernel_size)
        spatial = tuple(range(rank))
        bias = _to_numpy(module.bias).astype(np.float32) if getattr(module, "bias", None) is not None else None
        dilation = _ints(module.dilation_rate)
        type_name = type(module).__name__
        if "BaseSeparableConv" in names:
            if entry.part == "pointwise":
                variable = module.pointwise_kernel
                # (*1, in * depth_multiplier, filters) -> (filters, in * depth_multiplier, *1)
                weights = _to_numpy(variable).transpose(rank + 1, rank, *spatial)
                return KernelBank(
                    layer=layer, weights=np.array(weights, dtype=np.float32), groups=1, dilation=(1,) * rank,
                    type_name=f"{type_name}{POINTWISE}", source_dtype=str(variable.dtype), bias=bias,
                )
            variable = module.depthwise_kernel
            bias = None  # the separable layer adds its bias after the pointwise convolution
        else:
            variable = module.kernel
        w = _to_numpy(variable)
        if "BaseConvTranspose" in names:
            # (*k, out, in) -> (out, in, *k): filter o is the kernel that writes output channel o
            weights, groups = w.transpose(rank, rank + 1, *spatial), 1
        elif names & {"BaseDepthwiseConv", "BaseSeparableConv"}:
            # (*k, in, multiplier) -> (in, multiplier, *k) -> (in * multiplier, 1, *k); output channel
            # i * multiplier + m reads input channel i, as in Keras's own output ordering
            in_ch, mult = int(w.shape[rank]), int(w.shape[rank + 1])
            weights = w.transpose(rank, rank + 1, *spatial).reshape(in_ch * mult, 1, *w.shape[:rank])
            groups = in_ch
        else:
            # (*k, in / groups, out) -> (out, in / groups, *k)
            weights, groups = w.transpose(rank + 1, rank, *spatial), int(getattr(module, "groups", 1) or 1)
        return KernelBank(
            layer=layer,
            weights=np.array(weights, dtype=np.float32, order="C"),
            groups=groups,
            transposed="BaseConvTranspose" in names,
            dilation=dilation,
            type_name=type_name,
            source_dtype=str(variable.dtype),
            bias=bias,
        )

    # -- activations ---------------------------------------------------------------------------
    def needs_graph(self, what: str) -> Any:
        """The model's root functional graph, or ONE UnsupportedModelError saying how to get one (``what``:
        the action, for the message)."""
        return self._needs_graph(what)

    def _needs_graph(self, what: str) -> Any:
        graph = self._root_graph()
        if graph is not None:
            return graph
        model = self._model
        if "Sequential" in class_names(model):
            raise UnsupportedModelError(
                f"this Sequential model does not know its input shape yet, so Keras has no graph to {what}; start it "
                f"with keras.Input(shape=...) or call model.build((None, ...)) once"
            )
        raise UnsupportedModelError(
            f"{type(model).__name__} is a subclassed Keras model: Keras records no layer graph for it, so convscope "
            f"can show its layers and kernels but not {what}. Rebuild it as a functional model "
            f"(keras.Model(inputs, outputs)) or a Sequential with keras.Input to see activations and the U-Net flow"
        )

    def to_model_layout(self, batch: np.ndarray) -> Any:
        """``(N, C, *spatial)`` float32 numpy -> backend tensor in the model's layout and input dtype."""
        keras = _keras()
        array = np.asarray(batch)
        if array.ndim >= 3 and not self.channels_first():
            array = np.moveaxis(array, 1, -1)
        inputs = self._inputs()
        dtype = str(inputs[0].dtype) if inputs else "float32"
        return keras.ops.convert_to_tensor(np.ascontiguousarray(array), dtype=dtype)

    def to_host(self, value: Any, layer: Any | None = None) -> tuple[np.ndarray, str]:
        """A backend tensor -> (channels-first float32 C-contiguous numpy, source dtype name)."""
        array = _to_numpy(value)
        dtype = str(array.dtype)
        if array.ndim >= 3 and not self.channels_first(layer):
            array = np.moveaxis(array, -1, 1)
        return np.ascontiguousarray(array, dtype=np.float32), dtype

    def capture(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        *,
        on_activation: ActivationCallback | None = None,
        train_mode: bool = False,
    ) -> CaptureResult:
        names = list(dict.fromkeys(layers))
        entries = [self._entry(name) for name in names]
        self._check_capturable(entries)
        x = self.to_model_layout(batch)
        collector = Collector(on_activation)
        with self.preserved_state(), no_grad():
            try:
                if on_activation is not None:
                    # streaming: walk the graph layer by layer, each activation handed over as it exists
                    raw, output = self._capture_walk(x, entries, train_mode, collector)
                elif all(not entry.parents for entry in entries):
                    raw, output = self._capture_top_level(x, entries, train_mode)
                else:
                    raw, output = self._capture_walk(x, entries, train_mode)
            except ConvscopeError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise forward_failed(exc, tuple(np.shape(batch))) from exc
            for entry in entries:
                if entry.name in raw:
                    host, dtype = self.to_host(raw.pop(entry.name), entry.layer)
                    collector.add(entry.name, host, dtype)
            collector.order([entry.name for entry in entries])
            result = collector.result
            if output is not None:
                result.output = self.to_host(output)[0]
        return result

    def _check_capturable(self, entries: list[_Entry]) -> Any:
        """The root graph, after checking that every entry's activation is reachable in one pass."""
        root = self._needs_graph("capture activations")
        if len(root.inputs) != 1:
            raise UnsupportedModelError(
                f"the model takes {len(root.inputs)} inputs; convscope feeds one image batch, so capture works on "
                f"single-input models (wrap the others as constants in a functional model)"
            )
        for entry in entries:
            for parent in entry.parents:
                if graph_of(parent) is None:
                    raise UnsupportedModelError(
                        f"layer {entry.name!r} sits inside {parent.name!r} ({type(parent).__name__}), a subclassed "
                        f"model or layer whose inner graph Keras does not record; its kernels work, but only the "
                        f"output of {parent.name!r} itself can be captured. Build it functionally to see inside"
                    )
        return root

    # -- gradients -----------------------------------------------------------------------------
    def gradients(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        objective: Objective,
        *,
        with_input: bool = False,
    ) -> LayerGradients:
        """:class:`~convscope.adapters.base.SupportsGradients` on every Keras backend.

        ONE walk of the functional graph (entering the sub-models that hold requested layers) with
        the backend's autodiff recording, then ONE VJP of the selected output with cotangent
        ``objective.cotangent`` (:func:`convscope.adapters.keras.grad.vjp_through`: ``torch.autograd``,
        ``tf.GradientTape`` or ``jax.vjp``). No variable is watched or written. With
        ``objective.from_logits`` and a model whose output comes from a final sigmoid/softmax
        ``Activation`` (or ``Softmax``) layer, the gradient starts from that layer's input.
        The depthwise half of a separable convolution is recomputed off the model's path, so it
        has no gradient: ask for ``"sep:pointwise"`` instead.
        """
        from ...core.objective import select_output
        from .grad import vjp_through

        names = list(dict.fromkeys(layers))
        entries = [self._entry(name) for name in names]
        root = self._check_capturable(entries)
        for entry in entries:
            if entry.separable and entry.part is None:
                raise UnsupportedModelError(
                    f"{entry.name!r} is the depthwise half of a separable convolution, which convscope recomputes "
                    f"outside the model, so no gradient reaches it; use {entry.name + POINTWISE!r}"
                )
        wanted = {entry.name: entry for entry in entries}
        enter_names = {name for entry in entries for name in entry.parent_names}
        out_refs = list(root.outputs)
        out_names = ["output"] if len(out_refs) == 1 else [f"output[{i}]" for i in range(len(out_refs))]
        squash_nodes: dict[int, int] = {}  # id(final activation node) -> output index
        if objective.from_logits:
            for i, ref in enumerate(out_refs):
                history = getattr(ref, "_keras_history", None)
                op = history.operation if history is not None else None
                if history is not None and op is not None and _is_squash(op):
                    squash_nodes[id(op._inbound_nodes[history.node_index])] = i
        chosen: dict[str, Any] = {}

        def forward(x: Any, tap: Any) -> tuple[Any, Any]:
            logits: dict[int, Any] = {}

            def call(site: Any, args: tuple, kwargs: dict) -> Any:
                if id(site.node) in squash_nodes and site.call_index == 0:
                    logits[squash_nodes[id(site.node)]] = _first_tensor(args)
                outputs = call_with_training(site.op, args, kwargs, False)
                return self._tap_site(site, outputs, wanted, tap)

            def on_container(site: Any, inner_inputs: list[Any], inner_outputs: list[Any]) -> list[Any]:
                return self._tap_site(site, inner_outputs, wanted, tap)

            def run(inputs: Any, training: bool) -> list[Any]:
                return walk(root, [inputs], call, enter=lambda _op, name: name in enter_names, on_container=on_container)

            outs = run_in_call_context(run, x, False)
            proxies = {
                name: np.broadcast_to(np.float32(0), self._host_shape_of(tensor)) for name, tensor in zip(out_names, outs)
            }
            pick = select_output(proxies, objective)
            index = out_names.index(pick)
            chosen["name"] = pick
            if index in logits and logits[index] is not None:
                chosen["name"] = f"{pick} (input of the final {type(root.outputs[index]._keras_history.operation).__name__})"
                return logits[index], None
            return outs[index], None

        def cotangent_of(out: np.ndarray) -> np.ndarray:
            host = self._model_to_host(out, None)
            weights = objective.cotangent(np.ascontiguousarray(host, dtype=np.float32))
            return self._host_to_model(weights, None)

        x = self.to_model_layout(batch)
        with self.preserved_state():
            try:
                result = vjp_through(forward, x, cotangent_of, with_input=with_input)
            except ConvscopeError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise forward_failed(exc, tuple(np.shape(batch))) from exc
        missing = [name for name in names if name not in result.taps]
        if missing:
            raise ConvscopeError(f"layer {missing[0]!r} is not called in the model's graph, so it has no activation")
        acts = {name: self._model_to_host(result.taps[name], wanted[name].layer) for name in names}
        grads = {name: self._model_to_host(result.gradients[name], wanted[name].layer) for name in names}
        output = self._model_to_host(result.output, None)
        weights = self._model_to_host(result.cotangent, None)
        score = (weights.reshape(len(weights), -1).astype(np.float64) * output.reshape(len(output), -1)).sum(axis=1)
        input_gradient = None
        if result.input_gradient is not None:
            input_gradient = self._model_to_host(result.input_gradient, None)
        return LayerGradients(
            activations=acts, gradients=grads, output=output, output_name=chosen.get("name", "output"),
            score=score.astype(np.float32), cotangent=weights, input_gradient=input_gradient,
        )

    def _tap_site(self, site: Any, outputs: Any, wanted: dict[str, _Entry], tap: Any) -> Any:
        """``outputs`` of one call, with the first tensor passed through ``tap`` when it is a requested layer."""
        if site.call_index != 0:
            return outputs
        key = None
        entry = wanted.get(site.name)
        if entry is not None and site.op is entry.layer:
            key = site.name
        pointwise = wanted.get(site.name + POINTWISE)
        if pointwise is not None and site.op is pointwise.layer:
            key = pointwise.name
        if key is None:
            return outputs
        from keras import tree

        flat = tree.flatten(outputs)
        if not flat:
            return outputs
        flat = [tap(key, flat[0]), *flat[1:]]
        return tree.pack_sequence_as(outputs, flat)

    def _host_shape_of(self, tensor: Any) -> tuple[int, ...]:
        shape = tuple(int(s) for s in tensor.shape)
        if len(shape) >= 3 and not self.channels_first():
            shape = (shape[0], shape[-1], *shape[1:-1])
        return shape

    def _model_to_host(self, array: np.ndarray, layer: Any | None) -> np.ndarray:
        arr = np.asarray(array)
        if arr.ndim >= 3 and not self.channels_first(layer):
            arr = np.moveaxis(arr, -1, 1)
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _host_to_model(self, array: np.ndarray, layer: Any | None) -> np.ndarray:
        arr = np.asarray(array)
        if arr.ndim >= 3 and not self.channels_first(layer):
            arr = np.moveaxis(arr, 1, -1)
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _first_nodes(self, graph: Any) -> dict[int, Any]:
        """``id(op)`` -> the node of its first call in ``graph``'s execution order."""
        from .graph import execution_nodes

        first: dict[int, Any] = {}
        for node in execution_nodes(graph):
            first.setdefault(id(node.operation), node)
        return first

    def _capture_top_level(self, x: Any, entries: list[_Entry], train_mode: bool) -> tuple[dict[str, Any], Any]:
        """One call of a cached multi-output ``keras.Model`` over the requested top-level layers."""
        keras = _keras()
        key = tuple(entry.name for entry in entries)
        capture_model = self._capture_models.get(key)
        if capture_model is None:
            graph = self._needs_graph("capture activations")  # checked by _check_capturable: never raises here
            first = self._first_nodes(graph)
            tensors = []
            for entry in entries:
                node = first.get(id(entry.layer))
                if node is None:
                    raise ConvscopeError(
                        f"layer {entry.name!r} is not called in the model's graph, so it has no activation"
                    )
                if entry.separable and entry.part is None:
                    tensors.append(node.input_tensors[0])  # the depthwise half is recomputed from the input
                else:
                    tensors.append(node.outputs[0])
            capture_model = keras.Model(
                inputs=list(graph.inputs), outputs=tensors + list(graph.outputs), name="convscope_capture"
            )
            if len(self._capture_models) >= _CAPTURE_CACHE_SIZE:
                self._capture_models.pop(next(iter(self._capture_models)))
            self._capture_models[key] = capture_model
        outputs = capture_model([x], training=train_mode)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        raw: dict[str, Any] = {}
        for entry, value in zip(entries, outputs):
            raw[entry.name] = _depthwise_half(entry.layer, value) if entry.separable and entry.part is None else value
        model_outputs = outputs[len(entries):]
        return raw, model_outputs[0] if model_outputs else None

    def _capture_walk(
        self, x: Any, entries: list[_Entry], train_mode: bool, collector: Collector | None = None
    ) -> tuple[dict[str, Any], Any]:
        """One pass through the functional graph, entering the sub-models that hold requested layers.

        With ``collector`` each activation is copied to the host and handed to it as soon as its
        layer ran (streaming: nothing is kept, and the walk drops tensors no later layer reads).
        """
        wanted = {entry.name: entry for entry in entries}
        enter_names = {name for entry in entries for name in entry.parent_names}
        raw: dict[str, Any] = {}
        done: set[str] = set()

        def put(name: str, value: Any, layer: Any) -> None:
            done.add(name)
            if collector is None:
                raw[name] = value
            else:
                host, dtype = self.to_host(value, layer)
                collector.add(name, host, dtype)

        def record(site: Any, args: tuple, outputs: Any) -> None:
            if site.call_index != 0:
                return  # a shared layer: keep its first call
            entry = wanted.get(site.name)
            if entry is not None and site.op is entry.layer:
                if entry.separable:
                    put(site.name, _depthwise_half(entry.layer, _first_tensor(args)), entry.layer)
                else:
                    put(site.name, _first_tensor(outputs), entry.layer)
            pointwise = wanted.get(site.name + POINTWISE)
            if pointwise is not None and site.op is pointwise.layer:
                put(pointwise.name, _first_tensor(outputs), pointwise.layer)

        def call(site: Any, args: tuple, kwargs: dict) -> Any:
            outputs = call_with_training(site.op, args, kwargs, train_mode)
            record(site, args, outputs)
            return outputs

        def on_container(site: Any, inner_inputs: list[Any], inner_outputs: list[Any]) -> list[Any]:
            record(site, tuple(inner_inputs), inner_outputs)
            return inner_outputs

        def run(inputs: Any, training: bool) -> list[Any]:
            return walk(
                self._root_graph(), [inputs], call, enter=lambda _op, name: name in enter_names,
                on_container=on_container,
            )

        outputs = run_in_call_context(run, x, train_mode)
        missing = [entry.name for entry in entries if entry.name not in done]
        if missing:
            raise ConvscopeError(f"layer {missing[0]!r} is not called in the model's graph, so it has no activation")
        return raw, outputs[0] if outputs else None

    # -- state ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def preserved_state(self) -> Iterator[None]:
        """Restore every non-trainable variable (BatchNorm statistics, seed states) after the block.

        A ``training=True`` pass updates BatchNorm moving statistics and dropout seed states; these
        are put back (also when the block raises). Weights and ``trainable`` flags are never written.
        """
        variables = list(self._model.non_trainable_variables)
        saved = [np.array(_to_numpy(v), copy=True) for v in variables]
        try:
            yield
        finally:
            for variable, value in zip(variables, saved):
                if not np.array_equal(_to_numpy(variable), value):
                    variable.assign(value)

    # -- U-Net ---------------------------------------------------------------------------------
    def unet_backend(self) -> Any:
        """The :mod:`convscope.unet` backend for this model (see :mod:`.unet`)."""
        from .unet import KerasUNetBackend

        self._needs_graph("find a U-Net in")
        return KerasUNetBackend(self)


def _count_params(layer: Any) -> int:
    try:
        return int(layer.count_params()) if layer.built else 0
    except (ValueError, AttributeError):
        return 0


def _first_tensor(value: Any) -> Any:
    from keras import tree

    flat = tree.flatten(value)
    return flat[0] if flat else None


def _is_squash(op: Any) -> bool:
    """A final ``Activation("sigmoid"/"softmax")`` or ``Softmax`` layer (its input is the logits)."""
    if type(op).__name__ == "Softmax":
        return True
    if type(op).__name__ != "Activation":
        return False
    return getattr(getattr(op, "activation", None), "__name__", "") in ("sigmoid", "softmax")


def _depthwise_half(layer: Any, inputs: Any) -> Any:
    """The depthwise intermediate of a separable convolution, recomputed from its input tensor."""
    keras = _keras()
    return keras.ops.depthwise_conv(
        inputs,
        layer.depthwise_kernel,
        strides=layer.strides,
        padding=layer.padding,
        data_format=layer.data_format,
        dilation_rate=layer.dilation_rate,
    )


# the file loader, also reachable from here (convscope.adapters.keras_adapter.load_keras_file)
from .files import load_keras_file  # noqa: E402

__all__ += ["call_with_training", "run_in_call_context"]
