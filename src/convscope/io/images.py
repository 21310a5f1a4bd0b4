"""Turn the inputs users have (paths, arrays, PIL images, tensors) into a model batch.

The batch convscope hands to adapters is always ``(N, C, *spatial)`` float32, channels first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.view import FIRST_AXIS, MiddleView
from ..core.volume import Volume
from ..errors import ImageInputError
from .readers import Reader, reader_for_path, register_reader
from .volume_prep import VolumeInput, VolumeOptions

__all__ = [
    "PreparedInput", "prepare_input", "input_layout", "planned_shape", "to_display_image", "volume_display", "parse_size",
    "parse_normalize", "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
ARRAY_SUFFIXES = (".npy",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_PIXELS = 256_000_000
"""Refuse larger images (decompression-bomb guard); Pillow's own limit is raised to this."""


@dataclass(frozen=True, eq=False)
class PreparedInput:
    """A model-ready batch and a picture of it.

    Attributes:
        batch: ``(N, C, *spatial)`` float32, normalised as requested, channels first.
        display: ``(N, H, W, 3)`` uint8 pictures of the un-normalised input (2D inputs; for 3D
            inputs the :attr:`view`'s slice: a volume's axial slice in its display window), or None
            for 1D signals.
        source: a short description (file name or ``"array"``) for manifests.
        volume: :class:`~convscope.io.volume_prep.VolumeInput` for volume inputs, else None.
        view: for 3D inputs, how every 3D array of this input becomes a picture
            (:class:`~convscope.core.view.MiddleView`: a volume's axial middle plane in radiological
            view, else the middle slice along the first spatial axis); None for 1D/2D inputs.
    """

    batch: np.ndarray
    display: np.ndarray | None
    source: str
    volume: VolumeInput | None = None
    """For volume inputs (NIfTI, DICOM, ITK): the volume and how it became ``batch``."""
    view: MiddleView | None = None


def parse_size(size: int | str | tuple[int, ...] | list[int] | None) -> tuple[int, ...] | None:
    """``64`` / ``"64"`` -> (64, 64); ``"64x96"`` -> (64, 96); ``"32x64x64"`` -> 3D; None -> None."""
    if size is None:
        return None
    if isinstance(size, int):
        values: tuple[int, ...] = (size, size)
    elif isinstance(size, str):
        try:
            parts = tuple(int(p) for p in size.lower().replace(",", "x").split("x") if p.strip())
        except ValueError:
            raise ImageInputError(f"--size must look like 64 or 64x96 (or 32x64x64 for volumes), not {size!r}") from None
        values = parts * 2 if len(parts) == 1 else parts
    else:
        values = tuple(int(v) for v in size)
    if not values or any(v < 1 for v in values) or len(values) > 3:
        raise ImageInputError(f"size must be 1-3 positive integers, got {size!r}")
    return values


