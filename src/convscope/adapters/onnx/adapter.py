"""The ONNX adapter: layers, canonical kernels and one-run activation capture for ONNX models (CPU).

* **Layers** are the graph's top-level nodes that compute from the model input and produce a
  floating-point tensor (Conv, ConvTranspose, Relu, Add, Concat, Resize, MaxPool,
  BatchNormalization, ...; pure weight/shape arithmetic is left out). A layer is named by
  its torch module path when the graph records one (``torch.onnx.export(dynamo=True)`` metadata;
  ``enc1.conv``, as in the torch model), else ``node.name`` when that is set, unique and usable as
  a name, else a generated stable name ``"<OpType>_<first output tensor>"`` (sanitised; ``_2``,
  ``_3``... on a clash). A layer's activation is its first output tensor.
* **Kernels** come from initializers (also through ``Constant``, ``Identity``, ``Cast`` and
  ``DequantizeLinear`` nodes). ONNX ``Conv`` stores ``W`` as ``(M, C/group, *k)``, which is the
  canonical layout; ``ConvTranspose`` stores ``(C, M/group, *k)``, converted to ``(M, C/group, *k)``.
* **Activations** of any number of layers come from ONE onnxruntime run: their tensors are appended
  to ``graph.output`` of a private copy of the model, the session uses
  ``GraphOptimizationLevel.ORT_DISABLE_ALL`` (optimisations can fuse requested tensors away) and
  every requested output is checked to have come back.
* **Files** are read without running anything (:mod:`.files`); the op kinds are :mod:`.kinds`, the
  dataflow graph of the U-Net view :mod:`.graph`.

ONNX graphs are inference-only: ``capture(train_mode=True)`` raises. onnx and onnxruntime are
imported lazily inside functions.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataclasses import replace

import numpy as np

from ...core.kernels import KernelBank, transposed_to_canonical
from ...core.layers import LayerInfo
from ...errors import ConvscopeError, LayerNotFoundError, ModelLoadError, UnsupportedModelError, close_matches
from .._capture import first_line
from ..base import ActivationCallback, CaptureResult, InputSpec, ModelAdapter
from .files import _external_tensors, check_onnx_model, load_onnx_file, read_onnx_model, resolve_external_data
from .kinds import onnx_graph_op, onnx_op_kind

if TYPE_CHECKING:
    from ...core.graph import GraphCapture

__all__ = [
    "OnnxAdapter",
    "load_onnx_file",
    "read_onnx_model",
    "resolve_external_data",
    "check_onnx_model",
    "onnx_op_kind",
    "onnx_graph_op",
]

_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_BAD_NAME_CHARS = re.compile(r"[*?\[\]#\s]|[\x00-\x1f\x7f]")
_SANITIZE = re.compile(r"[^A-Za-z0-9_./:\-]")


# -------------------------------------------------------------------------------------------------
# the adapter
# -------------------------------------------------------------------------------------------------


class _Layer:
    __slots__ = ("name", "index", "node", "output", "info")

    def __init__(self, name: str, index: int, node: Any, output: str, info: LayerInfo) -> None:
        self.name = name
        self.index = index
        self.node = node
        self.output = output
        self.info = info


class OnnxAdapter(ModelAdapter):
    """Wraps an ONNX model (``onnx.ModelProto`` or ``.onnx`` path); runs it with onnxruntime on CPU.

    Args:
        model: an ``onnx.ModelProto`` (copied; yours is never modified) or a path to an ``.onnx``
            file (read with :func:`read_onnx_model`). A ModelProto whose tensors still refer to
            external data must be given as a path.
        name: display name.
    """

    framework = "onnx"
    streams_activations = False  # onnxruntime returns every requested tensor from one run

    def __init__(self, model: Any, *, name: str | None = None) -> None:
        import onnx

        if isinstance(model, (str, os.PathLike)):
            proto = read_onnx_model(model)
            name = name or Path(model).name
        elif isinstance(model, onnx.ModelProto):
            if _external_tensors(model):
                raise ModelLoadError(
                    "this ModelProto refers to external data files; give convscope the .onnx path instead so it can "
                    "check and read them next to the model"
                )
            proto = onnx.ModelProto()
            proto.CopyFrom(model)
        else:
            raise TypeError(f"OnnxAdapter needs an onnx.ModelProto or a path, got {type(model).__name__}")
        self._user_model = model if isinstance(model, onnx.ModelProto) else proto
        self._proto = proto
        self.name = name or (proto.graph.name or "onnx-model")
        self.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
        self.producer = f"{proto.producer_name} {proto.producer_version}".strip()
        self._sessions: dict[tuple[str, ...], Any] = {}
        self.validation_issue = check_onnx_model(proto)
        """The ONNX checker's complaint about the model, if any (see :func:`check_onnx_model`)."""
        self._analyse()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (Ray actors, multiprocessing): inference sessions are not sent, they are rebuilt on use."""
        state = self.__dict__.copy()
        state["_sessions"] = {}
        return state

    # -- analysis ------------------------------------------------------------------------------
    def _analyse(self) -> None:
        import onnx

        graph = self._proto.graph
        self._initializers = {t.name: t for t in graph.initializer}
        self._inputs = [vi for vi in graph.input if vi.name not in self._initializers]
        self._output_names = [vi.name for vi in graph.output]
        try:
            inferred = onnx.shape_inference.infer_shapes(self._proto, check_type=False, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001 - inference is best effort (custom ops, big models)
            inferred = self._proto
        self._value_info: dict[str, Any] = {}
        for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
            if vi.type.HasField("tensor_type"):
                self._value_info[vi.name] = vi.type.tensor_type
        self._producer: dict[str, int] = {}
        for index, node in enumerate(graph.node):
            for out in node.output:
                if out:
                    self._producer[out] = index
        dynamic = {vi.name for vi in self._inputs}
        self._dynamic_nodes: list[int] = []
        for index, node in enumerate(graph.node):
            if node.op_type == "Constant":
                continue
            if any(name in dynamic for name in node.input if name) or self._subgraph_reads(node, dynamic):
                self._dynamic_nodes.append(index)
                dynamic.update(out for out in node.output if out)
        self._dynamic = dynamic
        self.channels_last = self._detect_channels_last()
        """True when the model's input is ``(N, *spatial, C)`` (what Keras/TF exporters write): convscope
        then feeds its channels-first batches transposed, and reports the input channels-first."""
        # names: a node's own name when set, unique and usable; else "<Op>_<output>"
        counts: dict[str, int] = {}
        for node in graph.node:
            if node.name:
                counts[node.name] = counts.get(node.name, 0) + 1
        taken = {n for n, c in counts.items() if c == 1 and not _BAD_NAME_CHARS.search(n) and len(n) <= 200}
        taken.update(vi.name for vi in self._inputs)
        self._layers: dict[str, _Layer] = {}
        module_names = self._torch_module_names(taken)
        for index in self._dynamic_nodes:
            node = graph.node[index]
            output = next((o for o in node.output if o), "")
            if not output or not self._is_float(output):
                continue
            if index in module_names:
                name = module_names[index]
            elif node.name in taken and node.name not in self._layers and counts.get(node.name) == 1:
                name = node.name
            else:
                base = f"{node.op_type}_{_SANITIZE.sub('_', output)}"[:200]
                name, k = base, 2
                while name in taken or name in self._layers:
                    name, k = f"{base}_{k}", k + 1
                taken.add(name)
            self._layers[name] = _Layer(name, index, node, output, self._describe(name, node))

    def _torch_module_names(self, taken: set[str]) -> dict[int, str]:
        """Node index -> the torch module path it came from, for graphs from ``torch.onnx.export(dynamo=True)``.

        That exporter names nodes ``node_conv2d_3`` but records each node's module scopes in the
        ``pkg.torch.onnx.name_scopes`` metadata (``['', 'enc1', 'enc1.conv', 'conv2d']``: the last
        entry is the op, the one before it the module). A module that produced exactly one
        floating-point node is named by its path, so layers are called as in the torch model
        (``enc1.conv``); anything else keeps the node's own or generated name.
        """
        import ast

        by_path: dict[str, list[int]] = {}
        for index in self._dynamic_nodes:
            node = self._proto.graph.node[index]
            output = next((o for o in node.output if o), "")
            if not output or not self._is_float(output):
                continue
            scopes_text = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
            if not scopes_text:
                continue
            try:
                scopes = ast.literal_eval(scopes_text)
            except (ValueError, SyntaxError):
                continue
            if isinstance(scopes, list) and len(scopes) >= 2 and isinstance(scopes[-2], str) and scopes[-2]:
                by_path.setdefault(scopes[-2], []).append(index)
        return {
            indices[0]: path
            for path, indices in by_path.items()
            if len(indices) == 1 and path not in taken and not _BAD_NAME_CHARS.search(path) and len(path) <= 200
        }

    def _subgraph_reads(self, node: Any, dynamic: set[str]) -> bool:
        """True if a subgraph of ``node`` (If/Loop/Scan) reads a dynamic outer-scope tensor."""
        for attr in node.attribute:
            subs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
            for sub in subs:
                for inner in sub.node:
                    if any(name in dynamic for name in inner.input if name) or self._subgraph_reads(inner, dynamic):
                        return True
        return False

    def _is_float(self, tensor: str) -> bool:
        info = self._value_info.get(tensor)
        return info is None or info.elem_type == 0 or info.elem_type in _FLOAT_TYPES

    def _static_dims(self, tensor: str) -> tuple[int, ...] | None:
        """Dims of a constant tensor (initializer / Constant / through Identity, Cast, DequantizeLinear)."""
        init = self._initializers.get(tensor)
        if init is not None:
            return tuple(int(d) for d in init.dims)
        info = self._value_info.get(tensor)
        if info is not None and info.HasField("shape") and all(d.HasField("dim_value") for d in info.shape.dim):
            return tuple(int(d.dim_value) for d in info.shape.dim)
        try:
            return tuple(self._constant(tensor, "?").shape)
        except ConvscopeError:
            return None

    def _describe(self, name: str, node: Any) -> LayerInfo:
        attrs = _attributes(node)
        kind = onnx_op_kind(node.op_type, node.domain)
        if kind == "merge" and sum(1 for i in node.input if i in self._dynamic) < 2:
            kind = "other"
        type_name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        params = 0
        for inp in node.input:
            init = self._initializers.get(inp)
            if init is not None:
                params += int(np.prod(init.dims, dtype=np.int64)) if len(init.dims) else 1
        base = LayerInfo(name=name, kind=kind, type_name=type_name, params=params, is_leaf=True)
        if kind in ("conv", "conv_transpose"):
            dims = self._static_dims(node.input[1]) if len(node.input) > 1 else None
            group = int(attrs.get("group", 1))
            in_ch = out_ch = None
            if dims is not None and len(dims) >= 3:
                if kind == "conv":
                    out_ch, in_ch = dims[0], dims[1] * group
                else:
                    in_ch, out_ch = dims[0], dims[1] * group
            ksize = attrs.get("kernel_shape") or (dims[2:] if dims is not None else None)
            nd = len(ksize) if ksize is not None else None
            return replace(
                base,
                in_channels=in_ch,
                out_channels=out_ch,
                kernel_size=tuple(int(k) for k in ksize) if ksize is not None else None,
                stride=tuple(int(s) for s in attrs.get("strides", [1] * (nd or 0))) or None,
                padding=_padding(attrs, nd),
                dilation=tuple(int(d) for d in attrs.get("dilations", [1] * (nd or 0))) or None,
                groups=group,
                transposed=kind == "conv_transpose",
            )
        if kind == "pool" and "kernel_shape" in attrs:
            ksize = tuple(int(k) for k in attrs["kernel_shape"])
            return replace(base, kernel_size=ksize, stride=tuple(int(s) for s in attrs.get("strides", [1] * len(ksize))))
        if node.op_type in ("BatchNormalization", "InstanceNormalization") and len(node.input) > 1:
            dims = self._static_dims(node.input[1])
            if dims:
                return replace(base, in_channels=int(dims[0]), out_channels=int(dims[0]))
        if node.op_type == "Gemm" and len(node.input) > 1:
            dims = self._static_dims(node.input[1])
            if dims is not None and len(dims) == 2:
                trans_b = int(attrs.get("transB", 0))
                k, n = (dims[1], dims[0]) if trans_b else (dims[0], dims[1])
                return replace(base, in_channels=int(k), out_channels=int(n))
        return base

    # -- ModelAdapter --------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The ``onnx.ModelProto`` given (never modified), or the one read from the given path."""
        return self._user_model

    def weights_digest(self) -> str:
        """A digest of every weight (see :class:`~convscope.adapters.base.SupportsWeightsDigest`)."""
        from onnx import numpy_helper

        from ...core.digest import digest_arrays

        graph = self._proto.graph
        initializers = ((init.name, numpy_helper.to_array(init)) for init in graph.initializer)
        # some exporters keep weights in Constant nodes instead of initializers
        constants = ((f"constant:{node.output[0]}", numpy_helper.to_array(attr.t)) for node in graph.node
                     if node.op_type == "Constant" and node.output for attr in node.attribute if attr.name == "value")
        return digest_arrays(itertools.chain(initializers, constants))

    @property
    def proto(self) -> Any:
        """convscope's own copy of the ``onnx.ModelProto`` (external data inlined)."""
        return self._proto

    def layers(self) -> list[LayerInfo]:
        return [layer.info for layer in self._layers.values()]

    def layer_output(self, layer: str) -> str:
        """The tensor name whose value is ``layer``'s activation (its node's first output)."""
        return self._layer(layer).output

    def _layer(self, name: str) -> _Layer:
        if name not in self._layers:
            near = close_matches(name, self._layers)
            raise LayerNotFoundError(
                f"no layer named {name!r}" + (f"; did you mean: {', '.join(near)}?" if near else "")
                + " Run `convscope layers MODEL` to list the ONNX layer names."
            )
        return self._layers[name]

    def _detect_channels_last(self) -> bool:
        """Whether the input is channels last: it is first read (through casts, identities and
        elementwise ops such as a Keras ``Rescaling``'s Mul/Add) by a ``Transpose`` to channels first
        (``perm = [0, r-1, 1, ..., r-2]``), not by a conv or pool."""
        if len(self._inputs) != 1:
            return False
        dims = _dims(self._inputs[0].type.tensor_type)
        if dims is None or len(dims) < 3:
            return False
        rank = len(dims)
        to_first = [0, rank - 1, *range(1, rank - 1)]
        readers: dict[str, list[Any]] = {}
        for node in self._proto.graph.node:
            for name in node.input:
                readers.setdefault(name, []).append(node)
        frontier = [self._inputs[0].name]
        seen: set[str] = set()
        while frontier:
            tensor = frontier.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            for node in readers.get(tensor, []):
                if node.op_type in _LAYOUT_AGNOSTIC_OPS:
                    frontier.extend(o for o in node.output if o)
                elif node.op_type == "Transpose":
                    if list(_attributes(node).get("perm", [])) == to_first:
                        return True
                elif node.op_type in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization"):
                    return False
        return False

    def _model_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """A channels-first batch shape in the model's own input layout."""
        shape = tuple(int(v) for v in shape)
        if self.channels_last and len(shape) >= 3:
            return (shape[0], *shape[2:], shape[1])
        return shape

    def input_spec(self) -> InputSpec:
        if not self._inputs:
            return InputSpec(channels=None, spatial_dims=None)
        tensor = self._inputs[0].type.tensor_type
        dims = _dims(tensor)
        dtype = _np_dtype_name(tensor.elem_type)
        if dims is None or len(dims) < 2:
            return InputSpec(channels=None, spatial_dims=None, dtype=dtype)
        if self.channels_last:
            dims = [dims[0], dims[-1], *dims[1:-1]]  # reported channels first, as every convscope batch
        spatial = dims[2:]
        return InputSpec(
            channels=dims[1],
            spatial_dims=len(spatial) or None,
            spatial_size=tuple(spatial) if spatial and all(s is not None for s in spatial) else None,  # type: ignore[arg-type]
            dtype=dtype,
        )

    def kernel(self, layer: str) -> KernelBank:
        entry = self._layer(layer)
        node = entry.node
        if entry.info.kind not in ("conv", "conv_transpose"):
            raise ConvscopeError(f"layer {layer!r} is an ONNX {node.op_type} node, not a convolution; it has no kernels")
        if len(node.input) < 2 or not node.input[1]:
            raise ConvscopeError(f"ONNX {node.op_type} node {layer!r} has no weight input")
        weight = self._constant(node.input[1], layer)
        source_dtype = str(weight.dtype)
        w = weight.astype(np.float32, copy=True)
        if w.ndim < 3:
            raise ConvscopeError(f"the weight of {layer!r} has shape {w.shape}; a convolution weight needs (M, C/group, *k)")
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = self._constant(node.input[2], layer).astype(np.float32, copy=True).reshape(-1)
        attrs = _attributes(node)
        groups = int(attrs.get("group", 1))
        transposed = node.op_type == "ConvTranspose"
        if transposed:  # ONNX stores (C, M/group, *k)
            if w.shape[0] % groups:
                raise ConvscopeError(f"ConvTranspose {layer!r}: group={groups} does not divide {w.shape[0]} input channels")
            w = transposed_to_canonical(w, groups)
        dilations = attrs.get("dilations")
        return KernelBank(
            layer=layer,
            weights=np.ascontiguousarray(w, dtype=np.float32),
            groups=groups,
            transposed=transposed,
            dilation=tuple(int(d) for d in dilations) if dilations else tuple(1 for _ in w.shape[2:]),
            type_name=node.op_type,
            source_dtype=source_dtype,
            bias=bias,
        )

    def _constant(self, tensor: str, layer: str, depth: int = 0) -> np.ndarray:
        """The value of a constant tensor: an initializer, a Constant node, or Identity / Cast /
        DequantizeLinear of constants. Anything else raises a ConvscopeError naming the producer."""
        from onnx import numpy_helper

        if depth > 16:
            raise ConvscopeError(f"the weights of {layer!r} come from a chain of nodes too deep to resolve")
        init = self._initializers.get(tensor)
        if init is not None:
            return numpy_helper.to_array(init)
        if tensor in self._dynamic:
            raise ConvscopeError(
                f"the weights of {layer!r} ({tensor!r}) are computed from the model input at run time, so there is no "
                f"fixed kernel to show"
            )
        index = self._producer.get(tensor)
        if index is None:
            raise ConvscopeError(
                f"the weights of {layer!r} ({tensor!r}) are neither an initializer nor produced by a node (a graph input "
                f"fed at run time?); convscope can only show weights stored in the model"
            )
        node = self._proto.graph.node[index]
        op = node.op_type
        if op == "Constant":
            return _constant_node_value(node, layer)
        if op == "Identity":
            return self._constant(node.input[0], layer, depth + 1)
        if op == "Cast":
            from onnx import helper

            to = int(_attributes(node).get("to", 1))
            return self._constant(node.input[0], layer, depth + 1).astype(helper.tensor_dtype_to_np_dtype(to))
        if op == "DequantizeLinear":
            attrs = _attributes(node)
            if int(attrs.get("block_size", 0) or 0):
                raise ConvscopeError(
                    f"the weights of {layer!r} are block-quantized (DequantizeLinear block_size); convscope cannot "
                    f"dequantize them yet. Dequantize the model (e.g. with onnxruntime's tools) first"
                )
            x = self._constant(node.input[0], layer, depth + 1).astype(np.float32)
            scale = self._constant(node.input[1], layer, depth + 1).astype(np.float32)
            zero = (
                self._constant(node.input[2], layer, depth + 1).astype(np.float32)
                if len(node.input) > 2 and node.input[2]
                else np.zeros_like(scale)
            )
            if scale.ndim == 1 and x.ndim > 1:
                axis = int(attrs.get("axis", 1)) % x.ndim
                shape = [1] * x.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            return (x - zero) * scale
        raise ConvscopeError(
            f"the weights of {layer!r} are computed by an ONNX {op} node, which convscope does not fold; fold "
            f"constants first (for example with onnxruntime's offline optimisation or onnx-simplifier)"
        )

    # -- running -------------------------------------------------------------------------------
    def _session(self, outputs: tuple[str, ...]) -> Any:
        """An onnxruntime session (optimisations off) returning ``outputs``; the last two are cached."""
        session = self._sessions.get(outputs)
        if session is not None:
            return session
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConvscopeError("running ONNX models needs onnxruntime: pip install 'convscope[onnx]'") from None
        graph = self._proto.graph
        saved = list(graph.output)
        try:
            existing = {vi.name for vi in graph.output}
            import onnx

            for name in outputs:
                if name not in existing:
                    graph.output.append(onnx.ValueInfoProto(name=name))
            payload = self._proto.SerializeToString()
        finally:
            del graph.output[:]
            graph.output.extend(saved)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(payload, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            checker = f" (the ONNX checker also reports: {self.validation_issue})" if self.validation_issue else ""
            raise UnsupportedModelError(
                f"onnxruntime cannot run {self.name}: {first_line(exc)}{checker}. Check that the model is a valid "
                f"ONNX model with standard operators and an opset this onnxruntime supports"
            ) from None
        if len(self._sessions) >= 2:
            self._sessions.pop(next(iter(self._sessions)))
        self._sessions[outputs] = session
        return session

    def _feed(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(self._inputs) != 1:
            names = ", ".join(vi.name for vi in self._inputs) or "none"
            raise UnsupportedModelError(
                f"{self.name} takes {len(self._inputs)} inputs ({names}); convscope feeds one image batch, so it "
                f"needs a model with exactly one input"
            )
        arr = np.asarray(batch)
        if not np.issubdtype(arr.dtype, np.number):
            raise ConvscopeError(f"the input batch must be numeric, got dtype {arr.dtype}")
        vi = self._inputs[0]
        tensor = vi.type.tensor_type
        dims = _dims(tensor)
        if self.channels_last and dims is not None and arr.ndim == len(dims):
            arr = np.moveaxis(arr, 1, -1)  # convscope's (N, C, *spatial) -> the model's (N, *spatial, C)
            dims = [dims[0], dims[-1], *dims[1:-1]]  # checked below in convscope's layout
            arr_check = np.moveaxis(arr, -1, 1)
        else:
            arr_check = arr
        if dims is not None:
            if arr_check.ndim != len(dims):
                raise ConvscopeError(
                    f"{self.name} takes a {len(dims)}-D input {_fmt_dims(dims)} (channels first), got shape {arr.shape}; "
                    f"check the image's channels and dimensions"
                )
            for axis, (want, got) in enumerate(zip(dims, arr_check.shape)):
                if want is not None and want != got:
                    what = "batch size" if axis == 0 else "channels" if axis == 1 else "spatial size"
                    raise ConvscopeError(
                        f"{self.name} takes input {_fmt_dims(dims)} but got shape {tuple(arr_check.shape)} ({what} differs); "
                        + ("resize the image with --size " + "x".join(str(d) for d in dims[2:]) if axis >= 2 and
                           all(d is not None for d in dims[2:]) else "check the input")
                    )
        dtype = np.dtype(_np_dtype_name(tensor.elem_type)) if tensor.elem_type else np.dtype(np.float32)
        return {vi.name: np.ascontiguousarray(arr, dtype=dtype)}

    def run_tensors(self, batch: np.ndarray, tensors: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """ONE onnxruntime run returning the values of ``tensors`` and the model's first output.

        Args:
            batch: ``(N, C, *spatial)`` input, channels first (cast to the model's input dtype).
            tensors: tensor names (node outputs) to return.
        Returns:
            (tensor name -> array as onnxruntime returned it, first model output or None).
        Raises:
            ConvscopeError: the input does not fit, onnxruntime failed, or a requested tensor did not
                come back.
        """
        feed = self._feed(batch)
        first = self._output_names[0] if self._output_names else None
        fetch = tuple(dict.fromkeys([*([first] if first else []), *tensors]))
        session = self._session(fetch)
        try:
            values = session.run(list(fetch), feed)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ConvscopeError(
                f"onnxruntime failed on an input of shape {tuple(np.shape(batch))}: {first_line(exc)}. "
                f"Check the image size and channels (--size, or a different image)"
            ) from None
        got = dict(zip(fetch, values))
        lost = [name for name in fetch if got.get(name) is None]
        if lost:
            raise ConvscopeError(
                f"onnxruntime did not return {', '.join(repr(n) for n in lost[:5])}; the model cannot be captured at "
                f"those tensors"
            )
        output = got[first] if first else None
        return {name: got[name] for name in tensors}, output

    def capture(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        *,
        on_activation: ActivationCallback | None = None,
        train_mode: bool = False,
    ) -> CaptureResult:
        """ONE onnxruntime run; each layer's activation is its node's first output tensor.

        Returns:
            :class:`CaptureResult` with ``(N, C, *spatial)`` float32 C-contiguous copies (whatever the
            tensor's dtype was; the original dtype is in ``dtypes``).
        Raises:
            UnsupportedModelError: ``train_mode=True`` (ONNX graphs are inference-only) or a model
                with more than one input.
            LayerNotFoundError: an unknown layer name (with close matches).
        """
        if train_mode:
            raise UnsupportedModelError(
                "ONNX graphs are inference-only: there is no training mode to capture in; capture without train mode "
                "(drop --train-mode / train=True)"
            )
        wanted = list(dict.fromkeys(layers))
        entries = [self._layer(name) for name in wanted]
        values, output = self.run_tensors(batch, [entry.output for entry in entries])
        result = CaptureResult()
        if output is not None:
            result.output = np.array(output, dtype=np.float32, copy=True, order="C")
        for entry in entries:
            raw = np.asarray(values[entry.output])
            host = np.array(raw, dtype=np.float32, copy=True, order="C")
            result.shapes[entry.name] = tuple(int(s) for s in host.shape)
            result.dtypes[entry.name] = str(raw.dtype)
            if on_activation is not None:
                on_activation(entry.name, host)
            else:
                result.activations[entry.name] = host
        return result

    # -- dataflow graph (U-Net): :mod:`.graph` --------------------------------------------------
    def graph_skeleton(self) -> list[tuple[str, str, str, tuple[str, ...], str]]:
        """``(id, op, tensor, input ids, op_type)`` per graph node (see :func:`.graph.graph_skeleton`)."""
        from .graph import graph_skeleton

        return graph_skeleton(self)

    def static_shapes(self, batch_shape: Sequence[int]) -> dict[str, tuple[int, ...]] | None:
        """Layer output shapes for ``batch_shape`` from shape inference alone (see :func:`.graph.static_shapes`)."""
        from .graph import static_shapes

        return static_shapes(self, batch_shape)

    def capture_graph(self, batch: np.ndarray, request: Any, *, target: int | None = None, mask: Any = None) -> GraphCapture:
        """The U-Net backend protocol: graph and node values from ONE run (see :func:`.graph.capture_graph`)."""
        from .graph import capture_graph

        return capture_graph(self, batch, request, target=target, mask=mask)


# -------------------------------------------------------------------------------------------------
# helpers
# -------------------------------------------------------------------------------------------------


_LAYOUT_AGNOSTIC_OPS = frozenset({"Cast", "Identity", "Mul", "Add", "Sub", "Div", "Clip", "Relu", "Neg", "Abs"})
"""Elementwise ops between a model input and the transpose that shows its layout."""


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    out: dict[str, Any] = {}
    for attr in node.attribute:
        try:
            value = helper.get_attribute_value(attr)
        except Exception:  # noqa: BLE001
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[attr.name] = value
    return out


def _constant_node_value(node: Any, layer: str) -> np.ndarray:
    from onnx import numpy_helper

    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.asarray(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.asarray(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.asarray(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.asarray(list(attr.ints), dtype=np.int64)
    raise ConvscopeError(f"the weights of {layer!r} come from a Constant node of a kind convscope cannot read")


def _padding(attrs: dict[str, Any], nd: int | None) -> tuple[int, ...] | str | None:
    auto = str(attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return "same"
    if auto == "VALID":
        return "valid"
    pads = attrs.get("pads")
    if pads is None:
        return tuple(0 for _ in range(nd)) if nd else None
    pads = [int(p) for p in pads]
    half = len(pads) // 2
    begin, end = pads[:half], pads[half:]
    return tuple(begin) if begin == end else tuple(pads)


def _dims(tensor_type: Any) -> list[int | None] | None:
    if not tensor_type.HasField("shape"):
        return None
    return [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim]


def _fmt_dims(dims: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _np_dtype_name(elem_type: int) -> str:
    if not elem_type:
        return "float32"
    try:
        from onnx import helper

        return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))
    except Exception:  # noqa: BLE001 - bfloat16 and float8 have no numpy dtype
        return "float32"
