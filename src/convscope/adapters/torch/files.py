"""PyTorch model files: TorchScript archives (what a file is comes from the framework-free :mod:`.sniff`).

* :class:`TorchScriptAdapter` shows a TorchScript module (``torch.jit.load``; only ever loaded with
  ``trust=True`` because TorchScript is code). TorchScript modules refuse forward hooks, so
  activations are captured by rewriting a copy of the inlined graph to also return the output of
  every requested submodule (cloned where it is produced, before any later in-place op).

torch is imported lazily inside the functions.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dataclasses import replace

import numpy as np

from ...core.kernels import KernelBank, transposed_to_canonical
from ...core.layers import LayerInfo
from ...errors import ConvscopeError, ModelLoadError, UnsupportedModelError
from .._capture import Collector, call_key, first_line
from ..base import ActivationCallback, CaptureResult, InputSpec
from .adapter import NESTED_BLOCK, TRAIN_IN_BLOCK, TorchAdapter, _first_tensor
from .state import host_copy, preserved_model_state

__all__ = [
    "sniff_format",
    "describe_format",
    "kind_from_type_name",
    "is_torchscript_file",
    "load_torchscript_file",
    "TorchScriptAdapter",
]

# sniffing lives in the framework-free :mod:`.sniff`; re-exported here for older imports
from ..sniff import describe_format, sniff_format, suffix_for  # noqa: E402,F401

def is_torchscript_file(path: str | Path) -> bool:
    """True if ``path`` is a TorchScript (``torch.jit.save``) archive. Reads only the zip directory."""
    return sniff_format(path) == "torchscript"


# -------------------------------------------------------------------------------------------------
# kinds from class names (TorchScript ``original_name``, torch.export ``nn_module_stack`` types)
# -------------------------------------------------------------------------------------------------

def kind_from_type_name(type_name: str, *, is_leaf: bool = True) -> str:
    """Layer kind (:data:`convscope.core.layers.KINDS`) from a torch class name or dotted path.

    THE torch kind table (:mod:`.kinds`), so TorchScript and ``.pt2`` agree with eager models.

    Args:
        type_name: ``"Conv2d"`` or ``"torch.nn.modules.conv.Conv2d"``.
        is_leaf: False for modules that contain other modules (then ``"container"`` unless the
            class is a known layer).
    """
    from .kinds import layer_kind_of_name

    return layer_kind_of_name(type_name, is_leaf=is_leaf)


# -------------------------------------------------------------------------------------------------
# TorchScript
# -------------------------------------------------------------------------------------------------

_HIERARCHY_RE = re.compile(r"([^.()]+)\(([^()]*)\)")
_CONV_KINDS = ("aten::_convolution", "aten::convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d",
               "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d")
_TRIVIAL_KINDS = ("prim::Constant", "prim::GetAttr", "prim::ListConstruct", "prim::TupleConstruct",
                  "prim::ListUnpack", "prim::TupleUnpack", "prim::If", "aten::__is__", "aten::__isnot__")


def _module_path(node: Any) -> str:
    """``'enc(Blk).conv(Conv2d)'`` -> ``'enc.conv'`` (``SELF`` entries dropped)."""
    try:
        hierarchy = node.getModuleHierarchy()
    except (AttributeError, RuntimeError):
        return ""
    parts = [name for name, _type in _HIERARCHY_RE.findall(hierarchy or "") if name != "SELF"]
    return ".".join(parts)


def load_torchscript_file(path: Path, trust: bool) -> Any:
    """Load a TorchScript archive with ``torch.jit.load`` (CPU) after the trust check.

    Raises:
        UntrustedFileError: ``trust`` is False (TorchScript is code; there is no safe mode).
        ModelLoadError: the archive cannot be loaded.
    """
    from ...errors import UntrustedFileError

    if not trust:
        raise UntrustedFileError(
            f"{path.name} is a TorchScript archive: loading it runs the code it contains. "
            f"If you trust its source, pass --trust (trust=True)"
        )
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure of the TorchScript loader is a bad file here
        raise ModelLoadError(f"cannot load TorchScript archive {path.name}: {_first_line(exc)}") from None
    return TorchScriptAdapter(module)


def _first_line(exc: BaseException) -> str:
    return first_line(exc)


class TorchScriptAdapter(TorchAdapter):
    """A ``torch.jit.ScriptModule`` (scripted or traced) seen through convscope.

    Layers are the submodules (kinds from their ``original_name``); kernels are read from their
    ``weight``/``bias`` with stride/groups/transposed from the module (scripted) or from the
    inlined graph's convolution node (traced); activations come from one run of a rewritten
    copy of the inlined graph (the module itself is never modified).

    Limitation: two *consecutive* calls of the same parameter-free submodule (``act(act(x))``)
    cannot be told apart in the inlined graph and are reported as one call (the last value).
    """

    framework = "torchscript"
    streams_activations = False  # one scripted function returns every captured tensor at the end

    def __init__(self, model: Any, device: str | None = None) -> None:
        import torch

        if not isinstance(model, torch.jit.ScriptModule):
            raise TypeError(f"TorchScriptAdapter needs a torch.jit.ScriptModule, got {type(model).__name__}")
        super().__init__(model, device=device)
        self._graph_info: dict[str, Any] | None = None
        self._shared_state = False  # True inside concurrent_captures: its saved state serves every capture

    # -- graph facts ---------------------------------------------------------------------------
    def _inlined(self) -> dict[str, Any]:
        """Per module path: the conv node (if any) and the output values of each call."""
        if self._graph_info is None:
            graph = self._model.inlined_graph
            nodes = list(graph.nodes())
            conv_nodes: dict[str, Any] = {}
            for node in nodes:
                if node.kind() in _CONV_KINDS:
                    conv_nodes.setdefault(_module_path(node), node)
            self._graph_info = {"conv": conv_nodes}
        return self._graph_info

    def _conv_args(self, name: str, module: Any) -> dict[str, Any]:
        """stride, padding, dilation, groups, transposed of conv layer ``name``."""
        facts: dict[str, Any] = {}
        for attr in ("stride", "padding", "dilation", "groups", "transposed", "in_channels", "out_channels"):
            try:
                facts[attr] = getattr(module, attr)
            except (AttributeError, RuntimeError):
                pass
        if {"stride", "padding", "dilation", "groups", "transposed"} <= facts.keys():
            return facts
        node = self._inlined()["conv"].get(name)
        if node is None:
            return facts
        inputs = list(node.inputs())

        def value(index: int) -> Any:
            if index >= len(inputs):
                return None
            producer = inputs[index].node()
            if producer.kind() == "prim::Constant":
                return inputs[index].toIValue()
            if producer.kind() == "prim::ListConstruct":
                items = [item.toIValue() if item.node().kind() == "prim::Constant" else None for item in producer.inputs()]
                return None if any(item is None for item in items) else items
            return None

        kind = node.kind()
        if kind in ("aten::_convolution", "aten::convolution"):
            layout = {"stride": 3, "padding": 4, "dilation": 5, "transposed": 6, "groups": 8}
        elif kind.startswith("aten::conv_transpose"):
            layout = {"stride": 3, "padding": 4, "groups": 6, "dilation": 7}
            facts.setdefault("transposed", True)
        else:
            layout = {"stride": 3, "padding": 4, "dilation": 5, "groups": 6}
            facts.setdefault("transposed", False)
        for attr, index in layout.items():
            if attr not in facts:
                found = value(index)
                if found is not None:
                    facts[attr] = found
        return facts

    def _describe(self, name: str, module: Any) -> LayerInfo:
        is_leaf = len(module._modules) == 0
        type_name = str(getattr(module, "original_name", type(module).__name__))
        kind = kind_from_type_name(type_name, is_leaf=is_leaf)
        params = sum(p.numel() for p in module.parameters(recurse=not is_leaf))
        base = LayerInfo(name=name, kind=kind, type_name=type_name, params=int(params), is_leaf=is_leaf)
        if kind in ("conv", "conv_transpose") and getattr(module, "weight", None) is not None:
            facts = self._conv_args(name, module)
            weight = module.weight
            groups = int(facts.get("groups", 1) or 1)
            transposed = kind == "conv_transpose"
            in_ch = weight.shape[0] if transposed else weight.shape[1] * groups
            out_ch = weight.shape[1] * groups if transposed else weight.shape[0]
            padding = facts.get("padding")
            return replace(
                base,
                in_channels=int(in_ch),
                out_channels=int(out_ch),
                kernel_size=tuple(int(k) for k in weight.shape[2:]),
                stride=_ints(facts.get("stride")),
                padding=padding if isinstance(padding, str) else _ints(padding),
                dilation=_ints(facts.get("dilation")),
                groups=groups,
                transposed=transposed,
            )
        return base

    def input_spec(self) -> InputSpec:
        for info in self.layers():
            if info.is_conv and info.in_channels is not None:
                return InputSpec(channels=info.in_channels, spatial_dims=info.spatial_dims)
        return InputSpec(channels=None, spatial_dims=None)

    def kernel(self, layer: str) -> KernelBank:

        module = self._module(layer)
        info = next(i for i in self.layers() if i.name == layer)
        if not info.is_conv:
            raise ConvscopeError(f"layer {layer!r} is a {info.type_name}, not a convolution; it has no kernels")
        facts = self._conv_args(layer, module)
        if "groups" not in facts:
            raise ConvscopeError(
                f"cannot tell the groups of TorchScript layer {layer!r} (its arguments are computed at run time); "
                f"export the model with torch.export (.pt2) or to ONNX instead"
            )
        w = host_copy(module.weight)
        bias_t = getattr(module, "bias", None)
        bias = None if bias_t is None else host_copy(bias_t)
        groups = int(facts["groups"])
        transposed = info.kind == "conv_transpose"
        if transposed:
            w = transposed_to_canonical(w, groups)
        return KernelBank(
            layer=layer,
            weights=w,
            groups=groups,
            transposed=transposed,
            dilation=_ints(facts.get("dilation")),
            type_name=info.type_name,
            source_dtype=str(module.weight.dtype).replace("torch.", ""),
            bias=bias,
        )

    # no U-Net backend: TorchScript module calls cannot be traced op by op (``None`` opts out of the
    # ProvidesUNetBackend protocol that TorchAdapter declares; convscope.adapters.base.require words it)
    unet_backend = None  # type: ignore[assignment]
    # nor gradients: TorchScript refuses the forward hooks the eager adapter's gradients() uses
    # (opts out of SupportsGradients; require() says to load the eager model or a .pt2)
    gradients = None  # type: ignore[assignment]

    # -- capture -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def concurrent_captures(
        self, layers: Sequence[str], threads: int | None = None, *, views: bool = False
    ) -> Iterator[int]:
        """See :meth:`TorchAdapter.concurrent_captures`. No hooks: every capture runs its own rewritten
        copy of the graph (safe on several threads); the model's state is saved once for the block;
        ``views`` is accepted, but the activations, returned together at the end, are always copies."""
        if self._shared_state:
            raise ConvscopeError(NESTED_BLOCK)
        self._checked_modules(layers)
        with preserved_model_state(self._model), self._split_threads(threads) as at_once:
            self._shared_state = True
            try:
                yield at_once
            finally:
                self._shared_state = False

    def capture(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        *,
        on_activation: ActivationCallback | None = None,
        train_mode: bool = False,
    ) -> CaptureResult:
        import torch

        self._checked_modules(layers)
        wanted = list(dict.fromkeys(layers))
        result = CaptureResult()
        if self._shared_state and train_mode:
            raise ConvscopeError(TRAIN_IN_BLOCK)
        state = contextlib.nullcontext() if self._shared_state else preserved_model_state(self._model, train_mode=train_mode)
        with state, torch.no_grad():
            function, keys = self._capture_function(wanted)
            inputs = self.to_tensor(batch)
            try:
                outputs = function(self._model._c, inputs)
            except Exception as exc:  # noqa: BLE001 - TorchScript raises its own error types
                raise ConvscopeError(
                    f"the TorchScript model failed on an input of shape {tuple(batch.shape)}: {_first_line(exc)}. "
                    f"Check the image size and channels (--size, or a different image)"
                ) from None
        out_tensor = _first_tensor(outputs[0])
        if out_tensor is not None:
            result.output = host_copy(out_tensor)
        collector = Collector(on_activation)
        collector.result.output = result.output
        for key, value in zip(keys, outputs[1:]):
            tensor = _first_tensor(value)
            if tensor is not None:
                collector.add(key, host_copy(tensor), str(tensor.dtype).replace("torch.", ""))
        return collector.result

    def _capture_function(self, wanted: list[str]) -> tuple[Any, list[str]]:
        """A TorchScript function ``(self, x) -> (output, *captured)`` over a copy of the inlined graph."""
        import torch

        graph = self._model.inlined_graph.copy()
        nodes = list(graph.nodes())
        # calls: maximal runs of non-trivial nodes that belong to a module path (or its children)
        values: dict[str, list[Any]] = {}
        for name in wanted:
            prefix = name + "."
            runs: list[list[Any]] = []
            previous_inside = False
            for node in nodes:
                if node.kind() in _TRIVIAL_KINDS:
                    continue
                path = _module_path(node)
                inside = path == name or path.startswith(prefix)
                if inside:
                    if not previous_inside:
                        runs.append([])
                    runs[-1].append(node)
                previous_inside = inside
            outs = []
            for run in runs:
                members = set(run)
                escaping = [
                    n for n in run if n.outputsSize() >= 1 and any(
                        use.user not in members for out in n.outputs() for use in out.uses()
                    )
                ]
                last = (escaping or run)[-1]
                tensor_outs = [o for o in last.outputs() if o.type().kind() == "TensorType"]
                if tensor_outs:
                    outs.append(tensor_outs[0])
            values[name] = outs
        keys: list[str] = []
        captured: list[Any] = []
        none_value = graph.insertConstant(None)
        none_value.node().moveBefore(nodes[0])
        for name in wanted:
            for index, value in enumerate(values[name]):
                clone = graph.create("aten::clone", [value, none_value])
                clone.insertAfter(value.node())
                clone.output().setType(value.type())
                captured.append(clone.output())
                keys.append(call_key(name, index))
        ret = graph.return_node()
        original = ret.input()
        packed = graph.create("prim::TupleConstruct", [original, *captured])
        packed.insertBefore(ret)
        packed.output().setType(torch._C.TupleType([original.type(), *(v.type() for v in captured)]))
        graph.eraseOutput(0)
        graph.registerOutput(packed.output())
        try:
            function = torch._C._create_function_from_graph("convscope_capture", graph)
        except Exception as exc:  # noqa: BLE001
            raise UnsupportedModelError(
                f"convscope cannot capture activations of this TorchScript model ({_first_line(exc)}); "
                f"export it with torch.export (.pt2) or to ONNX instead"
            ) from None
        return function, keys


def _ints(value: Any) -> tuple[int, ...] | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)