def parse_normalize(spec: str | tuple[Any, Any] | None, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``"imagenet"``, ``"none"``/None, ``"MEAN,STD"`` or ``"m1:m2:m3,s1:s2:s3"`` -> (mean, std) arrays of ``(C,)``."""
    if spec is None:
        return None
    if isinstance(spec, tuple):
        mean_v, std_v = spec
        mean = np.atleast_1d(np.asarray(mean_v, dtype=np.float32))
        std = np.atleast_1d(np.asarray(std_v, dtype=np.float32))
    else:
        text = spec.strip().lower()
        if text in ("none", ""):
            return None
        if text == "imagenet":
            mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
            std = np.asarray(IMAGENET_STD, dtype=np.float32)
            if channels == 1:
                mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
        else:
            try:
                mean_s, std_s = text.split(",")
                mean = np.asarray([float(v) for v in mean_s.split(":")], dtype=np.float32)
                std = np.asarray([float(v) for v in std_s.split(":")], dtype=np.float32)
            except ValueError:
                raise ImageInputError(
                    f"--normalize must be 'imagenet', 'none', 'MEAN,STD' (e.g. 0.5,0.25) or per channel "
                    f"'0.485:0.456:0.406,0.229:0.224:0.225'; got {spec!r}"
                ) from None
    if np.any(std == 0):
        raise ImageInputError("normalisation std must not be 0")
    for arr, what in ((mean, "mean"), (std, "std")):
        if arr.size not in (1, channels):
            raise ImageInputError(f"normalisation {what} has {arr.size} values but the model takes {channels} channels")
    return (np.broadcast_to(mean, (channels,)).copy(), np.broadcast_to(std, (channels,)).copy())


def _read_file(path: Path, **options: Any) -> tuple[np.ndarray, bool | None] | Volume:
    """Read ``path`` with its registered reader (:mod:`convscope.io.readers`): ``(array, channels_last)``
    for pictures and ``.npy``, a :class:`Volume` for NIfTI/DICOM/ITK (``options``: ``series=``)."""
    if not path.exists():
        raise ImageInputError(f"image file not found: {path}")
    reader = reader_for_path(path)
    if reader is not None:
        return reader.read(path, **options)
    if path.is_dir():
        raise ImageInputError(f"{path} is a folder; give an image file (PNG, JPEG, TIFF), a .npy array or a DICOM series folder")
    return _read_image_file(path)


def _read_image_file(path: Path, **_: Any) -> tuple[np.ndarray, bool | None]:
    """Returns (array, channels_last) from an image or .npy file."""
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - report any reader failure as one line
            raise ImageInputError(f"cannot read {path.name} as a .npy array ({exc}); save it with numpy.save") from None
        return np.asarray(arr), None  # layout unknown: decided from the model (input_layout), as for arrays
    if suffix == ".npz":
        raise ImageInputError(f"{path.name}: .npz archives are not read as images; save one array with numpy.save (.npy)")
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with _open_image(path) as img:
            _check_pixels(path.name, img.size)  # from the header, before anything is decoded
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32) / (65535.0 if img.mode.startswith("I;16") else max(1.0, float(np.asarray(img).max())))
                return arr.astype(np.float32), True
            if img.mode == "F":
                return np.asarray(img, dtype=np.float32), True
            if img.mode not in ("L", "RGB", "RGBA", "LA"):
                img = img.convert("RGBA" if "A" in img.mode or img.mode == "P" and "transparency" in img.info else "RGB")
            return np.asarray(img), True
    except ImageInputError:
        raise
    except Image.DecompressionBombError:
        raise ImageInputError(f"{path.name} has too many pixels (limit {MAX_PIXELS:,}); resize it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"cannot read {path.name} as an image ({exc}); give a PNG, JPEG, TIFF or .npy file") from None


def _open_image(path: Path) -> Any:
    """``PIL.Image.open`` (lazy: reads the header only) without Pillow's decompression-bomb warning:
    convscope refuses over-limit images itself (:func:`_check_pixels`)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _check_pixels(name: str, size: tuple[int, ...]) -> None:
    """Refuse an image above :data:`MAX_PIXELS` from its header size (Pillow only warns up to 2x its limit)."""
    pixels = int(np.prod(size, dtype=np.int64))
    if pixels > MAX_PIXELS:
        dims = "x".join(str(v) for v in size)
        raise ImageInputError(f"{name} is {dims} = {pixels:,} pixels, over the limit of {MAX_PIXELS:,}; "
                              f"shrink the file below the limit first (--size resizes only after decoding)")


def _header_shape(path: Path) -> tuple[tuple[int, ...], bool | None]:
    """(array shape, channels_last) of an image or ``.npy`` file from its header only (nothing decoded)."""
    reader = reader_for_path(path) if path.exists() else None
    if reader is not None and reader.volume:  # volumes: the shape is known once the header(s) are read
        volume = _read_file(path)
        assert isinstance(volume, Volume)
        return tuple(volume.data.shape), False
    if not path.exists() or path.is_dir():
        _read_file(path)  # raises the usual one-line error
    if path.suffix.lower() in ARRAY_SUFFIXES:
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(handle)
        except Exception:  # noqa: BLE001 - the full read reports it
            return _read_image_file(path)[0].shape, None
        _check_dtype(np.dtype(dtype), path.name)
        return tuple(int(v) for v in shape), None  # layout decided from the model, as when read
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with _open_image(path) as img:
            width, height = img.size
            _check_pixels(path.name, (width, height))
            bands = len(img.getbands())
    except ImageInputError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return _read_image_file(path)[0].shape, True  # raises the one-line error
    return ((height, width) if bands == 1 else (height, width, bands)), True


def planned_shape(
    image: Any,
    *,
    channels: int | None,
    spatial_dims: int = 2,
    size: int | str | tuple[int, ...] | None = None,
) -> tuple[int, ...]:
    """The ``(N, C, *spatial)`` batch :func:`prepare_input` would make of ``image``, without decoding it.

    Image files are measured from their header (and refused over :data:`MAX_PIXELS`), ``.npy`` files
    from theirs; arrays, PIL images and tensors from their shape. Used to check the memory budget
    before any pixel is decoded.
    """
    if isinstance(image, (str, os.PathLike)):
        shape, channels_last = _header_shape(Path(image))
        hint: bool | None = channels_last
    elif isinstance(image, (list, tuple)) and image and not isinstance(image[0], (int, float)):
        parts = [planned_shape(item, channels=channels, spatial_dims=spatial_dims, size=size) for item in image]
        return (sum(p[0] for p in parts), *parts[0][1:])
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            Image = None  # type: ignore[assignment]
        if Image is not None and isinstance(image, Image.Image):
            width, height = image.size
            bands = len(image.getbands())
            shape, hint = ((height, width) if bands == 1 else (height, width, bands)), True
        elif hasattr(image, "shape"):
            shape, hint = tuple(int(v) for v in image.shape), (False if hasattr(image, "detach") else None)
        else:
            shape, hint = np.asarray(image).shape, None
    batch = _canonical_shape(tuple(shape), hint, spatial_dims, channels)
    have = batch[1]
    if channels is not None and have != channels:
        have = channels
    wanted = parse_size(size)
    if wanted is not None and spatial_dims == 1 and len(wanted) == 2:
        wanted = wanted[:1]
    spatial = tuple(wanted) if wanted is not None and len(wanted) == len(batch) - 2 else batch[2:]
    return (batch[0], have, *spatial)


def _check_dtype(dtype: np.dtype, source: str) -> None:
    if np.issubdtype(dtype, np.complexfloating):
        raise ImageInputError(f"{source} holds complex numbers ({dtype}); give real values, e.g. np.abs(x) or x.real")


def _to_array(image: Any) -> tuple[np.ndarray, bool | None, str]:
    """Return (array, channels_last hint or None if unknown, source description)."""
    if isinstance(image, Volume):
        return image.data, False, image.source
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        read = _read_file(path)
        if isinstance(read, Volume):
            return read.data, False, read.source
        arr, channels_last = read
        return arr, channels_last, path.name
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # torch tensor, channels first
        tensor = image.detach()
        if hasattr(tensor, "is_floating_point") and tensor.is_floating_point():
            tensor = tensor.float()
        return np.asarray(tensor.cpu().numpy()), False, "tensor"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        img = image if image.mode in ("L", "RGB", "RGBA", "F") else image.convert("RGB")
        return np.asarray(img), True, "PIL image"
    if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        return np.asarray(image), None, "array"
    raise ImageInputError(
        f"cannot use a {type(image).__name__} as an image; give a file path, a numpy array, a PIL image or a tensor"
    )


def _as_float(arr: np.ndarray) -> np.ndarray:
    _check_dtype(arr.dtype, "the image array")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.number):
        raise ImageInputError(f"image array has a non-numeric dtype {arr.dtype}")
    return arr.astype(np.float32)


