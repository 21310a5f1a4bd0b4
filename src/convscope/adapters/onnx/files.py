"""Reading ``.onnx`` files safely: nothing runs, and no path named by the file is opened unchecked.

External-data locations are checked (no absolute paths, no ``..``, no symlinks, no hard links, must
stay inside the model's folder) before any byte of them is read, and the data is then read by
convscope itself, so neither onnx nor onnxruntime ever opens a path named by the file.
onnx is imported lazily inside functions.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ModelLoadError
from .._capture import first_line

if TYPE_CHECKING:
    from ..base import LoadedModel

__all__ = ["load_onnx_file", "read_onnx_model", "resolve_external_data", "check_onnx_model"]


def _walk_graph_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of ``graph`` and its subgraphs (initializers, sparse, Constant attributes)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            if attr.HasField("g"):
                yield from _walk_graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _walk_graph_tensors(sub)


def _walk_model_tensors(model: Any) -> Iterator[Any]:
    yield from _walk_graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def _external_tensors(model: Any) -> list[Any]:
    import onnx

    return [t for t in _walk_model_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]


def _refuse(model_name: str, tensor: Any, location: str, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"{model_name}: external data of tensor {tensor.name!r} points to {location!r}, {reason}; convscope only "
        f"reads external data files that sit inside the model's folder. Move the data next to the model and "
        f"re-save it, or save the model without external data (onnx.save(model, path, save_as_external_data=False))"
    )


def _check_external_location(model_name: str, folder: Path, tensor: Any) -> tuple[Path, int, int | None]:
    """Validate one tensor's external-data entry; return (file, offset, length). Reads no data."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise ModelLoadError(f"{model_name}: tensor {tensor.name!r} is marked as external data but names no file")
    if "\x00" in location:
        raise _refuse(model_name, tensor, location, "a path with a NUL byte")
    parts = re.split(r"[\\/]+", location)
    from pathlib import PurePosixPath, PureWindowsPath

    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or PureWindowsPath(location).drive \
            or location.startswith(("/", "\\")):
        raise _refuse(model_name, tensor, location, "an absolute path")
    if any(part == ".." for part in parts):
        raise _refuse(model_name, tensor, location, "a path that climbs out with '..'")
    base = folder.resolve()
    current = base
    for part in [p for p in parts if p not in ("", ".")]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            raise ModelLoadError(
                f"{model_name}: the external data file {location!r} of tensor {tensor.name!r} is missing; "
                f"put it next to the model"
            ) from None
        if stat.S_ISLNK(mode):
            raise _refuse(model_name, tensor, location, "a path through a symbolic link")
    real = Path(os.path.realpath(current))
    if real != base and base not in real.parents:
        raise _refuse(model_name, tensor, location, "a path that resolves outside the model's folder")
    st = os.lstat(current)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(model_name, tensor, location, "something that is not a regular file")
    if st.st_nlink > 1:
        raise _refuse(model_name, tensor, location, "a file with several hard links")
    try:
        offset = int(info.get("offset", "0") or 0)
        length = int(info["length"]) if info.get("length") not in (None, "") else None
    except ValueError:
        raise ModelLoadError(f"{model_name}: tensor {tensor.name!r} has a non-numeric external data offset/length") from None
    if offset < 0 or (length is not None and length < 0):
        raise ModelLoadError(f"{model_name}: tensor {tensor.name!r} has a negative external data offset/length")
    if offset + (length or 0) > st.st_size:
        raise ModelLoadError(
            f"{model_name}: the external data of tensor {tensor.name!r} lies beyond the end of {location!r} "
            f"(truncated data file?)"
        )
    return current, offset, length


