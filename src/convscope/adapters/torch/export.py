"""``.pt2`` files: a ``torch.export`` ExportedProgram seen through convscope, without its source code.

* **Loading** (:func:`load_pt2_file`): ``torch.export.load`` unpickles the archive's weights with
  full pickle (and evaluates symbolic-shape strings), so a ``.pt2`` can run code from the file.
  It is only loaded with ``trust=True`` (``--trust``); without it the file is refused before a
  byte of pickle is read. The archive's shape (zip, ``archive_format`` entry) is checked first so a
  truncated or mislabelled file gets one clear message either way.
* **Layers** are the original module paths recorded in each graph node's
  ``meta["nn_module_stack"]`` (``"enc1.conv"``); a module called several times also yields
  ``"name#1"``, ``"name#2"``... in captures. Kinds come from the recorded class names.
* **Kernels** are read from the program's parameters under their original qualified names
  (``enc1.conv.weight``), with stride/padding/dilation/groups from the graph's convolution node.
* **Activations**: ONE interpretation of ``ep.module()``'s graph (``torch.fx.Interpreter``); a
  layer's activation is the last tensor computed inside its module call that is used outside it.
* **U-Net**: :meth:`ExportedProgramAdapter.capture_graph` implements the U-Net backend protocol
  (graph, node values and per-merge gradient shares from one forward and one backward pass).

The graph is fixed at export time: it runs as exported (usually eval mode); ``train_mode=True``
raises. torch is imported lazily.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.kernels import KernelBank, transposed_to_canonical
from ...core.layers import LayerInfo
from ...errors import ConvscopeError, LayerNotFoundError, ModelLoadError, UnsupportedModelError, UntrustedFileError, close_matches
from .state import host_copy, tensors_digest
from .._capture import Collector, call_key, first_line
from ..base import ActivationCallback, CaptureResult, InputSpec, LayerGradients, ModelAdapter
from ...core.kinds import graph_op_of
from .files import kind_from_type_name
from .kinds import torch_kind_of_name

if TYPE_CHECKING:
    from ...core.graph import GraphCapture
    from ...core.objective import Objective
    from ..base import LoadedModel

__all__ = ["ExportedProgramAdapter", "load_pt2_file"]

_CONTAINERS = {"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"}
_CONV_OPS = {
    "conv1d", "conv2d", "conv3d", "convolution", "_convolution",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
}
_SQUASH_OPS = {"sigmoid", "softmax", "_softmax"}
_ATEN_GRAPH_OPS = {
    "slice": "crop", "select": "crop", "narrow": "crop",
    "_native_batch_norm_legit_no_training": "norm", "_native_batch_norm_legit": "norm",
    "native_batch_norm": "norm", "_native_batch_norm_legit_functional": "norm", "native_group_norm": "norm",
    "native_layer_norm": "norm", "_to_copy": "identity", "alias": "identity", "lift_fresh_copy": "identity",
    "max_pool2d_with_indices": "pool", "max_pool3d_with_indices": "pool",
    "_unsafe_view": "reshape", "cat": "concat",
}


def _first_line(exc: BaseException) -> str:
    return first_line(exc)


# -------------------------------------------------------------------------------------------------
# loading
# -------------------------------------------------------------------------------------------------


def load_pt2_file(path: Path, trust: bool) -> LoadedModel:
    """``FILE_LOADERS`` entry for ``.pt2``: check the archive, require trust, ``torch.export.load`` it.

    Raises:
        ModelLoadError: not a zip / truncated / not a torch.export archive (checked without unpickling).
        UntrustedFileError: a valid-looking archive but ``trust`` is False.
    """
    from ..base import LoadedModel
    from ..sniff import describe_format, sniff_format, suffix_for

    file = Path(path)
    kind = sniff_format(file)
    if kind == "empty":
        raise ModelLoadError(f"{file.name} is empty (0 bytes)")
    if kind == "corrupt-zip":
        raise ModelLoadError(f"{file.name} is truncated or corrupt: its zip directory cannot be read; export or download it again")
    if kind != "pt2":
        suffix = suffix_for(kind)
        hint = f"; rename it to {file.stem}{suffix} if that is what it is" if suffix and suffix != ".pt2" else ""
        raise ModelLoadError(f"{file.name} is not a torch.export program (.pt2): it looks like {describe_format(kind)}{hint}")
    if not trust:
        raise UntrustedFileError(
            f"{file.name} is a torch.export program; torch.export.load unpickles its contents, which can run code from "
            f"the file. If you trust its source, pass --trust (trust=True)"
        )
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(file))
    except Exception as exc:  # noqa: BLE001 - the loader raises many types for a bad archive
        raise ModelLoadError(f"cannot load {file.name} with torch.export.load: {_first_line(exc)}") from None
    adapter = ExportedProgramAdapter(program, name=file.name)
    spec = adapter.input_spec()
    shape = (1, spec.channels, *spec.spatial_size) if spec.channels and spec.spatial_size else None
    return LoadedModel(model=adapter, name=file.name, input_shape=shape, info={"format": "pt2"})


# -------------------------------------------------------------------------------------------------
# graph analysis
# -------------------------------------------------------------------------------------------------


@dataclass
class _Call:
    """One call of one module: the fx nodes computed inside it."""

    key: str
    path: str
    type_name: str
    index: int
    nodes: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return call_key(self.path, self.index)


@dataclass
class _Unit:
    """One node of the U-Net dataflow graph: a leaf-module call or one functional op."""

    id: str
    op: str
    module_type: str | None
    nodes: list[Any]
    output: Any = None
    inputs: list[str] = field(default_factory=list)
    merge_node: Any = None


def _op_name(target: Any) -> str:
    packet = getattr(target, "overloadpacket", None)
    name = getattr(packet, "__name__", None) or getattr(target, "__name__", None) or str(target)
    return str(name).split(".")[-1]


def _bind(node: Any) -> dict[str, Any]:
    """An aten call's arguments by schema name, defaults filled in."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {}
    out: dict[str, Any] = {}
    for position, argument in enumerate(schema.arguments):
        if position < len(node.args):
            out[argument.name] = node.args[position]
        elif argument.name in node.kwargs:
            out[argument.name] = node.kwargs[argument.name]
        elif argument.has_default_value():
            out[argument.name] = argument.default_value
    return out