CONVERTIBLE_CHANNELS = (1, 3, 4)
"""Channel counts convertible to a model's (gray, RGB, RGBA): see :func:`_match_channels`."""


def input_layout(
    shape: tuple[int, ...], *, channels: int | None, spatial_dims: int, hint: bool | None = None
) -> str:
    """THE layout decision for every array input: ``"channels_first"``, ``"channels_last"`` or ``"none"``
    (no channel axis: ``(*spatial)`` or ``(N, *spatial)`` is not accepted, only ``(*spatial)``).

    Args:
        shape: the array's shape, ``(*spatial)``, ``(C, *spatial)`` / ``(*spatial, C)`` or with a
            leading batch axis.
        channels: the model's expected channel count (its first convolution's), or None.
        spatial_dims: the model's expected number of spatial axes (its rank minus 2).
        hint: the source's own layout (True: a picture file or PIL image, channels last; False: a
            torch tensor, channels first); None for numpy arrays and ``.npy`` files.

    Rules, in order: the source's hint; an array with ``spatial_dims`` axes has no channel axis; with
    one or two more axes, the axis holding the model's channel count (the last one, or the first
    after the batch) is the channel axis when only one of the two holds it; else the one holding a
    convertible count (1, 3 or 4: gray/RGB/RGBA) when only one does and the other is larger than 4;
    else channels first.
    """
    nd = len(shape)
    if hint is not None:
        if nd == spatial_dims:
            return "none"
        return "channels_last" if hint else "channels_first"
    if nd == spatial_dims:
        return "none"
    if nd not in (spatial_dims + 1, spatial_dims + 2):
        return "channels_first"  # refused with a message by the caller
    first = shape[0] if nd == spatial_dims + 1 else shape[1]
    last = shape[-1]
    if channels is not None:
        if last == channels and first != channels:
            return "channels_last"
        if first == channels:
            return "channels_first"
    if last in CONVERTIBLE_CHANNELS and first not in CONVERTIBLE_CHANNELS and first > 4:
        return "channels_last"
    return "channels_first"


