"""Dataflow graph of one eager PyTorch forward pass, node values, and per-branch gradients at merges
(the U-Net backend built on it is :mod:`.unet`).

How the trace works:
- forward hooks on the model's modules: a *leaf* module (any ``torch.nn`` layer class or subclass of
  one, not a container) becomes one node and its internals are not descended into; other modules
  (your blocks, ``Sequential``, ``ModuleList``, ``ModuleDict``) only give functional ops their
  enclosing name;
- a ``TorchFunctionMode`` sees every functional op and tensor method called outside leaf modules
  (``torch.cat``, ``torch.stack``, ``+``, ``F.interpolate``, ``F.pad``, slicing...);
- tensor provenance is tracked by object identity (with a weak reference so a recycled ``id`` is
  never confused); an op that modifies a tensor in place (``ReLU(inplace=True)``, ``x += y``,
  ``relu_``) makes that tensor "produced" by the in-place op from then on, and a kept value of the
  tensor's earlier node is cloned before the modification;
- hooks are registered on the model only for the duration of the pass and the model is restored by
  :func:`~convscope.adapters.torch.state.preserved_model_state` (also when the forward raises).

Known limits: in-place modification of a *view's base* is not seen through the view; modules whose
``forward`` is called directly (not via ``__call__``) are traced as their functional ops.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ...core.graph import MERGE_OPS, Graph, GraphCapture, Node
from ...errors import ConvscopeError, UnsupportedModelError
from .._capture import CallNamer
from .state import preserved_model_state

__all__ = [
    "trace_torch",
    "TorchTrace",
    "is_leaf_module",
    "module_op_kind",
    "function_op_kind",
]

TorchTrace = GraphCapture
"""What :func:`trace_torch` returns: ``graph``, ``values`` (node id -> numpy), ``input_x_gradient``."""

KeepSpec = Any
"""``None`` | ``"all"`` | iterable of node ids | ``callable(Graph) -> iterable of node ids``."""


# ------------------------------------------------------------------------------------------------
# op kinds
# ------------------------------------------------------------------------------------------------

def _torch_nn_class(module: Any) -> type | None:
    """The first class of ``module``'s MRO defined in ``torch.nn`` (not Module or a container)."""
    from .kinds import torch_nn_class

    return torch_nn_class(module)


def is_leaf_module(module: Any) -> bool:
    """True for modules recorded as one node: ``torch.nn`` layers (and subclasses), not containers."""
    import torch.nn as nn

    if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    return _torch_nn_class(module) is not None


def module_op_kind(module: Any) -> str:
    """Normalised op kind of a leaf module (``"conv"``, ``"pool"``, ``"upsample"``...), from THE torch
    kind table (:mod:`.kinds`)."""
    from .kinds import graph_op_of_module

    return graph_op_of_module(module)


_FUNC_KINDS: dict[str, str] = {}
for _kind, _names in {
    "concat": "cat concat concatenate",
    "stack": "stack",
    "add": "add radd iadd",
    "sub": "sub rsub isub subtract",
    "mul": "mul rmul imul multiply",
    "div": "div truediv rtruediv itruediv divide",
    "upsample": "interpolate upsample upsample_nearest upsample_bilinear pixel_shuffle max_unpool1d "
    "max_unpool2d max_unpool3d",
    "pool": "pixel_unshuffle",
    "pad": "pad constant_pad_nd setitem",
    "crop": "getitem narrow select index_select center_crop",
    "norm": "batch_norm group_norm instance_norm layer_norm local_response_norm normalize rms_norm",
    "activation": "relu relu6 leaky_relu elu selu celu gelu silu mish sigmoid tanh softmax log_softmax hardtanh "
    "hardswish hardsigmoid softplus prelu rrelu glu threshold clamp clip logsigmoid softsign tanhshrink",
    "linear": "linear bilinear matmul mm bmm einsum",
    "dropout": "dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout",
    "identity": "clone contiguous to float half double bfloat16 type type_as detach cpu cuda",
    "reshape": "view view_as reshape reshape_as flatten unflatten permute transpose t squeeze unsqueeze expand "
    "expand_as movedim moveaxis repeat",
    "reduce": "mean sum amax amin max min std var norm logsumexp prod",
}.items():
    for _n in _names.split():
        _FUNC_KINDS[_n] = _kind

