"""PyTorch adapter: layers, canonical kernels and one-pass activation capture for ``nn.Module``.

torch is imported only here (and in the other ``torch_*`` modules), lazily.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dataclasses import dataclass, replace

import numpy as np

from ...core.kernels import KernelBank, transposed_to_canonical
from ...core.layers import LayerInfo
from ...errors import ConvscopeError, LayerNotFoundError, close_matches
from .._capture import call_key
from ..base import ActivationCallback, CaptureResult, InputSpec, ModelAdapter
from .state import host_copy, preserved_model_state, tensors_digest

__all__ = ["TorchAdapter", "is_torch_module", "resolve_device"]

NESTED_BLOCK = "concurrent_captures blocks do not nest; capture inside the one that is open"
TRAIN_IN_BLOCK = "a train-mode capture cannot run inside concurrent_captures (it holds eval mode)"


def is_torch_module(obj: Any) -> bool:
    """True if ``obj`` is a ``torch.nn.Module`` (without importing torch when it is not loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def resolve_device(device: str | None) -> Any:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` -> ``torch.device``, checking it is available."""
    import torch

    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConvscopeError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConvscopeError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConvscopeError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConvscopeError(f"device {device!r} was asked for but MPS is not available here; use --device cpu")
    return dev


def _kind_of(module: Any) -> str:
    """Layer kind from THE torch kind table (:mod:`.kinds`)."""
    from .kinds import layer_kind_of_module

    return layer_kind_of_module(module)


def _tuple(value: Any) -> tuple[int, ...] | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


class TorchAdapter(ModelAdapter):
    """Wraps a ``torch.nn.Module``. The module is never changed (see ``preserved_model_state``).

    Args:
        model: any ``nn.Module``.
        device: run on this device. ``None`` runs where the model's parameters live. Naming a
            device other than the model's raises (convscope does not move your model; ``model.to``
            it yourself or let the CLI loader place it).
    """

    framework = "torch"
    streams_activations = True  # forward hooks hand each activation over as it is produced

    def __init__(self, model: Any, device: str | None = None) -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"TorchAdapter needs a torch.nn.Module, got {type(model).__name__}")
        self._model: Any = model  # eager, compiled or scripted module (TorchScriptAdapter)
        here = self._model_device()
        wanted = resolve_device(device)
        if wanted is not None and here is not None and torch.device(wanted).type != here.type:
            raise ConvscopeError(
                f"the model's parameters are on {here} but device={device!r} was asked for; "
                f"move the model first (model.to({device!r})) — convscope never moves your model"
            )
        self.device = wanted or here or torch.device("cpu")
        self._layers: list[LayerInfo] | None = None
        self._hooks: _CaptureHooks | None = None  # set inside concurrent_captures

    @property
    def model(self) -> Any:
        return self._model

    def weights_digest(self) -> str:
        """A digest of every weight (see :class:`~convscope.adapters.base.SupportsWeightsDigest`)."""
        return tensors_digest(self._model.state_dict().items())

    # -- introspection -------------------------------------------------------------------------
    def _model_device(self) -> Any:
        for tensor in list(self._model.parameters()) + list(self._model.buffers()):
            return tensor.device
        return None

    def _compute_dtype(self) -> Any:
        import torch

        for param in self._model.parameters():
            if param.is_floating_point():
                return param.dtype
        return torch.float32

    def _modules(self) -> dict[str, Any]:
        return {name: module for name, module in self._model.named_modules() if name}

    def layers(self) -> list[LayerInfo]:
        if self._layers is None:
            infos = []
            for name, module in self._modules().items():
                infos.append(self._describe(name, module))
            self._layers = infos
        return list(self._layers)

    def _describe(self, name: str, module: Any) -> LayerInfo:
        import torch.nn as nn

        kind = _kind_of(module)
        is_leaf = len(module._modules) == 0
        params = sum(p.numel() for p in module.parameters(recurse=not is_leaf) if not _is_lazy(p))
        base = LayerInfo(name=name, kind=kind, type_name=type(module).__name__, params=int(params), is_leaf=is_leaf)
        if kind in ("conv", "conv_transpose"):
            return replace(
                base,
                in_channels=int(module.in_channels),
                out_channels=int(module.out_channels),
                kernel_size=_tuple(module.kernel_size),  # type: ignore[arg-type]
                stride=_tuple(module.stride),  # type: ignore[arg-type]
                padding=_tuple(module.padding),
                dilation=_tuple(module.dilation),  # type: ignore[arg-type]
                groups=int(module.groups),
                transposed=kind == "conv_transpose",
            )
        if isinstance(module, nn.Linear):
            return replace(base, in_channels=int(module.in_features), out_channels=int(module.out_features))
        if isinstance(module, nn.modules.batchnorm._NormBase):
            return replace(base, in_channels=int(module.num_features), out_channels=int(module.num_features))
        if kind == "pool" and hasattr(module, "kernel_size"):
            return replace(
                base,
                kernel_size=_tuple(module.kernel_size),  # type: ignore[arg-type]
                stride=_tuple(module.stride),  # type: ignore[arg-type]
                padding=_tuple(getattr(module, "padding", None)),
                dilation=_tuple(getattr(module, "dilation", None)),  # type: ignore[arg-type]
            )
        return base

    def input_spec(self) -> InputSpec:
        import torch

        for module in self._model.modules():
            if isinstance(module, torch.nn.modules.conv._ConvNd):
                return InputSpec(
                    channels=int(module.in_channels) or None,  # 0 for a lazy conv not yet run
                    spatial_dims=len(module.kernel_size),
                    dtype=str(self._compute_dtype()).replace("torch.", ""),
                )
        return InputSpec(channels=None, spatial_dims=None, dtype=str(self._compute_dtype()).replace("torch.", ""))

    def unet_backend(self) -> Any:
        """:class:`~convscope.adapters.base.ProvidesUNetBackend`: the op-by-op tracer of :mod:`.graph`."""
        from .unet import TorchUNetBackend

        return TorchUNetBackend(self._model, device=self.device)

    def _checked_modules(self, layers: Sequence[str]) -> dict[str, Any]:
        """All named modules, after checking every name in ``layers`` exists (else close-match error)."""
        modules = self._modules()
        for name in layers:
            if name not in modules:
                self._module(name)  # raises with close matches
        return modules

    def _module(self, name: str) -> Any:
        modules = self._modules()
        if name not in modules:
            near = close_matches(name, modules)
            raise LayerNotFoundError(
                f"no layer named {name!r}" + (f"; did you mean: {', '.join(near)}?" if near else "")
            )
        return modules[name]

    # -- kernels -------------------------------------------------------------------------------
    def kernel(self, layer: str) -> KernelBank:
        import torch

        module = self._module(layer)
        if not isinstance(module, torch.nn.modules.conv._ConvNd):
            raise ConvscopeError(f"layer {layer!r} is a {type(module).__name__}, not a convolution; it has no kernels")
        weight = module.weight
        if _is_lazy(weight):
            raise ConvscopeError(
                f"layer {layer!r} is a lazy convolution whose weights do not exist yet; run one forward pass first"
            )
        w = host_copy(weight)
        bias = None if module.bias is None else host_copy(module.bias)
        groups = int(module.groups)
        if module.transposed:  # torch stores (in, out // groups, *k)
            w = transposed_to_canonical(w, groups)
        return KernelBank(
            layer=layer,
            weights=w,
            groups=groups,
            transposed=bool(module.transposed),
            dilation=tuple(int(d) for d in module.dilation),
            type_name=type(module).__name__,
            source_dtype=str(weight.dtype).replace("torch.", ""),
            bias=bias,
        )

    # -- activations ---------------------------------------------------------------------------
    def to_tensor(self, batch: np.ndarray) -> Any:
        """``(N, C, *spatial)`` numpy -> tensor on the model's device in its compute dtype."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(batch)).to(device=self.device, dtype=self._compute_dtype())

    @property
    def computes_on_cpu(self) -> bool:
        """True when the forward pass runs on this machine's CPU cores (not an accelerator)."""
        return bool(self.device.type == "cpu")

    @contextlib.contextmanager
    def concurrent_captures(
        self, layers: Sequence[str], threads: int | None = None, *, views: bool = False
    ) -> Iterator[int]:
        """A block inside which :meth:`capture` of ``layers`` may run on several threads at once.

        The model's state is saved and put in eval mode once for the block (restored exactly in
        ``finally``, also when the block raises), one hook per layer is registered once and hands
        each thread's activations to that thread's own capture, and on CPU torch computes each
        forward pass on ``max(1, intra-op threads // threads)`` threads (restored afterwards). The
        count is fixed for the block, never switched by timing (a convolution's float result may
        depend on it): captures that run at once then share the cores instead of spinning OpenMP
        threads against each other. Threads started inside the block pick the count up (torch sets
        it per thread at the thread's first operation).

        Args:
            layers: every layer the block's captures may ask for.
            threads: how many captures will run at once; None: one per torch intra-op thread
                (``torch.get_num_threads()``, so each forward pass runs on one thread).
            views: hand ``on_activation`` a read-only view of the layer's output, valid only until
                the callback returns (a callback that reduces the array at once saves the copy),
                instead of a copy it owns. Outputs that are not float32, C-contiguous and on the
                host are still copied.

        Yields how many captures may run at once.
        """
        if self._hooks is not None:
            raise ConvscopeError(NESTED_BLOCK)
        modules = self._checked_modules(layers)
        with preserved_model_state(self._model), _CaptureHooks(modules, layers, views=views) as hooks, \
                self._split_threads(threads) as at_once:
            self._hooks = hooks
            try:
                yield at_once
            finally:
                self._hooks = None

    @contextlib.contextmanager
    def _split_threads(self, threads: int | None) -> Iterator[int]:
        """Torch's intra-op threads split between ``threads`` captures (None: one each) for the block."""
        import torch

        before = torch.get_num_threads()
        at_once = before if threads is None else max(1, int(threads))
        per_capture = max(1, before // at_once) if self.computes_on_cpu else before
        if per_capture != before:
            torch.set_num_threads(per_capture)
        try:
            yield at_once
        finally:
            if per_capture != before:
                torch.set_num_threads(before)

    def capture(
        self,
        batch: np.ndarray,
        layers: Sequence[str],
        *,
        on_activation: ActivationCallback | None = None,
        train_mode: bool = False,
    ) -> CaptureResult:
        hooks = self._hooks
        if hooks is not None:  # inside concurrent_captures: its hooks and saved state serve this thread
            if train_mode:
                raise ConvscopeError(TRAIN_IN_BLOCK)
            return hooks.run(self, batch, layers, on_activation)
        modules = self._checked_modules(layers)
        with preserved_model_state(self._model, train_mode=train_mode), _CaptureHooks(modules, layers) as own:
            return own.run(self, batch, layers, on_activation)

    def trace(self, batch: np.ndarray, **kwargs: Any) -> Any:
        """Dataflow trace of one forward pass (see :mod:`convscope.adapters.torch.graph`)."""
        from .graph import trace_torch

        return trace_torch(self._model, batch, device=self.device, **kwargs)

    def gradients(
        self, batch: np.ndarray, layers: Sequence[str], objective: Any, *, with_input: bool = False
    ) -> Any:
        """ONE forward + ONE backward pass: activations at ``layers`` and ``d score / d activation``.

        See :class:`convscope.adapters.base.SupportsGradients`. Forward hooks copy each hooked layer's
        output and pin its autograd edge (``get_gradient_edge``) at once, so in-place ops after the layer
        alter neither, and the model's own tensors are left alone (no clone handed on); a module
        called several times gives ``name``, ``name#1``...; ``torch.autograd.grad`` on exactly those edges
        (never ``.backward()``: parameters' ``.grad`` untouched) with cotangent ``objective.cotangent``
        of the selected output. Runs with gradients on even under ``torch.no_grad``/``inference_mode``.
        When the selected output is the result of a final Sigmoid/Softmax/LogSoftmax (module or
        functional) and ``objective.from_logits``, the gradient starts from that op's input
        (``output_name`` says so). A layer the target does not depend on gets an all-zero gradient.
        The user's own exceptions from ``forward`` propagate unchanged.
        """
        return _torch_gradients(self, batch, layers, objective, with_input=with_input)


def run_forward(call: Callable[[], Any], shape: tuple[int, ...]) -> Any:
    """Run ``call()`` (the model's forward pass on a batch of ``shape``) for capture and gradients alike.

    Framework errors (shape mismatches, a forward that takes several inputs) become one
    ``ConvscopeError`` line that says what to do; the user's own exception classes propagate as they are.
    """
    try:
        return call()
    except ConvscopeError:
        raise
    except TypeError as exc:
        if "positional argument" in str(exc) or "required" in str(exc):
            raise ConvscopeError(
                f"the model's forward takes more than one input ({str(exc).strip().splitlines()[0]}); "
                f"convscope feeds one image batch: wrap the model in a module whose forward(x) calls it"
            ) from exc
        raise ConvscopeError(f"the model's forward pass failed: {_first_line(exc)}") from exc
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ConvscopeError(
            f"the model's forward pass failed on an input of shape {shape}: {_first_line(exc)}. "
            f"Check the image size and channels (--size, or a different image)"
        ) from exc


class _CaptureHooks:
    """One forward hook per captured layer, shared by the captures of every thread.

    A context manager: hooks are registered on entry and removed in ``finally``. Each hook hands the
    layer's output to the capture running on the hook's thread (:meth:`run` sets it up), and does
    nothing on threads without one, so captures of several threads never see each other's
    activations. A module called several times gives ``name``, ``name#1``... per capture.
    """

    def __init__(self, modules: dict[str, Any], layers: Sequence[str], *, views: bool = False) -> None:
        self._modules = modules
        self._layers = tuple(dict.fromkeys(layers))
        self._views = views
        self._local = threading.local()
        self._handles: list[Any] = []

    def __enter__(self) -> _CaptureHooks:
        try:
            for name in self._layers:
                self._handles.append(self._modules[name].register_forward_hook(self._hook(name)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            run = getattr(self._local, "run", None)
            if run is None or name not in run.layers:
                return
            tensor = _first_tensor(output)
            if tensor is None:
                return
            count = run.calls.get(name, 0)
            run.calls[name] = count + 1
            key = call_key(name, count)
            result = run.result
            result.dtypes[key] = str(tensor.dtype).replace("torch.", "")
            if run.on_activation is not None and self._views:
                view = _read_only_view(tensor)
                result.shapes[key] = tuple(view.shape)
                run.on_activation(key, view)
                return
            # copy inside the hook: later in-place ops (ReLU(inplace=True)) must not reach it
            host = host_copy(tensor)
            result.shapes[key] = tuple(host.shape)
            if run.on_activation is not None:
                run.on_activation(key, host)
            else:
                result.activations[key] = host

        return hook

    def run(
        self, adapter: TorchAdapter, batch: np.ndarray, layers: Sequence[str], on_activation: ActivationCallback | None
    ) -> CaptureResult:
        """ONE forward pass of ``adapter``'s model on ``batch`` on this thread, capturing ``layers``."""
        import torch

        wanted = set(layers)
        missing = sorted(wanted - set(self._layers))
        if missing:
            raise ConvscopeError(
                f"layer {missing[0]} is not among the layers this concurrent_captures block hooked; "
                "open the block with every layer its captures ask for"
            )
        if getattr(self._local, "run", None) is not None:
            raise ConvscopeError("a capture is already running on this thread (a capture inside on_activation?)")
        result = CaptureResult()
        self._local.run = _ThreadCapture(layers=wanted, calls={}, result=result, on_activation=on_activation)
        try:
            with torch.no_grad():  # grad mode is per thread
                inputs = adapter.to_tensor(batch)
                output = run_forward(lambda: adapter._model(inputs), tuple(batch.shape))
                out_tensor = _first_tensor(output)
                if out_tensor is not None:
                    result.output = host_copy(out_tensor)
        finally:
            self._local.run = None
        return result


@dataclass
class _ThreadCapture:
    """The capture running on one thread: what its hooks collect into."""

    layers: set[str]
    calls: dict[str, int]
    result: CaptureResult
    on_activation: ActivationCallback | None


def _read_only_view(tensor: Any) -> np.ndarray:
    """:func:`_host_view` of ``tensor``, made read-only when it shares the tensor's memory (a copy
    stays writeable: the callee owns it)."""
    host = _host_view(tensor)
    if _is_host_float32(tensor.detach()):
        host = host.view()
        host.flags.writeable = False
    return host


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _is_lazy(param: Any) -> bool:
    from torch.nn.parameter import UninitializedParameter

    return isinstance(param, UninitializedParameter)


def _first_tensor(output: Any) -> Any:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (list, tuple)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(output, dict):
        for item in output.values():
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


# ------------------------------------------------------------------------------------------------
# gradients (SupportsGradients): ONE forward + ONE vector-Jacobian product
# ------------------------------------------------------------------------------------------------

_SQUASH_FUNCS = ("sigmoid", "softmax", "log_softmax")
_SQUASH_TITLE = {"sigmoid": "Sigmoid", "softmax": "Softmax", "log_softmax": "LogSoftmax"}


def _grad_mode_class() -> type:
    """A ``TorchFunctionMode`` for :meth:`TorchAdapter.gradients`, doing two things while the model runs.

    - It remembers, per result tensor, the input of every sigmoid/softmax call (``nn.Sigmoid``,
      ``torch.sigmoid``, ``Tensor.sigmoid``, ``F.softmax``... all pass through ``__torch_function__``),
      so a model whose returned tensor is such a result can be differentiated from the logits.
    - It protects the hooked layers' outputs: just before an op that may write in place into a held
      tensor's storage (``ReLU(inplace=True)``, ``+=``, ``x[...] = ``, ``out=``), the tensor's value is
      copied to the host. Untouched outputs are never copied (on CPU the host array then shares the
      tensor's memory: no extra memory for the activations).
    """
    import weakref

    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_leaves

    from .graph import _maybe_inplace

    class _GradMode(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: dict[int, tuple[Any, Any, str]] = {}
            self.held: dict[str, tuple[Any, int]] = {}  # key -> (tensor, version when hooked), not yet copied
            self.copied: dict[str, np.ndarray] = {}

        def hold(self, key: str, tensor: Any) -> None:
            self.held[key] = (tensor, _version(tensor))

        def protect(self, args: tuple, kwargs: dict) -> None:
            ptrs = {_storage_ptr(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
            for key, (tensor, _v) in list(self.held.items()):
                if _storage_ptr(tensor) in ptrs:
                    self.copied[key] = host_copy(tensor)
                    del self.held[key]

        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            if self.held and _maybe_inplace(func, args, kwargs):
                self.protect(args, kwargs)
            result = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            if name in _SQUASH_FUNCS and args:
                if isinstance(result, torch.Tensor) and isinstance(args[0], torch.Tensor):
                    self.seen[id(result)] = (weakref.ref(result), args[0], name)
            return result

        def logits_of(self, tensor: Any) -> tuple[Any, str] | None:
            entry = self.seen.get(id(tensor))
            if entry is None or entry[0]() is not tensor:
                return None
            return entry[1], entry[2]

        def values(self) -> dict[str, np.ndarray]:
            """Every held output's value as it was when its layer produced it."""
            out = dict(self.copied)
            for key, (tensor, version) in self.held.items():
                if _version(tensor) != version:
                    raise ConvscopeError(
                        f"the output of layer {key!r} was changed in place by an operation convscope could not see "
                        "(a custom/C++ op?); choose the layer after that operation"
                    )
                out[key] = _host_view(tensor)
            return out

    return _GradMode


def _version(tensor: Any) -> int:
    try:
        return int(tensor._version)
    except (RuntimeError, AttributeError):  # inference tensors have no version counter
        return -1


def _storage_ptr(tensor: Any) -> int:
    try:
        return int(tensor.untyped_storage().data_ptr())
    except (RuntimeError, AttributeError):
        return -1


def _host_view(tensor: Any) -> np.ndarray:
    """The tensor as a float32 host array, sharing its memory when it already is one (CPU, float32, contiguous)."""
    t = tensor.detach()
    return t.numpy() if _is_host_float32(t) else host_copy(t)


def _is_host_float32(t: Any) -> bool:
    """True when ``t.numpy()`` is the tensor's own memory in the float32 C layout convscope hands on."""
    import torch

    return bool(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() and not t.is_conj())


def named_outputs(output: Any) -> dict[str, Any]:
    """The model's returned tensors by name: ``output``, ``output[i]``, ``output['key']`` (one level deep)."""
    import torch

    if isinstance(output, torch.Tensor):
        return {"output": output}
    found: dict[str, Any] = {}
    if isinstance(output, (list, tuple)):
        for i, item in enumerate(output):
            tensor = _first_tensor(item)
            if tensor is not None:
                found[f"output[{i}]"] = tensor
    elif isinstance(output, dict):
        for key, item in output.items():
            tensor = _first_tensor(item)
            if tensor is not None:
                found[f"output[{key!r}]"] = tensor
    return found


def _torch_gradients(
    adapter: TorchAdapter,
    batch: np.ndarray,
    layers: Sequence[str],
    objective: Any,
    *,
    with_input: bool = False,
) -> Any:
    import torch
    from torch.autograd.graph import get_gradient_edge

    from ...core.objective import select_output
    from ..base import LayerGradients

    model = adapter.model
    # "name" keeps every call of the module (name, name#1, ...), as capture does; "name#k" keeps only the
    # calls asked for (less memory when one call of a shared module is wanted)
    only: dict[str, set[int]] = {}
    bases: list[str] = []
    for layer in dict.fromkeys(layers):
        base, sep, k = layer.rpartition("#")
        if sep and k.isdigit() and base:
            only.setdefault(base, set()).add(int(k))
            bases.append(base)
        else:
            only.setdefault(layer, set()).add(-1)
            bases.append(layer)
    modules = adapter._checked_modules(bases)
    wanted = list(dict.fromkeys(layers))
    edges: dict[str, Any] = {}
    calls: dict[str, int] = {}

    def make_hook(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is None or not tensor.is_floating_point():
                return
            count = calls.get(name, 0)
            calls[name] = count + 1
            key = name if count == 0 else f"{name}#{count}"
            if -1 not in only[name] and count not in only[name]:
                return
            # the autograd edge of THIS version of the tensor, pinned now: a later in-place op (ReLU(inplace=True),
            # +=) makes a new version but cannot change it; the value is copied by the mode just before such an op.
            # The model's own tensors are left alone (no clone is handed on): it computes what it does without us
            mode.hold(key, tensor)
            edges[key] = get_gradient_edge(tensor) if tensor.requires_grad else None

        return hook

    handles: list[Any] = []
    arr = np.asarray(batch)
    mode = _grad_mode_class()()
    with preserved_model_state(model), torch.inference_mode(False), torch.enable_grad():
        try:
            for name in dict.fromkeys(bases):
                handles.append(modules[name].register_forward_hook(make_hook(name)))
            # our own leaf tensor (a fresh clone, never an inference tensor): every activation then has a
            # grad_fn even when the user froze all parameters; parameters are never differentiated
            x = adapter.to_tensor(arr).clone().requires_grad_(True)
            with mode:
                output = run_forward(lambda: model(x), tuple(arr.shape))
        finally:
            for handle in handles:
                handle.remove()
        outputs = named_outputs(output)
        shapes = {k: np.broadcast_to(np.float32(0), tuple(v.shape)) for k, v in outputs.items()}
        chosen = select_output(shapes, objective)
        selected = outputs[chosen]
        output_name = chosen
        if getattr(objective, "from_logits", True):
            found = mode.logits_of(selected)
            if found is not None:
                selected, op = found
                output_name = f"{chosen} (input of the final {_SQUASH_TITLE[op]})"
        mode.seen.clear()
        values = mode.values()
        mode.held.clear()
        out_host = host_copy(selected)
        weights = np.asarray(objective.cotangent(out_host), dtype=np.float32)
        if weights.shape != out_host.shape:
            raise ConvscopeError(
                f"the objective's cotangent has shape {weights.shape} but the output {output_name} has {out_host.shape}"
            )
        missing = [name for name in wanted if (name[:-2] if name.endswith("#0") else name) not in values]
        if missing:
            raise ConvscopeError(
                f"layer {missing[0]!r} did not run (or returned no float tensor) in the forward pass; "
                "choose a layer the model calls on this input"
            )
        keys = [k for k in edges if k in values]  # call order
        targets = [edges[k] for k in keys] + ([x] if with_input else [])
        grads: list[Any] = [None] * len(targets)
        if selected.requires_grad:
            w = torch.from_numpy(weights).to(device=selected.device, dtype=selected.dtype)
            diff = [i for i, t in enumerate(targets) if t is not None]
            if diff:
                got = torch.autograd.grad(selected, [targets[i] for i in diff], grad_outputs=w, allow_unused=True)
                for i, g in zip(diff, got):
                    grads[i] = g
        activations = {k: values[k] for k in keys}
        gradients = {
            k: (_host_view(g) if g is not None else np.zeros_like(activations[k])) for k, g in zip(keys, grads)
        }
        input_gradient = None
        if with_input:
            g = grads[-1]
            input_gradient = _host_view(g) if g is not None else np.zeros(arr.shape, dtype=np.float32)
        edges.clear()
    n = out_host.shape[0]
    score = (weights.reshape(n, -1).astype(np.float64) * out_host.reshape(n, -1)).sum(axis=1).astype(np.float32)
    return LayerGradients(
        activations=activations,
        gradients=gradients,
        output=out_host,
        output_name=output_name,
        score=score,
        cotangent=weights,
        input_gradient=input_gradient,
    )