def _canonical_shape(shape: tuple[int, ...], hint: bool | None, spatial_dims: int, channels: int | None) -> tuple[int, ...]:
    """The ``(N, C, *spatial)`` shape :func:`_canonical` gives an array of ``shape`` (no data touched)."""
    nd = len(shape)
    layout = input_layout(shape, channels=channels, spatial_dims=spatial_dims, hint=hint)
    if layout == "none":
        return (1, 1, *shape)
    if layout == "channels_last" and nd == spatial_dims + 1:
        return (1, shape[-1], *shape[:-1])
    if layout == "channels_last" and nd == spatial_dims + 2:
        return (shape[0], shape[-1], *shape[1:-1])
    if nd == spatial_dims + 1:
        return (1, *shape)
    if nd == spatial_dims + 2:
        return tuple(shape)
    return (1, 1, *shape[-spatial_dims:]) if nd > spatial_dims else (1, 1, *shape)


def _canonical(arr: np.ndarray, channels_last: bool | None, spatial_dims: int, channels: int | None = None) -> np.ndarray:
    """Any supported array -> (N, C, *spatial) float32, in the layout :func:`input_layout` decides."""
    nd = arr.ndim
    layout = input_layout(tuple(arr.shape), channels=channels, spatial_dims=spatial_dims, hint=channels_last)
    if layout == "none":
        arr = arr[None, None]
    elif layout == "channels_last":
        if nd == spatial_dims + 1:
            arr = np.moveaxis(arr, -1, 0)[None]
        elif nd == spatial_dims + 2:
            arr = np.moveaxis(arr, -1, 1)
        else:
            raise ImageInputError(f"cannot read a {nd}-axis array as a {spatial_dims}D image")
    else:
        if nd == spatial_dims + 1:
            arr = arr[None]
        elif nd != spatial_dims + 2:
            raise ImageInputError(
                f"the model takes {spatial_dims}D inputs, so give an array of shape "
                f"{'x'.join(['H', 'W', 'D'][:spatial_dims])} (one channel), (C, ...) or (N, C, ...); got shape {arr.shape}"
            )
    return _as_float(np.ascontiguousarray(arr))