def _escaping_output(nodes: list[Any]) -> Any:
    members = set(nodes)
    escaping = [n for n in nodes if any(user not in members for user in n.users)]
    return (escaping or nodes)[-1]


def _tuple(value: Any, nd: int | None = None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return tuple([value] * (nd or 1))
    items = [int(v) for v in value]
    if nd and len(items) == 1:
        items = items * nd
    return tuple(items)


class ExportedProgramAdapter(ModelAdapter):
    """Wraps a ``torch.export.ExportedProgram`` (CPU).

    Args:
        program: the ExportedProgram (from ``torch.export.export`` or ``torch.export.load``).
        name: display name.
    """

    framework = "torch.export"
    streams_activations = True  # each activation is copied out as the interpreter produces it

    def __init__(self, program: Any, *, name: str | None = None) -> None:
        import torch

        if not isinstance(program, torch.export.ExportedProgram):
            raise TypeError(f"ExportedProgramAdapter needs a torch.export.ExportedProgram, got {type(program).__name__}")
        self._program = program
        self.name = name or "exported-program"
        try:
            self._gm = program.module()
        except Exception as exc:  # noqa: BLE001
            raise UnsupportedModelError(f"cannot turn {self.name} into a runnable module: {_first_line(exc)}") from None
        self._analyse()

    @property
    def model(self) -> Any:
        return self._program

    def weights_digest(self) -> str:
        """A digest of every weight (see :class:`~convscope.adapters.base.SupportsWeightsDigest`)."""
        import torch

        program = self._program
        # lifted tensor constants count; script objects (custom classes) have no stable value to hash
        constants = [(f"constant:{k}", v) for k, v in program.constants.items() if isinstance(v, torch.Tensor)]
        return tensors_digest([*program.state_dict.items(), *constants])

    @property
    def module(self) -> Any:
        """The runnable ``torch.fx.GraphModule`` (``program.module()``) convscope interprets."""
        return self._gm

    # -- analysis ------------------------------------------------------------------------------
    def _analyse(self) -> None:
        import torch

        graph = self._gm.graph
        self._nodes = list(graph.nodes)
        self._placeholders = [n for n in self._nodes if n.op == "placeholder"]
        self._compute = [n for n in self._nodes if n.op == "call_function"]
        calls: dict[str, _Call] = {}
        per_path: dict[str, int] = {}
        for node in self._compute:
            stack = node.meta.get("nn_module_stack") or {}
            for key, (path, type_name) in stack.items():
                if not path:
                    continue
                call = calls.get(key)
                if call is None:
                    index = per_path.get(path, 0)
                    per_path[path] = index + 1
                    call = calls[key] = _Call(key, path, str(getattr(type_name, "__qualname__", type_name)), index)
                call.nodes.append(node)
        self._calls = list(calls.values())
        paths: dict[str, str] = {}
        for call in self._calls:
            paths.setdefault(call.path, call.type_name)
        parameters = dict(self._gm.named_parameters())
        self._parameters = parameters
        infos: dict[str, LayerInfo] = {}
        for path, type_name in paths.items():
            is_leaf = not any(other.startswith(path + ".") for other in paths)
            infos[path] = self._describe(path, type_name, is_leaf)
        self._infos = infos
        # tensors that depend on the user input
        inputs = set(self._placeholders)
        dynamic: set[Any] = set(inputs)
        for node in self._compute:
            if any(arg in dynamic for arg in node.all_input_nodes):
                dynamic.add(node)
        self._dynamic = dynamic
        self._is_tensor = {
            n: isinstance(n.meta.get("val"), torch.Tensor) or isinstance(n.meta.get("example_value"), torch.Tensor)
            for n in self._nodes
        }

    def _conv_node(self, path: str) -> Any:
        for call in self._calls:
            if call.path == path:
                for node in call.nodes:
                    if _op_name(node.target) in _CONV_OPS:
                        return node
        return None

    def _conv_facts(self, node: Any) -> dict[str, Any]:
        args = _bind(node)
        op = _op_name(node.target)
        transposed = bool(args.get("transposed", False)) or op.startswith("conv_transpose")
        return {
            "weight": args.get("weight"),
            "bias": args.get("bias"),
            "stride": args.get("stride"),
            "padding": args.get("padding"),
            "dilation": args.get("dilation"),
            "groups": int(args.get("groups", 1) or 1),
            "transposed": transposed,
        }

    def _tensor_of(self, arg: Any) -> Any:
        """The parameter/buffer tensor behind a ``get_attr`` node, or None."""
        if getattr(arg, "op", None) != "get_attr":
            return None
        target = arg.target
        obj: Any = self._gm
        for part in target.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    def _describe(self, path: str, type_name: str, is_leaf: bool) -> LayerInfo:
        short = type_name.rsplit(".", 1)[-1]
        kind = kind_from_type_name(short, is_leaf=is_leaf) if short not in _CONTAINERS else "container"
        prefix = path + "."
        params = sum(
            int(p.numel()) for fqn, p in self._parameters.items()
            if fqn.startswith(prefix) and (not is_leaf or "." not in fqn[len(prefix):])
        )
        base = LayerInfo(name=path, kind=kind, type_name=short, params=params, is_leaf=is_leaf)
        if kind in ("conv", "conv_transpose"):
            node = self._conv_node(path)
            if node is not None:
                facts = self._conv_facts(node)
                weight = self._tensor_of(facts["weight"])
                groups = facts["groups"]
                in_ch = out_ch = ksize = None
                if weight is not None and weight.dim() >= 3:
                    ksize = tuple(int(k) for k in weight.shape[2:])
                    if facts["transposed"]:
                        in_ch, out_ch = int(weight.shape[0]), int(weight.shape[1]) * groups
                    else:
                        out_ch, in_ch = int(weight.shape[0]), int(weight.shape[1]) * groups
                nd = len(ksize) if ksize else None
                padding = facts["padding"]
                return replace(
                    base,
                    in_channels=in_ch,
                    out_channels=out_ch,
                    kernel_size=ksize,
                    stride=_tuple(facts["stride"], nd),
                    padding=padding if isinstance(padding, str) else _tuple(padding, nd),
                    dilation=_tuple(facts["dilation"], nd),
                    groups=groups,
                    transposed=facts["transposed"],
                )
        weight = self._parameters.get(prefix + "weight")
        if weight is not None and kind == "norm" and weight.dim() == 1:
            return replace(base, in_channels=int(weight.shape[0]), out_channels=int(weight.shape[0]))
        if weight is not None and kind == "linear" and weight.dim() == 2:
            return replace(base, in_channels=int(weight.shape[1]), out_channels=int(weight.shape[0]))
        return base

    # -- ModelAdapter --------------------------------------------------------------------------
    def layers(self) -> list[LayerInfo]:
        return list(self._infos.values())

    def _info(self, name: str) -> LayerInfo:
        if name not in self._infos:
            near = close_matches(name, self._infos)
            raise LayerNotFoundError(
                f"no layer named {name!r}" + (f"; did you mean: {', '.join(near)}?" if near else "")
                + " Run `convscope layers MODEL` to list the layer names."
            )
        return self._infos[name]

    def _user_inputs(self) -> list[Any]:
        import torch

        return [n for n in self._placeholders if isinstance(n.meta.get("val"), torch.Tensor)] or self._placeholders

    def input_spec(self) -> InputSpec:
        inputs = self._user_inputs()
        if not inputs:
            return InputSpec(channels=None, spatial_dims=None)
        value = inputs[0].meta.get("val")
        if value is None or not hasattr(value, "shape"):
            return InputSpec(channels=None, spatial_dims=None)
        dims = [int(s) if isinstance(s, int) else None for s in value.shape]
        dtype = str(value.dtype).replace("torch.", "")
        if len(dims) < 3:
            return InputSpec(channels=dims[1] if len(dims) > 1 else None, spatial_dims=None, dtype=dtype)
        spatial = dims[2:]
        return InputSpec(
            channels=dims[1],
            spatial_dims=len(spatial),
            spatial_size=tuple(spatial) if all(s is not None for s in spatial) else None,  # type: ignore[arg-type]
            dtype=dtype,
        )

    def kernel(self, layer: str) -> KernelBank:

        info = self._info(layer)
        if not info.is_conv:
            raise ConvscopeError(f"layer {layer!r} is a {info.type_name}, not a convolution; it has no kernels")
        node = self._conv_node(layer)
        if node is None:
            raise ConvscopeError(f"layer {layer!r} has no convolution op in the exported graph")
        facts = self._conv_facts(node)
        weight = self._tensor_of(facts["weight"])
        if weight is None:
            raise ConvscopeError(
                f"the weight of {layer!r} is computed in the exported graph (weight norm, quantization...), not stored; "
                f"convscope can only show stored kernels"
            )
        bias_t = self._tensor_of(facts["bias"]) if facts["bias"] is not None else None
        w = host_copy(weight)
        bias = None if bias_t is None else host_copy(bias_t)
        groups = facts["groups"]
        if facts["transposed"]:
            w = transposed_to_canonical(w, groups)
        nd = w.ndim - 2
        return KernelBank(
            layer=layer,
            weights=w,
            groups=groups,
            transposed=facts["transposed"],
            dilation=_tuple(facts["dilation"], nd) or tuple([1] * nd),
            type_name=info.type_name,
            source_dtype=str(weight.dtype).replace("torch.", ""),
            bias=bias,
        )

    # -- running -------------------------------------------------------------------------------
    def _input_tensor(self, batch: np.ndarray) -> Any:
        import torch

        inputs = self._user_inputs()
        if len(inputs) != 1:
            raise UnsupportedModelError(
                f"{self.name} takes {len(inputs)} inputs; convscope feeds one image batch, so it needs a program "
                f"exported with exactly one tensor input"
            )
        arr = np.asarray(batch)
        if not np.issubdtype(arr.dtype, np.number):
            raise ConvscopeError(f"the input batch must be numeric, got dtype {arr.dtype}")
        value = inputs[0].meta.get("val")
        dtype = value.dtype if value is not None and hasattr(value, "dtype") else torch.float32
        return torch.from_numpy(np.ascontiguousarray(arr)).to(dtype=dtype)

    def _run(self, x: Any, record: Callable[[Any, Any], None], *, grad: bool = False) -> Any:
        """Interpret the graph once on ``x``; ``record(fx_node, value)`` after each node."""
        import torch
        import torch.fx

        class Recorder(torch.fx.Interpreter):
            def run_node(self, n: Any) -> Any:
                value = super().run_node(n)
                record(n, value)
                return value

        context = torch.enable_grad() if grad else torch.no_grad()
        try:
            with context, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Recorder(self._gm).run(x)
        except ConvscopeError:
            raise
        except Exception as exc:  # noqa: BLE001 - guards raise AssertionError, ops RuntimeError
            raise ConvscopeError(
                f"the exported program failed on an input of shape {tuple(x.shape)}: {_first_line(exc)}. Check the image "
                f"size and channels (--size); a program exported with fixed sizes only takes those"
            ) from None

    def capture(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        *,
        on_activation: ActivationCallback | None = None,
        train_mode: bool = False,
    ) -> CaptureResult:
        """ONE interpretation of the exported graph; see the module docstring for what a layer's output is.

        Returns:
            :class:`CaptureResult` with ``(N, C, *spatial)`` float32 copies; a module called several
            times also gives ``name#1``, ``name#2``...
        """

        if train_mode:
            raise UnsupportedModelError(
                "an exported program (.pt2) is fixed at export time and runs as exported; capture without train mode "
                "(drop --train-mode / train=True)"
            )
        wanted = list(dict.fromkeys(layers))
        for name in wanted:
            self._info(name)
        targets: dict[Any, list[str]] = {}
        for name in wanted:
            for call in self._calls:
                if call.path == name:
                    targets.setdefault(_escaping_output(call.nodes), []).append(call.name)
        collector = Collector(on_activation)
        result = collector.result

        def record(node: Any, value: Any) -> None:
            keys = targets.get(node)
            if not keys:
                return
            tensor = _first_tensor(value)
            if tensor is None:
                return
            host = host_copy(tensor)
            for key in keys:
                collector.add(key, host if len(keys) == 1 or on_activation is None else host.copy(),
                              str(tensor.dtype).replace("torch.", ""))

        output = self._run(self._input_tensor(batch), record)
        out_tensor = _first_tensor(output)
        if out_tensor is not None:
            result.output = host_copy(out_tensor)
        # model order (a call's name#k right after the first)
        collector.order([call.name for name in wanted for call in self._calls if call.path == name])
        return result

    # -- gradients -----------------------------------------------------------------------------
    def gradients(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        objective: Objective,
        *,
        with_input: bool = False,
    ) -> LayerGradients:
        """:class:`~convscope.adapters.base.SupportsGradients`: ONE interpretation with autograd on,
        ONE ``torch.autograd.grad`` of the selected output with cotangent ``objective.cotangent``.

        A layer's activation is the tensor :meth:`capture` reports for it; a module called several
        times also gives ``name#1``... With ``objective.from_logits`` and an output made by a final
        ``sigmoid``/``softmax`` node, the gradient starts from that node's input (``output_name``
        says so). Only the input tensor convscope made gets ``requires_grad``; the program's
        parameters and their ``.grad`` are never touched.
        """
        import torch

        from ...core.objective import select_output
        from .._capture import named_outputs
        from .graph import torch_vjp

        wanted = list(dict.fromkeys(layers))
        for name in wanted:
            self._info(name)
        targets: dict[Any, list[str]] = {}
        order: list[str] = []
        for name in wanted:
            for call in self._calls:
                if call.path == name:
                    targets.setdefault(_escaping_output(call.nodes), []).append(call.name)
                    order.append(call.name)
        output_node = next(n for n in reversed(self._nodes) if n.op == "output")
        logits_of: dict[Any, Any] = {}  # final sigmoid/softmax node -> its input node
        for out in output_node.all_input_nodes:
            if out.op == "call_function" and _op_name(out.target) in _SQUASH_OPS and out.args:
                logits_of[out] = out.args[0]
        logit_nodes = set(logits_of.values())
        kept: dict[str, Any] = {}
        logits: dict[Any, Any] = {}

        def record(node: Any, value: Any) -> None:
            if node in logit_nodes:
                logits[node] = _first_tensor(value)
            for key in targets.get(node, ()):
                tensor = _first_tensor(value)
                if tensor is not None:
                    kept[key] = tensor

        x = self._input_tensor(batch)
        x.requires_grad_(True)
        output = self._run(x, record, grad=True)
        outputs = named_outputs(output, lambda t: isinstance(t, torch.Tensor))
        hosts = {name: host_copy(t) for name, t in outputs.items()}
        chosen = select_output(hosts, objective)
        out_tensor, out_name = outputs[chosen], chosen
        if objective.from_logits:
            for squash, arg in logits_of.items():
                if arg in logits and logits[arg] is not None and _is_result_of(out_tensor, squash, output_node, output):
                    out_tensor = logits[arg]
                    out_name = f"{chosen} (input of the final {_op_name(squash.target)})"
                    break
        host_out = host_copy(out_tensor)
        weights = objective.cotangent(host_out)
        names = [k for k in order if k in kept]
        sources = [kept[k] for k in names] + ([x] if with_input else [])
        grads = torch_vjp(out_tensor, sources, weights)
        acts = {k: host_copy(kept[k]) for k in names}
        grad_maps = {
            k: host_copy(g) if g is not None else np.zeros_like(acts[k]) for k, g in zip(names, grads[: len(names)])
        }
        input_gradient = None
        if with_input:
            g = grads[-1]
            input_gradient = host_copy(g) if g is not None else np.zeros(np.shape(batch), dtype=np.float32)
        score = (weights.reshape(weights.shape[0], -1).astype(np.float64) * host_out.reshape(host_out.shape[0], -1)).sum(axis=1)
        return LayerGradients(
            activations=acts, gradients=grad_maps, output=host_out, output_name=out_name,
            score=score.astype(np.float32), cotangent=weights, input_gradient=input_gradient,
        )

    # -- U-Net backend -------------------------------------------------------------------------
    def _units(self) -> tuple[list[_Unit], dict[Any, str], str]:
        """Dataflow units in execution order, fx node -> unit id, and the input node id."""
        units: dict[str, _Unit] = {}
        owner: dict[Any, str] = {}
        inputs = self._user_inputs()
        input_id = inputs[0].name if inputs else "x"
        for node in inputs[:1]:
            owner[node] = input_id
        names_used: dict[str, int] = {}

        def unique(base: str) -> str:
            count = names_used.get(base, 0)
            names_used[base] = count + 1
            return call_key(base, count)

        call_name = {call.key: call.name for call in self._calls}
        for node in self._compute:
            if node not in self._dynamic:
                continue
            if node.target is operator.getitem and node.args and node.args[0] in owner:
                source = node.args[0]
                unit = units[owner[source]]
                owner[node] = unit.id
                unit.nodes.append(node)
                continue
            if not self._is_tensor.get(node, False):
                continue
            stack = list((node.meta.get("nn_module_stack") or {}).items())
            leaf_key = None
            for key, (path, type_name) in stack:
                short = str(getattr(type_name, "__qualname__", type_name)).rsplit(".", 1)[-1]
                full = str(getattr(type_name, "__module__", "") or type_name)
                if path and (full.startswith("torch.nn.") or str(type_name).startswith("torch.nn.")) and short not in _CONTAINERS:
                    leaf_key = (key, path, short)
                    break
            if leaf_key is not None:
                key, path, short = leaf_key
                uid = call_name.get(key, path)
                if uid not in units:
                    op = graph_op_of(torch_kind_of_name(short) or "other")
                    units[uid] = _Unit(uid, op, short, [])
                    names_used[uid] = names_used.get(uid, 0) + 1
                units[uid].nodes.append(node)
                owner[node] = uid
                continue
            op_name = _op_name(node.target)
            enclosing = next((path for _k, (path, _t) in reversed(stack) if path), "")
            uid = unique(f"{enclosing}.{op_name}" if enclosing else op_name)
            op = _graph_op_of(node, op_name)
            unit = units[uid] = _Unit(uid, op, None, [node])
            owner[node] = uid
        ordered = list(units.values())
        for unit in ordered:
            members = set(unit.nodes)
            unit.output = _escaping_output(unit.nodes)
            sources: list[str] = []
            for node in unit.nodes:
                for arg in node.all_input_nodes:
                    if arg in members:
                        continue
                    uid = owner.get(arg)
                    if uid is not None and uid != unit.id:
                        sources.append(uid)
            unit.inputs = list(dict.fromkeys(sources))
            if unit.op in ("concat", "stack", "add"):
                unit.merge_node = next((n for n in unit.nodes if _graph_op_of(n, _op_name(n.target)) == unit.op), None)
        return ordered, owner, input_id

    def capture_graph(self, batch: np.ndarray, request: Any, *, target: int | None = None, mask: Any = None) -> GraphCapture:
        """The U-Net backend protocol: graph + requested node values (one forward pass) + per-merge
        ``sum |x_i * dS/dx_i|`` for the requested merges (one backward pass).

        Args:
            batch: ``(N, C, *spatial)`` float32 input.
            request: ``callable(Graph) -> CaptureRequest`` (or a CaptureRequest).
            target / mask: the objective score, as for the torch backend.
        """
        import torch

        from ...core.graph import CaptureRequest, Graph, GraphCapture, Node
        from ...core.merges import nan_sums, skip_cotangent
        from .graph import torch_vjp

        units, owner, input_id = self._units()
        outputs = {unit.output: unit for unit in units}
        kept: dict[str, Any] = {}

        def record(node: Any, value: Any) -> None:
            unit = outputs.get(node)
            if unit is not None:
                tensor = _first_tensor(value)
                if tensor is not None:
                    kept[unit.id] = tensor

        x = self._input_tensor(batch)
        x.requires_grad_(True)
        output = self._run(x, record, grad=True)
        kept[input_id] = x
        nodes = [Node(id=input_id, op="input", name=input_id, shape=tuple(int(s) for s in x.shape[1:]))]
        for unit in units:
            value = kept.get(unit.id)
            nodes.append(Node(
                id=unit.id, op=unit.op, name=unit.id,
                shape=tuple(int(s) for s in value.shape[1:]) if value is not None else None,
                inputs=tuple(unit.inputs), module_type=unit.module_type,
            ))
        out_ids = []
        for item in _tensors_in(output):
            for uid, value in kept.items():
                if value is item and uid not in out_ids:
                    out_ids.append(uid)
        graph = Graph(nodes=tuple(nodes), input_ids=(input_id,), output_ids=tuple(out_ids))
        decided = request(graph) if callable(request) else request
        if decided is None:
            decided = CaptureRequest()
        values = {
            nid: np.ascontiguousarray(kept[nid].detach().to("cpu", dtype=torch.float32).numpy())
            for nid in graph.topological_order()
            if nid in set(decided.values) and nid in kept
        }
        gradients: dict[str, tuple[float, ...]] = {}
        merges = [m for m in decided.merges if m in graph]
        if merges:
            objective = decided.objective or (out_ids[0] if out_ids else None)
            if objective is None or objective not in kept:
                raise ConvscopeError("the exported program returned no tensor that depends on the input; nothing to differentiate")
            by_id = {unit.id: unit for unit in units}
            weights = skip_cotangent(host_copy(kept[objective]), target, mask)
            merge_outputs = [kept[m] for m in merges if m in kept]
            grads = torch_vjp(kept[objective], merge_outputs, weights)
            grad_of = {id(t): g for t, g in zip(merge_outputs, grads)}
            for merge in merges:
                node = graph.node(merge)
                merge_unit = by_id.get(merge)
                value = kept.get(merge)
                grad = grad_of.get(id(value)) if value is not None else None
                if merge_unit is None or merge_unit.merge_node is None or grad is None:
                    gradients[merge] = nan_sums(len(node.inputs))
                    continue
                gradients[merge] = _merge_input_sums(merge_unit, owner, kept, host_copy(grad), node.inputs)
        return GraphCapture(graph=graph, values=values, input_x_gradient=gradients)


def _graph_op_of(node: Any, op_name: str) -> str:
    from .graph import function_op_kind

    if op_name in ("convolution", "_convolution"):
        return "conv_transpose" if bool(_bind(node).get("transposed", False)) else "conv"
    return _ATEN_GRAPH_OPS.get(op_name) or function_op_kind(op_name)


def _merge_input_sums(unit: _Unit, owner: dict[Any, str], kept: dict[str, Any], grad: np.ndarray,
                      inputs: Sequence[str]) -> tuple[float, ...]:
    """Per graph input of a merge: ``sum |x_i * g_i|`` (:func:`convscope.core.merges.merge_input_sums`)
    from the merge output's host gradient ``grad``; an argument used twice adds up under its input."""
    from ...core.merges import MergePart, merge_input_sums, nan_sums

    node = unit.merge_node
    op = _op_name(node.target)
    args = _bind(node)
    pieces: list[tuple[Any, MergePart]] = []  # (fx arg node, how it reads the gradient)
    if op in ("cat", "concat", "concatenate"):
        dim = int(args.get("dim", 0)) % grad.ndim
        start = 0
        for arg in args.get("tensors", []):
            size = int(arg.meta["val"].shape[dim]) if "val" in arg.meta else None
            if size is None:
                return nan_sums(len(inputs))
            pieces.append((arg, ("slice", dim, start, size)))
            start += size
    elif op == "stack":
        dim = int(args.get("dim", 0)) % grad.ndim
        for position, arg in enumerate(args.get("tensors", [])):
            pieces.append((arg, ("index", dim, position)))
    else:  # add
        for key in ("self", "other"):
            arg = args.get(key)
            if hasattr(arg, "meta"):
                uid = owner.get(arg)
                value = kept.get(uid) if uid is not None else None
                if value is not None:
                    pieces.append((arg, ("reduce", tuple(value.shape))))
    sums: dict[str, float] = {}
    for arg, part in pieces:
        uid = owner.get(arg)
        value = kept.get(uid) if uid is not None else None
        if uid is None or value is None:
            continue
        (total,) = merge_input_sums(grad, [host_copy(value)], [part])
        sums[uid] = sums.get(uid, 0.0) + total
    return tuple(sums.get(i, float("nan")) for i in inputs)


def _is_result_of(tensor: Any, squash: Any, output_node: Any, output: Any) -> bool:
    """Whether the model output ``tensor`` is the value of fx node ``squash`` (by position in the output)."""
    import torch.utils._pytree as pytree

    flat_nodes = [n for n in pytree.tree_leaves(output_node.args[0]) if hasattr(n, "op")]
    flat_values = [v for v in pytree.tree_leaves(output) if hasattr(v, "shape")]
    for node, value in zip(flat_nodes, flat_values):
        if value is tensor:
            return node is squash
    return False


def _tensors_in(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors_in(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors_in(item)]
    return []


def _first_tensor(value: Any) -> Any:
    found = _tensors_in(value)
    return found[0] if found else None
