"""Resolve a MODEL argument (``demo:NAME``, ``package.module:Factory``, or a file) into a model.

Nothing from a file is executed unless the caller passes ``trust=True``: state dicts load with
``torch.load(weights_only=True)`` or from safetensors. New file formats register a loader in
:data:`FILE_LOADERS` keyed by suffix.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .adapters.base import LoadedModel
from .errors import ModelLoadError, UntrustedFileError

__all__ = ["LoadedModel", "load_model", "parse_kwargs", "load_state_dict_file", "FILE_LOADERS"]


def parse_kwargs(kwargs: str | dict[str, Any] | None) -> dict[str, Any]:
    """``--kwargs '{"in_channels": 1}'`` -> dict; a dict passes through."""
    if kwargs is None or kwargs == "":
        return {}
    if isinstance(kwargs, dict):
        return dict(kwargs)
    try:
        value = json.loads(kwargs)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"--kwargs must be a JSON object such as '{{\"in_channels\": 1}}': {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"--kwargs must be a JSON object (a dict of keyword arguments), got {type(value).__name__}")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _wrong_format(path: Path, kind: str, expected: str) -> ModelLoadError:
    """One-line error for a file whose content is not what its suffix says."""
    from .adapters.sniff import describe_format, suffix_for

    if kind == "empty":
        return ModelLoadError(f"{path.name} is empty (0 bytes)")
    if kind == "corrupt-zip":
        return ModelLoadError(f"{path.name} is truncated or corrupt: its zip directory cannot be read; download or save it again")
    suffix = suffix_for(kind)
    hint = f"; rename it to {path.stem}{suffix} if that is what it is" if suffix and suffix != path.suffix.lower() else ""
    return ModelLoadError(f"{path.name} is not {expected}: it looks like {describe_format(kind)}{hint}")


def _torch_load(path: Path, *, trust: bool) -> Any:
    """``torch.load`` with ``weights_only=True``; full unpickling only with ``trust`` (never as a fallback)."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            raise UntrustedFileError(
                f"{path.name} holds pickled Python objects beyond plain tensors (for example a whole pickled model); "
                f"loading it would run code from the file. If you trust its source, pass --trust (trust=True)"
            ) from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:  # noqa: BLE001
            raise ModelLoadError(f"cannot load {path.name} even as a trusted pickle: {_first_line(exc2)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError, IndexError, TypeError) as exc:
        raise ModelLoadError(f"{path.name} is not a readable PyTorch file (truncated or corrupt?): {_first_line(exc)}") from None


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    import torch

    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net", "weights"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            if all(k.startswith("module.") for k in tensors):
                tensors = {k[len("module."):]: v for k, v in tensors.items()}
            return tensors
    raise ModelLoadError(f"{path.name} does not hold a state dict (a mapping of names to tensors)")


def load_state_dict_file(path: str | os.PathLike[str], *, trust: bool = False) -> Any:
    """Read weights from ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` without running code from it.

    The file's format is sniffed first (magic bytes and zip member names; nothing is unpickled),
    so a TorchScript archive, a ``.pt2`` program, a truncated archive or a file of another type
    gets one clear message before ``torch.load`` sees it.

    Returns:
        A state dict (name -> tensor), or (only with ``trust=True``) whatever module the file
        holds (a pickled whole model, a TorchScript module).

    Raises:
        UntrustedFileError: the file needs full unpickling or is TorchScript and ``trust`` is False.
        ModelLoadError: missing, empty, truncated, corrupt or not a weights file.
    """
    from .adapters.sniff import sniff_format

    file = Path(path)
    if not file.exists():
        raise ModelLoadError(f"weights file not found: {file}")
    if file.is_dir():
        raise ModelLoadError(f"{file} is a folder; give a weights file (.safetensors, .pt, .pth)")
    if file.stat().st_size == 0:
        raise ModelLoadError(f"{file.name} is empty (0 bytes)")
    kind = sniff_format(file)
    if file.suffix.lower() == ".safetensors":
        if kind != "safetensors":
            raise _wrong_format(file, kind, "a safetensors file")
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelLoadError("reading .safetensors needs the safetensors package: pip install safetensors") from None
        try:
            return load_file(str(file), device="cpu")
        except Exception as exc:  # noqa: BLE001 - any parser failure is a corrupt file
            raise ModelLoadError(f"{file.name} is not a valid safetensors file (truncated or corrupt?): {_first_line(exc)}") from None
    if kind == "torchscript":
        from .adapters.torch.files import load_torchscript_file

        return load_torchscript_file(file, trust).model
    if kind == "safetensors":
        raise _wrong_format(file, kind, "a PyTorch pickle file")
    if kind not in ("torch-zip", "torch-legacy", "pickle", "zip"):
        raise _wrong_format(file, kind, "a PyTorch weights file")
    obj = _torch_load(file, trust=trust)
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj
    return _unwrap_state_dict(obj, file)


def _apply_state_dict(model: Any, state: dict[str, Any], path: Path) -> None:
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0]
        raise ModelLoadError(f"the weights in {path.name} do not fit the model: {detail}") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) e.g. {', '.join(unexpected[:3])}")
        raise ModelLoadError(
            f"the weights in {path.name} do not match the model built by the factory: {'; '.join(parts)}. "
            f"Check --kwargs (channels, features) against how the weights were trained"
        )


