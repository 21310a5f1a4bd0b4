"""Keras model files: ``.keras`` archives (safe mode) and legacy ``.h5`` full models (with trust).

Every failure is one line naming the fix; a Keras 2 (tf.keras) ``.h5`` that Keras 3 cannot rebuild
says so. Keras is imported lazily.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from ...errors import ModelLoadError, UntrustedFileError
from .._capture import first_line as _first_line
from ..base import LoadedModel
from .runtime import _keras

__all__ = ["load_keras_file"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


def _sniff(head: bytes) -> str:
    """What a file's first bytes say it is, as a phrase for error messages."""
    if head.startswith(_HDF5_MAGIC):
        return "it looks like an HDF5 (.h5) file"
    if head.startswith(b"PK"):
        return "it looks like a zip archive"
    if head[:1] == b"\x80":
        return "it looks like a Python pickle, e.g. a PyTorch .pt file"
    if b"pytorch" in head.lower() or b"onnx" in head.lower():
        return "it looks like an ONNX file"
    if head.lstrip()[:1] in (b"{", b"["):
        return "it looks like JSON text"
    return "it is not a zip archive"


def load_keras_file(path: Path, trust: bool) -> LoadedModel:
    """Load a ``.keras`` archive (safe mode) or, with ``trust``, a legacy ``.h5`` full-model file.

    Args:
        path: the file. ``.keras``: the zip archive ``model.save("model.keras")`` writes, loaded with
            ``keras.saving.load_model(path, safe_mode=not trust, compile=False)``: no code from the file
            runs unless ``trust`` (Keras ``Lambda`` layers hold Python bytecode and are refused).
            ``.h5``: a legacy HDF5 full model, which can carry code, so it needs ``trust``.
        trust: the user's explicit opt-in (``--trust`` / ``trust=True``) to run code from the file.

    Returns:
        :class:`convscope.loading.LoadedModel` with ``input_shape`` ``(1, C, *spatial)`` channels
        first when the model fixes its input size.

    Raises:
        UntrustedFileError: the file needs ``trust=True`` (Lambda layers, ``.h5`` full models).
        ModelLoadError: missing, empty, truncated, corrupt or wrong-format files, one line each.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder; give a .keras file (model.save('model.keras') writes one)")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path.name} is empty (0 bytes); re-save the model with model.save('{path.stem}.keras')")
    with open(path, "rb") as handle:
        head = handle.read(64)
    suffix = path.suffix.lower()
    if suffix == ".h5" or suffix == ".hdf5":
        model = _load_h5(path, head, trust)
        fmt = "h5"
    elif suffix == ".keras":
        model = _load_keras_archive(path, head, trust)
        fmt = "keras"
    else:
        raise ModelLoadError(f"{path.name}: Keras model files end in .keras (or legacy .h5), not {suffix or '(none)'!r}")
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path.name} holds a {type(model).__name__}, not a Keras model")
    from .adapter import KerasAdapter

    adapter = KerasAdapter(model)
    return LoadedModel(
        model=model,
        name=path.name,
        input_shape=adapter.input_shape(),
        info={"format": fmt, "framework": "keras", "backend": keras.backend.backend(), "trusted": bool(trust)},
    )


def _load_keras_archive(path: Path, head: bytes, trust: bool) -> Any:
    if head.startswith(_HDF5_MAGIC):
        raise ModelLoadError(
            f"{path.name} is a legacy HDF5 (.h5) model, not a .keras archive; rename it to {path.stem}.h5 "
            f"(loading .h5 models needs --trust) or re-save it with model.save('{path.name}')"
        )
    if not zipfile.is_zipfile(path):
        if head.startswith(b"PK"):
            raise ModelLoadError(
                f"{path.name} is a truncated or corrupt .keras archive (the zip directory is missing); "
                f"re-download or re-save it"
            )
        raise ModelLoadError(
            f"{path.name} is not a .keras archive ({_sniff(head)}); "
            f"a .keras file is the zip that model.save('model.keras') writes"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ModelLoadError(f"{path.name} is a corrupt .keras archive ({_first_line(exc)}); re-download or re-save it") from None
    if "config.json" not in members:
        raise ModelLoadError(
            f"{path.name} is a zip archive without config.json, so not a Keras model; a .keras file is what "
            f"model.save('model.keras') writes"
        )
    if bad is not None:
        raise ModelLoadError(f"{path.name} is a corrupt .keras archive ({bad} fails its checksum); re-download or re-save it")
    return _keras_load(path, trust)


def _load_h5(path: Path, head: bytes, trust: bool) -> Any:
    if zipfile.is_zipfile(path) or head.startswith(_ZIP_MAGIC):
        raise ModelLoadError(f"{path.name} is a .keras archive (a zip), not an HDF5 file; rename it to {path.stem}.keras")
    if not head.startswith(_HDF5_MAGIC):
        what = _sniff(head).replace("it is not a zip archive", "unknown content")
        raise ModelLoadError(
            f"{path.name} is not an HDF5 file ({what}); re-save the model with model.save('{path.stem}.keras')"
        )
    try:
        import h5py
    except ImportError:
        raise ModelLoadError("reading .h5 models needs h5py: pip install h5py") from None
    try:
        with h5py.File(path, "r") as handle:
            has_config = "model_config" in handle.attrs
            weights_only = not has_config and ("layer_names" in handle.attrs or "model_weights" in handle or "layers" in handle)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path.name} is a truncated or corrupt HDF5 file ({_first_line(exc)}); re-download or re-save it") from None
    if not has_config:
        what = "weights only (model.save_weights)" if weights_only else "no model architecture"
        raise ModelLoadError(
            f"{path.name} holds {what}, not a model; build the model in code, call model.load_weights('{path.name}') "
            f"and pass the model object to convscope"
        )
    if not trust:
        raise UntrustedFileError(
            f"{path.name} is a legacy .h5 full model, a format that can carry Python code (Lambda layers); if you "
            f"trust its source pass --trust (trust=True), or re-save it as .keras with model.save('{path.stem}.keras')"
        )
    return _keras_load(path, trust)


def _keras_load(path: Path, trust: bool) -> Any:
    keras = _keras()
    try:
        return keras.saving.load_model(path, safe_mode=not trust, compile=False)
    except Exception as exc:  # noqa: BLE001 - every Keras failure becomes one line
        message = _first_line(exc)
        text = str(exc)
        if not trust and ("safe_mode" in text or "unsafe" in text.lower() or "lambda" in text.lower()):
            raise UntrustedFileError(
                f"{path.name} contains a Keras Lambda layer (Python code stored in the file), which safe mode refuses; "
                f"if you trust its source pass --trust (trust=True)"
            ) from None
        legacy_ops = [name for name in ("TFOpLambda", "SlicingOpLambda") if name in text]
        if legacy_ops:
            raise ModelLoadError(
                f"{path.name} is a Keras 2 (tf.keras) model with TensorFlow-operation layers ({legacy_ops[0]}), which "
                f"Keras 3 cannot rebuild; open it with tf-keras (pip install tf-keras; TF_USE_LEGACY_KERAS=1), rebuild "
                f"those ops as Keras layers and re-save as .keras, or build the model in code and load_weights('{path.name}')"
            ) from None
        if "Could not locate" in text or "custom_objects" in text or "register_keras_serializable" in text:
            raise ModelLoadError(
                f"{path.name} uses a custom layer or model class Keras cannot find ({message}); import the module that "
                f"defines it (decorated with @keras.saving.register_keras_serializable()) before loading"
            ) from None
        raise ModelLoadError(f"cannot load {path.name} as a Keras model (truncated or corrupt?): {message}") from None