def _match_channels(batch: np.ndarray, channels: int | None) -> np.ndarray:
    have = batch.shape[1]
    if channels is None or have == channels:
        return batch
    if have == 4 and channels in (1, 3):  # drop alpha
        batch = batch[:, :3]
        have = 3
    if have == channels:
        return batch
    if have == 3 and channels == 1:  # ITU-R 601-2 luma, as Pillow's "L"
        weights = np.asarray([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, *([1] * (batch.ndim - 2)))
        return np.asarray(np.sum(batch * weights, axis=1, keepdims=True, dtype=np.float32))
    if have == 1:
        return np.repeat(batch, channels, axis=1)
    raise ImageInputError(
        f"the model's first convolution takes {channels} channels but the image has {have}; "
        f"give a {channels}-channel image or array (grayscale and RGB are converted automatically)"
    )


def _resize(batch: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    spatial = batch.shape[2:]
    if len(size) != len(spatial):
        raise ImageInputError(f"--size {'x'.join(map(str, size))} has {len(size)} axes but the input has {len(spatial)} spatial axes")
    if tuple(spatial) == tuple(size):
        return batch
    if len(size) != 2:
        idx = [np.clip(np.round((np.arange(n) + 0.5) * s / n - 0.5).astype(int), 0, s - 1) for n, s in zip(size, spatial)]
        key = (slice(None), slice(None), *np.ix_(*idx))
        return np.ascontiguousarray(batch[key])
    from PIL import Image

    n, c = batch.shape[:2]
    out = np.empty((n, c, size[0], size[1]), dtype=np.float32)
    for i in range(n):
        for j in range(c):
            img = Image.fromarray(batch[i, j], mode="F")
            out[i, j] = np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.float32)
    return out


def _display(batch: np.ndarray, view: MiddleView = FIRST_AXIS) -> np.ndarray | None:
    """(N, C, *spatial) un-normalised float -> (N, H, W, 3) uint8 (min-max over the batch), or None
    for 1D; a 3D batch through ``view`` (default the middle slice along the first spatial axis)."""
    if batch.ndim == 3:
        return None
    maps = batch
    if batch.ndim == 5:
        maps = view.take(batch)
    channels = maps.shape[1]
    rgb = maps[:, :3] if channels >= 3 else maps[:, :1]
    low, high = (rgb.min(), rgb.max()) if rgb.size else (0.0, 1.0)
    finite = None
    if np.isfinite(low) and np.isfinite(high):  # no NaN or Inf anywhere: no masks needed
        lo, hi = float(low), float(high)
    else:
        finite = np.isfinite(rgb)
        lo = float(rgb[finite].min()) if finite.any() else 0.0
        hi = float(rgb[finite].max()) if finite.any() else 1.0
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    span = hi - lo if hi > lo else 1.0
    unit = np.subtract(rgb, lo, dtype=np.result_type(rgb.dtype, np.float32))  # channels first: flat passes
    unit /= span
    if finite is not None:
        unit[~finite] = 0.0
    np.clip(unit, 0.0, 1.0, out=unit)
    unit *= 255.0
    unit += 0.5
    pictures = unit.astype(np.uint8)
    if pictures.shape[1] == 1:  # gray: the same value in R, G and B
        pictures = np.repeat(pictures, 3, axis=1)
    return np.ascontiguousarray(np.moveaxis(pictures, 1, -1))


def prepare_input(
    image: Any,
    *,
    channels: int | None,
    spatial_dims: int = 2,
    size: int | str | tuple[int, ...] | None = None,
    normalize: str | tuple[Any, Any] | None = None,
    expected_size: tuple[int, ...] | None = None,
    volume_options: VolumeOptions | None = None,
    downsampling: int | Callable[[], int] = 1,
) -> PreparedInput:
    """Read ``image`` and make it a batch the model accepts.

    Args:
        image: a file path (PNG/JPEG/TIFF/BMP or ``.npy``), a numpy array (``(H, W)``, ``(H, W, C)``,
            ``(C, H, W)`` or ``(N, C, H, W)``; uint8 is scaled to [0, 1]), a PIL image, or a torch
            tensor (channels first).
        channels: channel count of the model's first convolution (gray/RGB/RGBA converted as needed).
        spatial_dims: 1, 2 or 3.
        size: resize to this spatial size (``64``, ``"64x96"``).
        normalize: ``"imagenet"``, ``"none"``, ``"MEAN,STD"`` or ``(mean, std)``.
        expected_size: spatial size the model requires, if it fixes one.
        volume_options: how volumes (NIfTI, DICOM, ITK, a :class:`Volume`) become model input:
            ``--series``, ``--channels``, ``--intensity``, ``--roi``, ``--slice`` (see
            :mod:`convscope.io.volume_prep`); the display window never reaches the batch.
        downsampling: the model's total downsampling (or a callable giving it, asked only for
            volumes): volumes (and slices of them for 2D models) are zero-padded to a multiple of it.

    Raises:
        ImageInputError: unreadable file, unsupported array shape, channel count that cannot be
            converted, or a size the model does not accept.
    """
    volume = _as_volume(image, volume_options)
    if volume is not None:
        return _prepare_volume(volume, volume_options or VolumeOptions(), channels=channels, spatial_dims=spatial_dims,
                               size=size, normalize=normalize, expected_size=expected_size, downsampling=downsampling)
    arr, channels_last, source = _to_array(image)
    if arr.size == 0:
        raise ImageInputError(f"the image {source} is empty")
    batch = _canonical(arr, channels_last, spatial_dims, channels)
    batch = _match_channels(batch, channels)
    wanted = parse_size(size)
    if wanted is not None and spatial_dims == 1 and len(wanted) == 2:
        wanted = wanted[:1]
    if wanted is not None:
        batch = _resize(batch, wanted)
    if expected_size is not None and tuple(batch.shape[2:]) != tuple(expected_size):
        want = "x".join(map(str, expected_size))
        raise ImageInputError(
            f"the model takes {want} inputs but the image is {'x'.join(map(str, batch.shape[2:]))}; pass --size {want} (size={want!r})"
        )
    display = _display(batch)
    stats = parse_normalize(normalize, batch.shape[1])
    if stats is not None:
        mean, std = stats
        shape = (1, -1) + (1,) * (batch.ndim - 2)
        batch = (batch - mean.reshape(shape)) / std.reshape(shape)
    return PreparedInput(batch=np.ascontiguousarray(batch, dtype=np.float32), display=display, source=source,
                         view=FIRST_AXIS if batch.ndim == 5 else None)


def _as_volume(image: Any, options: VolumeOptions | None) -> Volume | None:
    """The input as a :class:`Volume` if it is one (a Volume, a volume file or DICOM folder, or
    ``--channels`` files), else None."""
    from . import volumes

    if options is not None and options.channels:
        parts = [Path(p) for p in options.channels]
        return volumes.stack_channels([_read_volume_file(p, options) for p in parts], [p.name for p in parts])
    if isinstance(image, Volume):
        return image
    if not isinstance(image, (str, os.PathLike)):
        return None
    path = Path(image)
    if not path.exists() and isinstance(image, str) and "," in image:  # "t1.nii.gz,t2.nii.gz": channels
        parts = [Path(p.strip()) for p in image.split(",") if p.strip()]
        return volumes.stack_channels([_read_volume_file(p, options) for p in parts], [p.name for p in parts])
    if not path.exists():
        return None
    reader = reader_for_path(path)
    if reader is None or not reader.volume:
        return None
    return reader.read(path, series=options.series if options is not None else None)


def _read_volume_file(path: Path, options: VolumeOptions | None) -> Volume:
    read = _read_file(path, series=options.series if options is not None else None)
    if not isinstance(read, Volume):
        raise ImageInputError(f"--channels: {path.name} is not a volume (give NIfTI/DICOM files of one grid)")
    return read


def _prepare_volume(
    volume: Volume,
    options: VolumeOptions,
    *,
    channels: int | None,
    spatial_dims: int,
    size: Any,
    normalize: Any,
    expected_size: tuple[int, ...] | None,
    downsampling: int | Callable[[], int],
) -> PreparedInput:
    from .volume_prep import channel_window, plane_slice, prepare_volume, window_function

    if channels is not None and volume.channels != channels and not (volume.channels == 1):
        raise ImageInputError(
            f"the model's first convolution takes {channels} channels but {volume.source} has {volume.channels} "
            f"({', '.join(volume.channel_names) or 'channels'}); give {channels} files with --channels a,b,..."
        )
    factor = 1
    if spatial_dims in (2, 3) and size is None:
        factor = max(1, int(downsampling() if callable(downsampling) else downsampling))
    batch, record = prepare_volume(volume, options, spatial_dims=spatial_dims, factor=factor)
    batch = _match_channels(batch, channels)
    wanted = parse_size(size)
    if wanted is not None:
        batch = _resize(batch, wanted)
        record = VolumeInput(**{**record.__dict__, "padded_shape": tuple(batch.shape[2:]),
                                "notes": (*record.notes, f"resized to {'x'.join(map(str, wanted))} (nearest) by --size")})
    if expected_size is not None and tuple(batch.shape[2:]) != tuple(expected_size):
        want = "x".join(map(str, expected_size))
        raise ImageInputError(
            f"the model takes {want} inputs but the volume gives {'x'.join(map(str, batch.shape[2:]))}; "
            f"pass --size {want} or --roi center --roi-size {','.join(map(str, expected_size))}"
        )
    view: MiddleView | None = None
    if spatial_dims == 2 and record.plane is not None and wanted is None:
        # the picture under overlays: the same slices, original intensities through the display window
        first = volume.data[0]
        window, _ = window_function(channel_window(record.window, 0), volume.units, first)
        unit = np.stack([window(plane_slice(first, record.plane, i)) for i in record.slice_indices])
        rows, cols = batch.shape[2:]
        unit = np.pad(unit, [(0, 0), (0, rows - unit.shape[1]), (0, cols - unit.shape[2])])  # the padding, black
        display: np.ndarray | None = np.repeat((unit[..., None] * 255.0 + 0.5).astype(np.uint8), 3, axis=-1)
    elif spatial_dims == 3 and batch.ndim == 5:
        view = MiddleView.of_volume(record)
        display = volume_display(record, view, tuple(batch.shape[2:]))
    else:
        display = _display(batch)
    stats = parse_normalize(normalize, batch.shape[1])
    if stats is not None:
        mean, std = stats
        shape = (1, -1) + (1,) * (batch.ndim - 2)
        batch = (batch - mean.reshape(shape)) / std.reshape(shape)
    return PreparedInput(batch=np.ascontiguousarray(batch, dtype=np.float32), display=display, source=volume.source,
                         volume=record, view=view)


def volume_display(record: VolumeInput, view: MiddleView, spatial: tuple[int, ...], *,
                   index: int | None = None) -> np.ndarray:
    """``(1, rows, cols, 3)`` uint8: the first channel's ORIGINAL intensities through the display window
    (never the model's intensity transform) on ``view``'s axial slice of the region fed to a 3D model
    (``spatial``: the batch's spatial shape; ``index``: another batch z than the middle one).

    Only that one slice is windowed. Without ``--size`` it is :meth:`MiddleView.take` of the fed box
    (padding cropped); with ``--size`` the box's voxels picked by the same nearest-neighbour indices
    as the batch's resize."""
    from .volume_prep import channel_window, plane_slice, window_function

    volume = record.volume
    first = volume.data[0]
    window, _ = window_function(channel_window(record.window, 0), volume.units, first)
    (x0, y0, z0), (sx, sy, sz) = record.roi_start, record.roi_shape
    k = view.index(spatial) if index is None else int(index)
    if view.region is not None:  # the fed box at the batch's resolution: the slice as take() cuts it
        if k >= sz:  # a slice of the zero padding: black
            return np.zeros((1, sy, sx, 3), dtype=np.uint8)
        plane = first[x0:x0 + sx, y0:y0 + sy, z0 + k]
    else:  # resized by --size: the nearest source voxel of each batch voxel (as _resize picks them)
        idx = [np.clip(np.round((np.arange(n) + 0.5) * s / n - 0.5).astype(int), 0, s - 1)
               for n, s in zip(spatial, (sx, sy, sz))]
        kz = int(idx[2][k])
        plane = first[x0:x0 + sx, y0:y0 + sy, z0 + kz][np.ix_(idx[0], idx[1])]
    unit = window(plane_slice(np.asarray(plane)[..., None], "axial", 0))
    return np.repeat((unit[None, ..., None] * 255.0 + 0.5).astype(np.uint8), 3, axis=-1)


def to_display_image(image: Any, *, sample: int = 0) -> np.ndarray:
    """A ``(H, W, 3)`` uint8 picture of ``image`` (any input :func:`prepare_input` accepts)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3:
        return image
    arr, channels_last, _ = _to_array(image)
    spatial_dims = 3 if (arr.ndim >= 4 and not channels_last and arr.ndim == 5) else 2
    batch = _canonical(arr, channels_last, spatial_dims)
    display = _display(batch)
    if display is None:
        raise ImageInputError("1D inputs have no picture to overlay on")
    return display[min(sample, display.shape[0] - 1)]


# the built-in picture and array readers; volume readers register themselves in io/readers.py
register_reader(Reader("picture", IMAGE_SUFFIXES, _read_image_file), first=True)
register_reader(Reader("npy", ARRAY_SUFFIXES + (".npz",), _read_image_file), first=True)