def _load_factory(spec: str, kwargs: dict[str, Any]) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ModelLoadError(f"a model factory is written package.module:Callable, not {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"cannot import {module_name!r} ({exc}); run from the folder that holds it or install it (pip install -e .)"
        ) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            from .errors import close_matches

            near = close_matches(part, names)
            raise ModelLoadError(
                f"{module_name} has no attribute {attr!r}" + (f"; did you mean: {', '.join(near)}?" if near else "")
            )
        target = getattr(target, part)
    if not callable(target):
        raise ModelLoadError(f"{spec} is not callable; give a class or function that returns a model")
    try:
        model = target(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's code: one line naming its error, full chain kept
        shown = json.dumps(kwargs) if kwargs else ""
        raise ModelLoadError(
            f"{spec}({'**' + shown if shown else ''}) raised {type(exc).__name__}: {_first_line(exc)}"
            f"{'. Check --kwargs' if kwargs or isinstance(exc, TypeError) else ''}"
            f" (run with --traceback to see where)"
        ) from exc
    if not _is_model(model):
        raise ModelLoadError(
            f"{spec} returned a {type(model).__module__}.{type(model).__name__}, not a model; the factory must return "
            f"a torch.nn.Module, a Keras 3 model or an ONNX ModelProto"
        )
    return model


def _is_model(obj: Any) -> bool:
    """Whether ``obj`` is something :func:`convscope.adapters.adapter_for` accepts (only loaded frameworks checked)."""
    from .adapters import ModelAdapter

    if isinstance(obj, ModelAdapter):
        return True
    torch, keras, onnx = (sys.modules.get(name) for name in ("torch", "keras", "onnx"))
    return bool(
        (torch is not None and isinstance(obj, (torch.nn.Module, torch.export.ExportedProgram)))
        or (keras is not None and isinstance(obj, keras.Model))
        or (onnx is not None and isinstance(obj, onnx.ModelProto))
    )


_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

FileLoader = Callable[[Path, bool], LoadedModel]
FILE_LOADERS: dict[str, FileLoader] = {}
"""Suffix (lower case, with dot) -> loader(path, trust). Later formats (.keras, .onnx, .pt2) register here."""


def _load_torch_file(path: Path, trust: bool) -> LoadedModel:
    """MODEL given as ``.pt``/``.pth``/``.bin``/``.safetensors``: a TorchScript archive or a pickled model
    (both only with ``trust``); a plain state dict gets a message on how to give its architecture."""
    from .adapters.sniff import sniff_format

    if path.suffix.lower() != ".safetensors" and sniff_format(path) == "torchscript":
        from .adapters.torch.files import load_torchscript_file

        return LoadedModel(model=load_torchscript_file(path, trust), name=path.name, info={"format": "torchscript"})
    obj = load_state_dict_file(path, trust=trust)
    import torch

    if isinstance(obj, torch.nn.Module):
        return LoadedModel(model=obj, name=path.name, info={"trusted_pickle": True})
    raise ModelLoadError(
        f"{path.name} holds weights only (a state dict), not an architecture; give the code that builds the model "
        f"and the weights: convscope ... package.module:Factory --weights {path}"
    )


def _lazy(module: str, function: str) -> FileLoader:
    """A loader that imports its framework only when a file of its kind is opened."""

    def load(path: Path, trust: bool) -> LoadedModel:
        return getattr(importlib.import_module(module, __package__), function)(path, trust)

    return load


FILE_LOADERS.update(
    {
        ".pt": _load_torch_file,
        ".pth": _load_torch_file,
        ".bin": _load_torch_file,
        ".safetensors": _load_torch_file,
        ".keras": _lazy(".adapters.keras.files", "load_keras_file"),
        ".h5": _lazy(".adapters.keras.files", "load_keras_file"),
        ".hdf5": _lazy(".adapters.keras.files", "load_keras_file"),
        ".onnx": _lazy(".adapters.onnx.files", "load_onnx_file"),
        ".pt2": _lazy(".adapters.torch.export", "load_pt2_file"),
    }
)


def _plugin_loader(suffix: str) -> FileLoader | None:
    """The file loader an adapter plugin (entry point ``convscope.adapters``) offers for ``suffix``."""
    if not suffix:
        return None
    from .adapters.registry import plugin_for_suffix

    plugin = plugin_for_suffix(suffix)
    return plugin.load_file if plugin is not None else None


def load_model(
    spec: Any,
    *,
    kwargs: str | dict[str, Any] | None = None,
    weights: str | os.PathLike[str] | None = None,
    trust: bool = False,
    device: str | None = None,
) -> LoadedModel:
    """Load the model named by ``spec``.

    Args:
        spec: ``"demo:cnn"`` / ``"demo:unet"``, ``"package.module:Factory"``, a model file path, or
            a model object (returned as is).
        kwargs: keyword arguments for the factory (dict or JSON text).
        weights: a state dict file (``.safetensors``, ``.pt``, ``.pth``) loaded into the factory's model.
        trust: allow formats that can execute code from the file (pickled whole models...).
        device: place the loaded model on this device (``cpu``, ``cuda``, ``mps``).
    """
    if not isinstance(spec, (str, os.PathLike)):
        return LoadedModel(model=spec, name=type(spec).__name__)
    text = os.fspath(spec)
    loaded: LoadedModel
    if text.startswith("demo:"):
        from .demo import DEMO_NAMES, demo_sample, load_demo

        name = text[len("demo:"):]
        if parse_kwargs(kwargs) or weights is not None:
            given = "--kwargs" if parse_kwargs(kwargs) else "--weights"
            raise ModelLoadError(f"{given} applies to package.module:Factory models; demo:{name} is built and trained "
                                 f"as it is, so leave {given} out")
        if name not in DEMO_NAMES:
            raise ModelLoadError(f"unknown demo model {name!r}; choose one of: {', '.join('demo:' + n for n in DEMO_NAMES)}")
        demo = load_demo(name)
        loaded = LoadedModel(
            model=demo.model,
            name=text,
            input_shape=tuple(demo.input_shape),
            sample=functools.partial(demo_sample, name),  # picklable (Ray workers, multiprocessing)
            info={"task": demo.task, "description": demo.description},
        )
    else:
        path = Path(text)
        suffix = path.suffix.lower()
        if _FACTORY_RE.match(text) and not path.exists():
            model = _load_factory(text, parse_kwargs(kwargs))
            loaded = LoadedModel(model=model, name=text)
        elif path.exists() or suffix in FILE_LOADERS or os.sep in text or _plugin_loader(suffix) is not None:
            if not path.exists():
                raise ModelLoadError(f"model file not found: {path}")
            if path.is_dir():
                raise ModelLoadError(f"{path} is a folder; give a model file or package.module:Factory")
            if path.stat().st_size == 0:
                raise ModelLoadError(f"{path.name} is empty (0 bytes)")
            loader = FILE_LOADERS.get(suffix) or _plugin_loader(suffix)
            if loader is None:
                raise ModelLoadError(
                    f"{path.name}: unknown model file type {suffix or '(no extension)'!r}; supported: "
                    f"{', '.join(sorted(FILE_LOADERS))}, demo:NAME or package.module:Factory"
                )
            loaded = loader(path, trust)
        else:
            raise ModelLoadError(
                f"cannot tell what model {text!r} is: give demo:cnn, demo:unet, package.module:Factory, or a model file"
            )
    if weights is not None:
        _load_weights_into(loaded, Path(weights), trust)
    if device is not None:
        _to_device(loaded, device)
    return loaded


def _load_weights_into(loaded: LoadedModel, path: Path, trust: bool) -> None:
    import torch

    if not isinstance(loaded.model, torch.nn.Module):
        raise ModelLoadError("--weights applies to PyTorch models built by a factory")
    obj = load_state_dict_file(path, trust=trust)
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    _apply_state_dict(loaded.model, obj, path)


def _to_device(loaded: LoadedModel, device: str) -> None:
    from .adapters.torch.adapter import is_torch_module, resolve_device

    if is_torch_module(loaded.model):
        loaded.model.to(resolve_device(device))
    elif device not in ("cpu", None):
        raise ModelLoadError(f"--device {device} is only supported for PyTorch models")
