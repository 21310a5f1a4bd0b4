"""The options several commands share, declared once, and how a command asks for them.

A command lists the shared options it takes with :func:`shared_options`; they are appended to its
own parameters (so ``--help`` shows them after the command's own, in one fixed order) and arrive as
one :class:`SharedOptions` value, ``opts``, whose :meth:`SharedOptions.scope` loads the model with
them. ``--kwargs`` therefore means the same, is spelled the same and is checked the same in every
command.
"""

# no ``from __future__ import annotations``: typer reads these annotations as objects (see main.py)
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

__all__ = ["SharedOptions", "NO_SHARED", "shared_options", "check_volume_input", "MODEL", "INPUT", "VOLUME", "SHARED"]

KwargsOpt = Annotated[Optional[str], typer.Option("--kwargs", help="JSON keyword arguments for the factory, e.g. '{\"in_channels\": 1}'")]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="state dict file (.safetensors, .pt, .pth), loaded with weights_only=True")]
TrustOpt = Annotated[bool, typer.Option("--trust", help="allow files that can run code when loaded (pickled whole models, TorchScript, .pt2, Keras .h5 models and Lambda layers). Only for files you trust")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu | cuda | cuda:N | mps (default: cpu)")]
SizeOpt = Annotated[Optional[str], typer.Option("--size", help="resize the input: 64 or 64x96 (DxHxW for volumes)")]
NormalizeOpt = Annotated[Optional[str], typer.Option("--normalize", help="imagenet | none | MEAN,STD | m1:m2:m3,s1:s2:s3")]
MaxMemoryOpt = Annotated[Optional[str], typer.Option(
    "--max-memory", help="memory budget of one capture: 4G, 512M or 60%; estimated before the forward pass "
    "and refused above it (default: 50% of the available memory)")]
SeriesOpt = Annotated[Optional[str], typer.Option("--series", help="DICOM folder with several series: the SeriesInstanceUID to read")]
ChannelsOpt = Annotated[Optional[str], typer.Option("--channels", help="volumes stacked as input channels: t1.nii.gz,t2.nii.gz,... (same grid)")]
IntensityOpt = Annotated[Optional[str], typer.Option("--intensity", help="model input transform of volumes: none | clip:LO,HI | zscore-nonzero | percentile:P,Q (';' per channel)")]
WindowOpt = Annotated[Optional[str], typer.Option("--window", help="display window of volumes (never fed to the model): auto | brain | subdural | stroke | lung | mediastinum | soft-tissue | liver | bone | L,W | percentile:P,Q")]
RoiOpt = Annotated[Optional[str], typer.Option("--roi", help="region of a volume fed to a 3D model: center | X,Y,Z (voxel centre, RAS+ array); needs --roi-size")]
RoiSizeOpt = Annotated[Optional[str], typer.Option("--roi-size", help="ROI size X,Y,Z in voxels")]
SliceOpt = Annotated[Optional[str], typer.Option("--slice", help="2D model, 3D volume: one slice, e.g. axial:40 (coronal:N, sagittal:N)")]
SlicesOpt = Annotated[Optional[str], typer.Option("--slices", help="2D model, 3D volume: every slice of a plane (axial | coronal | sagittal), in chunks that fit --max-memory; in a scan each slice is one example")]
LabelsOpt = Annotated[Optional[str], typer.Option("--label-map", help="label map (NIfTI/DICOM/DICOM SEG on the scan's grid): outlines on every plane figure; Dice against the prediction in unet")]

_DECLARED: dict[str, tuple[Any, Any]] = {  # parameter -> (annotation, default), in --help order
    "kwargs": (KwargsOpt, None),
    "weights": (WeightsOpt, None),
    "trust": (TrustOpt, False),
    "device": (DeviceOpt, None),
    "size": (SizeOpt, None),
    "normalize": (NormalizeOpt, None),
    "series": (SeriesOpt, None),
    "channels": (ChannelsOpt, None),
    "intensity": (IntensityOpt, None),
    "window": (WindowOpt, None),
    "roi": (RoiOpt, None),
    "roi_size": (RoiSizeOpt, None),
    "slice_": (SliceOpt, None),
    "slices": (SlicesOpt, None),
    "labels_map": (LabelsOpt, None),
    "max_memory": (MaxMemoryOpt, None),
}

MODEL = ("kwargs", "weights", "trust", "device")
"""How the model is built and placed."""
INPUT = ("size", "normalize", "max_memory")
"""How an input becomes the model's batch, and the memory budget of its capture."""
VOLUME = ("series", "channels", "intensity", "window", "roi", "roi_size", "slice_", "slices", "labels_map")
"""How a scan (NIfTI / DICOM) becomes model input."""
SHARED = MODEL + INPUT + VOLUME
"""Every shared option."""

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SharedOptions:
    """The shared options a command was given (those it does not take are None / False)."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name not in _DECLARED:
            raise AttributeError(name)
        values = self.__dict__.get("values", {})
        return values.get(name, _DECLARED[name][1])

    def scope(self, model: str) -> Any:
        """The :class:`convscope.Scope` of ``model`` with these options (the memory budget is parsed
        first, so a bad ``--max-memory`` fails before the model loads)."""
        from ..core.budget import parse_memory
        from ..io.volume_prep import VolumeOptions
        from ..scope import Scope

        budget = parse_memory(self.max_memory) if self.max_memory is not None else None
        scope = Scope(model, kwargs=self.kwargs, weights=self.weights, trust=self.trust, device=self.device)
        if self.normalize is not None:
            scope.normalize = self.normalize
        scope.max_memory = budget
        if any(name in self.values for name in VOLUME):
            parts = tuple(p.strip() for p in self.channels.split(",") if p.strip()) if self.channels else ()
            scope.volume_options = VolumeOptions(
                series=self.series, channels=parts, intensity=self.intensity, window=self.window, roi=self.roi,
                roi_size=self.roi_size, slice=self.slice_, slices=self.slices, labels=self.labels_map,
            )
        return scope


NO_SHARED = SharedOptions()
"""The default of a command's ``opts`` parameter (typer never sees it: :func:`shared_options` fills it)."""


_VOLUME_FLAGS = {"series": "--series", "intensity": "--intensity", "window": "--window", "roi": "--roi",
                 "roi_size": "--roi-size", "slice_": "--slice", "slices": "--slices", "labels_map": "--label-map"}


def check_volume_input(opts: SharedOptions, image: Any) -> None:
    """Refuse volume options (``--slices``, ``--window`` ...) given with an input that is not a scan:
    they would be silently ignored. ``--channels`` makes the input a volume stack itself."""
    from ..errors import ImageInputError
    from ..io.readers import reader_for_path

    given = [flag for name, flag in _VOLUME_FLAGS.items() if opts.values.get(name) is not None]
    if not given or opts.channels or not isinstance(image, str):
        return
    path = Path(image)
    reader = reader_for_path(path) if path.exists() else None
    if reader is not None and not reader.volume:
        raise ImageInputError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to NIfTI/DICOM volumes, but {path.name} is a "
            f"{'2D image' if path.suffix.lower() != '.npy' else 'numpy array'}; leave {'it' if len(given) == 1 else 'them'} out"
        )


def shared_options(*names: str) -> Callable[[F], F]:
    """Give a typer command the shared options ``names`` (see :data:`SHARED`); it receives them as
    its keyword parameter ``opts: SharedOptions``.

    The command's signature, as typer reads it (``__signature__`` and ``__annotations__``), is its own
    parameters without ``opts``, then the shared ones in :data:`SHARED`'s order.
    """
    unknown = [n for n in names if n not in _DECLARED]
    if unknown:
        raise ValueError(f"unknown shared options: {unknown}")
    chosen = [n for n in _DECLARED if n in names]

    def wrap(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)  # string annotations resolved in func's module
        own = [p for p in signature.parameters.values() if p.name != "opts"]
        extra = [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=_DECLARED[name][1],
                              annotation=_DECLARED[name][0])
            for name in chosen
        ]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            shared = SharedOptions({name: kwargs.pop(name) for name in chosen})
            return func(**kwargs, opts=shared)

        command.__signature__ = signature.replace(parameters=own + extra)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in own + extra}
        command.__annotations__["return"] = signature.return_annotation
        return command  # type: ignore[return-value]

    return wrap