_NAME_TOKENS = {"concat": "cat", "stack": "stack", "add": "add", "sub": "sub", "mul": "mul", "div": "div"}


def _clean_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    return name.strip("_") or "op"


def function_op_kind(func_or_name: Any) -> str:
    """Normalised op kind of a functional op or tensor method (``torch.cat`` -> ``"concat"``)."""
    name = func_or_name if isinstance(func_or_name, str) else _clean_name(func_or_name)
    name = name.strip("_")
    if name in _FUNC_KINDS:
        return _FUNC_KINDS[name]
    base = name.rstrip("_")  # in-place variants: add_, relu_, clamp_
    if base in _FUNC_KINDS:
        return _FUNC_KINDS[base]
    if "conv_transpose" in base:
        return "conv_transpose"
    if base.startswith("conv"):
        return "conv"
    if "pool" in base:
        return "pool"
    if "interpolate" in base or "upsample" in base:
        return "upsample"
    return "other"


_INPLACE_PARAM_CACHE: dict[Any, bool] = {}
_INPLACE_DUNDERS = frozenset(
    f"__i{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor", "lshift", "rshift", "matmul")
)


def _maybe_inplace(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether ``func(*args, **kwargs)`` may modify one of its tensor arguments in place."""
    raw = getattr(func, "__name__", "") or ""
    if raw == "__setitem__" or raw in _INPLACE_DUNDERS or (raw.endswith("_") and not raw.endswith("__")):
        return True
    if kwargs.get("inplace") is True or "out" in kwargs:
        return True
    if any(a is True for a in args[1:]):
        key = func
        if key not in _INPLACE_PARAM_CACHE:
            try:
                _INPLACE_PARAM_CACHE[key] = "inplace" in inspect.signature(func).parameters
            except (TypeError, ValueError):
                _INPLACE_PARAM_CACHE[key] = False
        if _INPLACE_PARAM_CACHE[key]:
            try:
                bound = inspect.signature(func).bind(*args, **kwargs)
                return bound.arguments.get("inplace") is True
            except TypeError:
                return True
    return False


def _version(tensor: Any) -> int:
    try:
        return int(tensor._version)
    except (RuntimeError, AttributeError):  # inference tensors have no version counter
        return -1


# ------------------------------------------------------------------------------------------------
# the tracer
# ------------------------------------------------------------------------------------------------


def _make_mode_class() -> type:
    from torch.overrides import TorchFunctionMode

    class _TraceMode(TorchFunctionMode):
        def __init__(self, tracer: _Tracer) -> None:
            super().__init__()
            self.tracer = tracer

        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            return self.tracer.on_function(func, args, kwargs or {})

    return _TraceMode


class _Tracer:
    """Builds nodes while the model runs; see the module docstring."""

    def __init__(self, *, retain: Callable[[str], bool], track_merges: bool) -> None:
        import torch

        self.torch = torch
        self.retain = retain
        self.track_merges = track_merges
        self.nodes: list[dict[str, Any]] = []
        self.namer = CallNamer()  # THE #k naming rule (node ids: base, base#1, ...)
        self.prov: dict[int, tuple[Any, str]] = {}
        self.scope: list[str] = []
        self.leaf_depth = 0
        self.paused = 0
        self.active = False
        self.values: dict[str, Any] = {}
        self.cloned: set[str] = set()
        self.module_outputs: dict[str, list[str]] = {}
        self.merge_info: dict[str, tuple[Any, ...]] = {}
        self.merge_grad_fn: dict[str, Any] = {}
        self.leaf_versions: list[list[tuple[Any, int]]] = []

    # -- provenance ---------------------------------------------------------------------------
    def lookup(self, tensor: Any) -> str | None:
        entry = self.prov.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1]

    def set_prov(self, tensor: Any, node_id: str) -> None:
        self.prov[id(tensor)] = (weakref.ref(tensor), node_id)

    def unique(self, base: str) -> str:
        """``base``, then ``base#1``, ``base#2``... skipping taken names (:class:`.._capture.CallNamer`)."""
        return self.namer.next(base)

    def tensors_in(self, obj: Any) -> list[Any]:
        from torch.utils._pytree import tree_leaves

        return [leaf for leaf in tree_leaves(obj) if isinstance(leaf, self.torch.Tensor)]

    def protect(self, tensors: Iterable[Any]) -> None:
        """Clone kept values of ``tensors``' nodes before an op may modify them in place."""
        for tensor in tensors:
            nid = self.lookup(tensor)
            if nid is not None and nid in self.values and nid not in self.cloned:
                self.values[nid] = tensor.detach().clone()
                self.cloned.add(nid)

    def add_node(
        self,
        base: str,
        op: str,
        inputs: list[str],
        outputs: list[Any],
        module_type: str | None,
        attrs: dict[str, Any],
        *,
        remap: bool = True,
    ) -> str:
        name = self.unique(base)
        first = outputs[0]
        shape = tuple(int(s) for s in first.shape[1:]) if first.dim() >= 1 else ()
        self.nodes.append(
            {"id": name, "op": op, "name": name, "shape": shape, "inputs": tuple(inputs), "module_type": module_type, "attrs": attrs}
        )
        if remap:
            for tensor in outputs:
                self.set_prov(tensor, name)
        if self.retain(name):
            self.values[name] = first.detach()
        return name

    # -- the graph input ----------------------------------------------------------------------
    def add_input(self, tensor: Any) -> str:
        return self.add_node("input", "input", [], [tensor], None, {})

    # -- functional ops -------------------------------------------------------------------------
    def on_function(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if self.paused or self.leaf_depth or not self.active:
            return func(*args, **kwargs)
        flat = self.tensors_in((args, kwargs))
        traced: list[tuple[Any, str]] = [(t, nid) for t in flat if (nid := self.lookup(t)) is not None]
        if not traced:
            return func(*args, **kwargs)
        inplace = _maybe_inplace(func, args, kwargs)
        if inplace:
            self.protect(t for t, _ in traced)
        before = [(t, _version(t)) for t, _ in traced]
        result = func(*args, **kwargs)
        raw = getattr(func, "__name__", "") or ""
        outs = self.tensors_in(result)
        if raw == "__setitem__" and args and isinstance(args[0], self.torch.Tensor):
            outs = [args[0]]
        mutated = [t for t, v in before if _version(t) != v]
        new_outs: list[Any] = []
        for tensor in outs:
            is_input = any(tensor is t for t, _ in traced)
            if is_input and not any(tensor is m for m in mutated):
                continue  # returned an input unchanged (x.contiguous(), x.float() on float)
            if not any(tensor is o for o in new_outs):
                new_outs.append(tensor)
        for tensor in mutated:
            if not any(tensor is o for o in new_outs):
                new_outs.append(tensor)
        if not new_outs:
            return result
        name = _clean_name(func)
        kind = function_op_kind(name)
        token = _NAME_TOKENS.get(kind, name.rstrip("_") or name)
        scope = self.scope[-1] if self.scope else ""
        base = f"{scope}.{token}" if scope else token
        module = getattr(func, "__module__", None) or "Tensor"
        attrs: dict[str, Any] = {"func": f"{module}.{getattr(func, '__name__', name)}", "inplace": bool(mutated)}
        inputs = [nid for _, nid in traced]
        if kind in ("concat", "stack"):
            attrs["dim"] = _dim_arg(args, kwargs)
        elif kind in ("conv", "conv_transpose"):
            attrs["stride"] = _int_tuple(args[3] if len(args) > 3 else kwargs.get("stride", 1))
        elif kind == "crop" and raw == "__getitem__" and _strided_index(args[1] if len(args) > 1 else None):
            kind = "pool"  # x[:, :, ::2, ::2] subsamples
            attrs["strided"] = True
        node_id = self.add_node(base, kind, inputs, new_outs, None, attrs)
        if self.track_merges and kind in MERGE_OPS:
            self.note_merge(node_id, kind, args, kwargs, traced, new_outs[0])
        return result

    def note_merge(self, node_id: str, kind: str, args: tuple, kwargs: dict, traced: list, out: Any) -> None:
        """Remember how to split the merge output's gradient into its inputs; hook its grad_fn."""
        ndim = out.dim()
        if kind == "concat":
            seq = args[0] if args else kwargs.get("tensors", ())
            dim = _dim_arg(args, kwargs) % max(ndim, 1)
            parts = []
            offset = 0
            for element in seq:
                size = int(element.shape[dim]) if element.dim() > 0 else 0
                if self.lookup(element) is not None:
                    parts.append(("slice", dim, offset, size))
                offset += size
            info: tuple[Any, ...] = tuple(parts)
        elif kind == "stack":
            seq = args[0] if args else kwargs.get("tensors", ())
            dim = _dim_arg(args, kwargs) % max(ndim, 1)
            info = tuple(("index", dim, i) for i, element in enumerate(seq) if self.lookup(element) is not None)
        else:
            info = tuple(("reduce", tuple(t.shape)) for t, _ in traced)
        if len(info) != len(traced):
            return
        self.merge_info[node_id] = info
        grad_fn = getattr(out, "grad_fn", None)
        if grad_fn is not None:
            self.merge_grad_fn[node_id] = grad_fn

    # -- modules ------------------------------------------------------------------------------
    def leaf_pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        if self.leaf_depth == 0 and self.active and not self.paused:
            self.paused += 1
            try:
                if getattr(module, "inplace", False) is True:
                    self.protect(self.tensors_in((args, kwargs)))
                self.leaf_versions.append([(t, _version(t)) for t in self.tensors_in((args, kwargs)) if self.lookup(t)])
            finally:
                self.paused -= 1
        self.leaf_depth += 1

    def leaf_post(self, name: str, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        self.leaf_depth -= 1
        if self.leaf_depth != 0 or not self.active or self.paused:
            return
        self.paused += 1
        try:
            before = self.leaf_versions.pop() if self.leaf_versions else []
            flat = self.tensors_in((args, kwargs))
            inputs = [nid for nid in (self.lookup(t) for t in flat) if nid is not None]
            flat_ids = {id(t) for t in flat}
            mutated = [t for t, v in before if _version(t) != v]
            outs: list[Any] = []
            unchanged: list[Any] = []
            for tensor in self.tensors_in(output):
                if any(tensor is o for o in outs) or any(tensor is u for u in unchanged):
                    continue
                if id(tensor) in flat_ids and not any(tensor is m for m in mutated):
                    unchanged.append(tensor)  # nn.Identity, eval-mode Dropout: returned its input as is
                else:
                    outs.append(tensor)
            for tensor in mutated:
                if not any(tensor is o for o in outs):
                    outs.append(tensor)
            if not inputs or not (outs or unchanged):
                return
            attrs: dict[str, Any] = {"module": name, "inplace": bool(mutated)}
            if hasattr(module, "stride") and module_op_kind(module) in ("conv", "conv_transpose"):
                attrs["stride"] = _int_tuple(module.stride)
            # an unchanged pass-through is recorded but keeps the tensor's provenance (a dead node)
            self.add_node(
                name, module_op_kind(module), inputs, outs or unchanged, type(module).__name__, attrs, remap=bool(outs)
            )
        finally:
            self.paused -= 1

    def block_pre(self, name: str) -> None:
        if self.leaf_depth == 0 and self.active:
            self.scope.append(name)

    def block_post(self, name: str, output: Any) -> None:
        if self.leaf_depth != 0 or not self.active:
            return
        if self.scope and self.scope[-1] == name:
            self.scope.pop()
        self.paused += 1
        try:
            for tensor in self.tensors_in(output):
                nid = self.lookup(tensor)
                if nid is not None:
                    self.module_outputs.setdefault(nid, []).append(name)
        finally:
            self.paused -= 1

    # -- result -------------------------------------------------------------------------------
    def graph(self, output: Any) -> Graph:
        out_ids = []
        for tensor in self.tensors_in(output):
            nid = self.lookup(tensor)
            if nid is not None and nid not in out_ids:
                out_ids.append(nid)
        nodes = []
        for spec in self.nodes:
            attrs = dict(spec["attrs"])
            if spec["id"] in self.module_outputs:
                attrs["module_outputs"] = tuple(self.module_outputs[spec["id"]])
            nodes.append(Node(**{**spec, "attrs": attrs}))
        return Graph(nodes=tuple(nodes), input_ids=(nodes[0].id,) if nodes else (), output_ids=tuple(out_ids))


def _int_tuple(value: Any) -> tuple[int, ...] | int | None:
    if isinstance(value, int):
        return value
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        return None


def _strided_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, slice) and i.step not in (None, 1) for i in items)


def _dim_arg(args: tuple, kwargs: dict) -> int:
    if "dim" in kwargs:
        return int(kwargs["dim"])
    if "axis" in kwargs:
        return int(kwargs["axis"])
    if len(args) > 1 and isinstance(args[1], int):
        return int(args[1])
    return 0


def _register_hooks(model: Any, tracer: _Tracer, handles: list[Any]) -> None:
    """Hook leaf modules (one node each, internals skipped) and blocks (names only); fills ``handles``."""
    leaf_prefixes: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(p + ".") for p in leaf_prefixes):
            continue  # inside a leaf module
        if is_leaf_module(module):
            node_name = name or type(module).__name__
            handles.append(module.register_forward_pre_hook(lambda m, a, k: tracer.leaf_pre(m, a, k), with_kwargs=True))
            handles.append(
                module.register_forward_hook(
                    (lambda n: lambda m, a, k, out: tracer.leaf_post(n, m, a, k, out))(node_name), with_kwargs=True
                )
            )
            if not name:
                return  # the model itself is one layer: nothing below it is traced
            leaf_prefixes.append(name)
        elif name:
            handles.append(module.register_forward_pre_hook((lambda n: lambda m, a: tracer.block_pre(n))(name)))
            handles.append(module.register_forward_hook((lambda n: lambda m, a, out: tracer.block_post(n, out))(name)))