def _read_external(path: Path, offset: int, length: int | None) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    before = os.lstat(path)
    fd = os.open(path, flags)
    try:
        after = os.fstat(fd)
        if (before.st_ino, before.st_dev) != (after.st_ino, after.st_dev) or after.st_nlink > 1:
            raise ModelLoadError(f"external data file {path.name} changed while it was being opened; try again")
        os.lseek(fd, offset, os.SEEK_SET)
        size = after.st_size - offset if length is None else length
        chunks = []
        while size > 0:
            chunk = os.read(fd, min(size, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def resolve_external_data(model: Any, folder: str | os.PathLike[str], model_name: str = "model") -> None:
    """Check every external-data location of ``model`` first, then inline the data (in place).

    Args:
        model: an ``onnx.ModelProto`` loaded with ``load_external_data=False``.
        folder: the folder the model file sits in; data files must lie inside it.
        model_name: for messages.

    Raises:
        ModelLoadError: a location is absolute, contains ``..``, goes through a symlink, is a hard
            link, resolves outside ``folder``, is missing, or the data is shorter than declared.
            Nothing is read unless every location passes.
    """
    import onnx

    tensors = _external_tensors(model)
    if not tensors:
        return
    folder = Path(folder)
    checked = [(_check_external_location(model_name, folder, t), t) for t in tensors]
    for (path, offset, length), tensor in checked:
        data = _read_external(path, offset, length)
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def read_onnx_model(path: str | os.PathLike[str]) -> Any:
    """Read an ``.onnx`` file into an ``onnx.ModelProto`` with its external data inlined safely.

    Raises:
        ModelLoadError: missing/empty file, not a valid ONNX model (truncated, corrupt, another
            format), or refused external data (see :func:`resolve_external_data`).
    """
    try:
        import onnx
    except ImportError:
        raise ModelLoadError("reading .onnx files needs onnx and onnxruntime: pip install 'convscope[onnx]'") from None
    file = Path(path)
    if not file.exists():
        raise ModelLoadError(f"model file not found: {file}")
    if file.is_dir():
        raise ModelLoadError(f"{file} is a folder; give an .onnx file")
    data = file.read_bytes()
    if not data:
        raise ModelLoadError(f"{file.name} is empty (0 bytes)")
    model = onnx.ModelProto()
    problem: str | None = None
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        problem = first_line(exc)
    del data
    if problem is None and (model.ir_version <= 0 or not model.opset_import or not model.graph.node or not model.graph.output):
        problem = "it has no graph, no opset or no outputs"
    if problem is not None:
        raise _not_onnx(file, problem)
    resolve_external_data(model, file.parent, file.name)
    return model


def check_onnx_model(model: Any) -> str | None:
    """``onnx.checker.check_model``'s first complaint about ``model``, or None if it passes.

    Not fatal on its own: the checker rejects some models onnxruntime runs fine (for example graph
    outputs declared without a shape); convscope reports it when onnxruntime then fails too.
    """
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError and C++ checker errors
        return first_line(exc)
    return None


def _not_onnx(file: Path, problem: str) -> ModelLoadError:
    from ..sniff import describe_format, sniff_format, suffix_for

    kind = sniff_format(file)
    if kind not in ("onnx", "unknown"):
        suffix = suffix_for(kind)
        hint = f"; rename it to {file.stem}{suffix} if that is what it is" if suffix and suffix != ".onnx" else ""
        if kind == "corrupt-zip":
            return ModelLoadError(f"{file.name} is not an ONNX model (it is a truncated zip archive)")
        return ModelLoadError(f"{file.name} is not an ONNX model: it looks like {describe_format(kind)}{hint}")
    return ModelLoadError(f"{file.name} is not a valid ONNX model (truncated or corrupt?): {problem}")


def load_onnx_file(path: Path, trust: bool) -> LoadedModel:
    """``FILE_LOADERS`` entry for ``.onnx``: an :class:`OnnxAdapter` wrapped in a ``LoadedModel``.

    ``trust`` is not needed: an ONNX file holds no Python code and is read without running anything.
    """
    from ..base import LoadedModel

    del trust
    from .adapter import OnnxAdapter

    adapter = OnnxAdapter(read_onnx_model(path), name=Path(path).name)
    spec = adapter.input_spec()
    shape = None
    if spec.channels is not None and spec.spatial_size is not None:
        shape = (1, spec.channels, *spec.spatial_size)
    info = {"format": "onnx", "opset": adapter.opset, "producer": adapter.producer}
    if adapter.validation_issue:
        info["onnx_checker"] = adapter.validation_issue
    return LoadedModel(model=adapter, name=Path(path).name, input_shape=shape, info=info)