# ------------------------------------------------------------------------------------------------
# public entry points
# ------------------------------------------------------------------------------------------------


def _resolve_ids(spec: Any, graph: Graph) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec == "all":
            return list(graph.topological_order())
        spec = [spec]
    ids = list(spec(graph)) if callable(spec) else list(spec)
    for nid in ids:
        if nid not in graph:
            graph.node(nid)  # raises with close matches
    return list(dict.fromkeys(ids))


def _model_device_dtype(model: Any, device: Any) -> tuple[Any, Any]:
    import torch

    here = None
    for tensor in list(model.parameters()) + list(model.buffers()):
        here = tensor.device
        break
    dev = torch.device(device) if device is not None else (here or torch.device("cpu"))
    dtype = torch.float32
    for param in model.parameters():
        if param.is_floating_point():
            dtype = param.dtype
            break
    return dev, dtype


def _fit_mask(mask: Any, batch: int, spatial: tuple[int, ...]) -> np.ndarray:
    """``mask`` as ``(N, *spatial)`` float32 (:func:`convscope.core.objective.fit_mask`)."""
    from ...core.objective import fit_mask

    return fit_mask(mask, batch, spatial)


def objective_score(out: Any, target: int | None, mask: Any, *, what: str = "the objective output") -> Any:
    """Sum of the predicted class's logits (or channel ``target``) over the pixels in ``mask``.

    ``sum(W * out)`` with ``W`` from :func:`convscope.core.merges.skip_cotangent` (frozen from
    ``out``'s values), so its gradient is exactly the VJP the U-Net backends take.

    Args:
        out: ``(N, K, *spatial)`` (or ``(N, K)``) torch tensor, channels first.
        target: output channel to score; default: per position the largest logit (the predicted class),
            or channel 0 when ``K == 1``.
        mask: optional ``(*spatial)`` or ``(N, *spatial)`` region, nearest-resized to the output.
    """
    import torch

    from ...core.merges import skip_cotangent

    weights = skip_cotangent(_to_numpy(out), target, mask, what=what)
    return (out * torch.from_numpy(weights).to(device=out.device, dtype=out.dtype)).sum()


def torch_vjp(output: Any, inputs: list[Any], cotangent: np.ndarray) -> list[Any]:
    """ONE backward pass: ``d sum(W * output) / d inputs`` (None where unused); ``.grad`` untouched."""
    import torch

    usable = [i for i, t in enumerate(inputs) if t.requires_grad]
    grads: list[Any] = [None] * len(inputs)
    if not output.requires_grad or not usable:
        return grads
    weights = torch.from_numpy(np.ascontiguousarray(cotangent)).to(device=output.device, dtype=output.dtype)
    got = torch.autograd.grad(output, [inputs[i] for i in usable], grad_outputs=weights, allow_unused=True)
    for i, g in zip(usable, got):
        grads[i] = g
    return grads


def _to_numpy(tensor: Any) -> np.ndarray:
    import torch

    return np.ascontiguousarray(tensor.detach().to("cpu", dtype=torch.float32).numpy())


def trace_torch(
    model: Any,
    batch: np.ndarray,
    *,
    keep: KeepSpec = None,
    gradient_merges: Any = None,
    objective: str | Callable[[Graph], str] | None = None,
    target: int | None = None,
    mask: Any = None,
    device: Any = None,
    train_mode: bool = False,
) -> GraphCapture:
    """Trace ONE forward pass of an eager torch model into a :class:`~convscope.core.graph.Graph`.

    Args:
        model: a ``torch.nn.Module``; never changed (parameters, buffers, training flags,
            ``requires_grad``, hooks and ``.grad`` are restored, also when the forward raises).
        batch: ``(N, C, *spatial)`` float32 numpy input, channels first.
        keep: which node values to return: None (none), ``"all"``, an iterable of node ids, or a
            callable receiving the finished graph and returning node ids (values are held by
            reference during the pass, cloned before in-place ops).
        gradient_merges: merge node ids (or a callable ``graph -> ids``) for which to compute the
            per-input ``sum |x * dS/dx|`` with one backward pass (S: see ``target``/``mask``).
        objective: output node id (or callable ``graph -> id``) whose score ``S`` is differentiated;
            default the first output.
        target: output channel whose logits are summed; default the predicted class (per-pixel max
            over channels; channel 0 for a single-channel output).
        mask: optional ``(*spatial)`` or ``(N, *spatial)`` 0/1 array restricting the sum to a region
            (nearest-resized to the output's spatial size if needed).
        device: where to run (the model's device by default; the model is never moved).
        train_mode: run with training-mode layers (state restored afterwards).

    Returns:
        :class:`~convscope.core.graph.GraphCapture` (alias ``TorchTrace``): ``graph``, ``values``
        (node id -> ``(N, *shape)`` float32) and ``input_x_gradient`` (merge id -> one float per
        node input; NaN where no gradient reached the merge; empty without ``gradient_merges``).

    Raises:
        ConvscopeError: the forward pass failed (message says to check the input's size/channels),
            or a bad ``target``/``mask``; a request callable's own errors (e.g. ``NotAUNet``) propagate.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"trace_torch needs a torch.nn.Module, got {type(model).__name__}")
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper: trace the eager module
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedModelError(
            "TorchScript models cannot be traced op by op; load the eager (Python) model to analyse its dataflow"
        )
    from .._capture import check_batch

    arr = check_batch(batch)
    want_grad = gradient_merges is not None
    retain_all = want_grad or callable(keep) or keep == "all"
    fixed_keep = set() if keep is None or retain_all else set(_as_id_list(keep))
    retain: Callable[[str], bool] = (lambda _n: True) if retain_all else (lambda n: n in fixed_keep)
    dev, dtype = _model_device_dtype(model, device)
    mode_cls = _make_mode_class()

    with preserved_model_state(model, train_mode=train_mode):
        tracer = _Tracer(retain=retain, track_merges=want_grad)
        handles: list[Any] = []
        try:
            _register_hooks(model, tracer, handles)
            x = torch.from_numpy(np.ascontiguousarray(arr)).to(device=dev, dtype=dtype)
            if want_grad:
                x.requires_grad_(True)
            tracer.add_input(x)
            grad_ctx = torch.enable_grad() if want_grad else torch.no_grad()
            with grad_ctx:
                tracer.active = True
                try:
                    with mode_cls(tracer):
                        output = model(x)
                except ConvscopeError:
                    raise
                except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ConvscopeError(
                        f"the model's forward pass failed on an input of shape {tuple(arr.shape)}: {first}. "
                        "Check the image size and channels"
                    ) from exc
                finally:
                    tracer.active = False
        finally:
            for handle in handles:
                handle.remove()

        graph = tracer.graph(output)
        keep_ids = _resolve_ids(keep, graph)
        gradients: dict[str, tuple[float, ...]] = {}
        if want_grad:
            merges = _resolve_ids(gradient_merges, graph)
            if merges:
                obj_id = objective(graph) if callable(objective) else objective
                gradients = _merge_gradients(tracer, graph, output, merges, obj_id, x, target, mask)
        values: dict[str, np.ndarray] = {}
        for nid in keep_ids:
            if nid not in tracer.values:
                continue
            values[nid] = _to_numpy(tracer.values[nid])
        tracer.values.clear()
    return GraphCapture(graph=graph, values=values, input_x_gradient=gradients)


def _as_id_list(spec: Any) -> list[str]:
    if isinstance(spec, str):
        return [spec]
    return list(spec)


def _merge_gradients(
    tracer: _Tracer,
    graph: Graph,
    output: Any,
    merges: list[str],
    objective: str | None,
    x: Any,
    target: int | None,
    mask: Any,
) -> dict[str, tuple[float, ...]]:
    """One backward pass; per merge input ``sum |x_i * g_i|`` (NaN where no gradient arrived).

    The gradient at each merge output is caught by a pre-hook on the merge's ``grad_fn`` during
    ONE VJP (cotangent :func:`~convscope.core.merges.skip_cotangent`); the split into inputs and the
    sums are :func:`convscope.core.merges.merge_input_sums`.
    """
    from ...core.merges import merge_input_sums, nan_sums, skip_cotangent

    outputs = {}
    for tensor in tracer.tensors_in(output):
        nid = tracer.lookup(tensor)
        if nid is not None and nid not in outputs:
            outputs[nid] = tensor
    if not outputs:
        raise ConvscopeError("the model returned no tensor that depends on the input; nothing to differentiate")
    obj = objective if objective is not None else next(iter(outputs))
    if obj not in outputs:
        raise ConvscopeError(f"objective {obj!r} is not a model output; outputs: {', '.join(outputs)}")
    received: dict[str, Any] = {}
    handles = []
    for merge in merges:
        grad_fn = tracer.merge_grad_fn.get(merge)
        if grad_fn is None:
            continue

        def hook(grad_outputs: Any, _m: str = merge) -> None:
            if grad_outputs and grad_outputs[0] is not None:
                received[_m] = grad_outputs[0].detach()

        handles.append(grad_fn.register_prehook(hook))
    try:
        weights = skip_cotangent(_to_numpy(outputs[obj]), target, mask)
        torch_vjp(outputs[obj], [x], weights)
    finally:
        for handle in handles:
            handle.remove()
    result: dict[str, tuple[float, ...]] = {}
    for merge in merges:
        node = graph.node(merge)
        grad = received.get(merge)
        if grad is None or merge not in tracer.merge_info:
            result[merge] = nan_sums(len(node.inputs))
            continue
        values = [tracer.values.get(source) for source in node.inputs]
        result[merge] = merge_input_sums(
            _to_numpy(grad), [None if v is None else _to_numpy(v) for v in values], tracer.merge_info[merge]
        )
    return result
