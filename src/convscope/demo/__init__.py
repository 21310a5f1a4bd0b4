"""Bundled demo models: a small RGB shape classifier and a small U-Net, with shipped weights.

``convscope demo`` runs on these without downloading anything. Both were trained in the repo
(``scripts/train_demo.py``) on synthetic images from :mod:`convscope.demo.data`; weights ship as
float16 safetensors in ``convscope/demo/weights/`` and are cast back to float32 on load.

Importing this package needs only numpy: torch is imported when a model is loaded
(:func:`load_demo`) or a model class is accessed (``convscope.demo.DemoUNet``).

Example::

    demo = load_demo("unet")
    x = demo_sample("unet", seed=3)                      # (1, 64, 64) float32
    logits = demo.model(torch.from_numpy(x)[None])       # (1, 1, 64, 64), > 0 = organ
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConvscopeError, ModelLoadError, close_matches
from .data import CLASS_NAMES, sample_image

if TYPE_CHECKING:  # pragma: no cover
    from importlib.abc import Traversable  # importlib.resources.abc from Python 3.11

    from torch import nn

__all__ = [
    "DEMO_NAMES",
    "DemoModel",
    "load_demo",
    "build_demo_model",
    "demo_sample",
    "demo_weights_path",
    "CLASS_NAMES",
]
# Also available, imported lazily from .models (needs torch; kept out of __all__ so that
# ``from convscope.demo import *`` stays torch-free): ConvBlock, Stem, DemoCNN, DemoUNet.

DEMO_NAMES: tuple[str, ...] = ("cnn", "unet", "unet3d")
"""Names accepted by :func:`load_demo` and :func:`demo_sample`."""

_LAZY_MODEL_ATTRS = ("ConvBlock", "Stem", "DemoCNN", "DemoUNet")
_LAZY_3D_ATTRS = ("DemoUNet3D",)

_SPECS: dict[str, dict[str, Any]] = {
    "cnn": {
        "input_shape": (1, 3, 64, 64),
        "task": "classification",
        "class_names": CLASS_NAMES,
        "description": (
            "Small RGB shape classifier (circle / square / triangle / cross): a 5x5 stem on RGB "
            "(first-layer kernels are viewable as colour patches), three conv blocks, global "
            "average pool, linear classifier. Input (1, 3, 64, 64) float32 in [0, 1]."
        ),
    },
    "unet": {
        "input_shape": (1, 1, 64, 64),
        "task": "segmentation",
        "class_names": ("organ",),
        "description": (
            "Small 4-level U-Net (8-16-32-64 channels, concatenation skips) segmenting bright "
            "'organ' ellipses in synthetic grayscale scans while ignoring thin lines and small "
            "dots. Input (1, 1, H, W) float32 in [0, 1], H and W divisible by 8 (64 by default); "
            "output (1, 1, H, W) logits, > 0 = organ."
        ),
    },
    "unet3d": {
        "input_shape": (1, 1, 32, 32, 16),
        "task": "segmentation",
        "class_names": ("organ",),
        "description": (
            "Small 3-level 3D U-Net (6-12-24 channels) segmenting a bright 'organ' ellipsoid on the "
            "patient's left in synthetic anisotropic scans (1.5 x 1.5 x 3 mm voxels, RAS+ layout) while "
            "ignoring a small bright sphere and a thin rod. Input (1, 1, X, Y, Z) float32 in [0, 1], "
            "sides divisible by 4; output logits, > 0 = organ. `convscope demo` writes its input as NIfTI."
        ),
    },
}


@dataclass(frozen=True)
class DemoModel:
    """A loaded demo model and what it expects.

    Attributes:
        name: one of :data:`DEMO_NAMES`.
        model: the ``torch.nn.Module``, float32, in eval mode, on the CPU.
        input_shape: ``(1, C, H, W)`` example input shape (float32 values in ``[0, 1]``).
        task: ``"classification"`` or ``"segmentation"``.
        class_names: classifier label names by index; for segmentation, the foreground
            class of each output channel.
        description: one-paragraph human description.
    """

    name: str
    model: nn.Module
    input_shape: tuple[int, ...]
    task: str
    class_names: tuple[str, ...]
    description: str


def _check_name(name: str) -> str:
    key = str(name).strip().lower()
    if key not in DEMO_NAMES:
        near = close_matches(str(name), DEMO_NAMES)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConvscopeError(
            f"unknown demo model {name!r}{hint}; use one of {', '.join(repr(n) for n in DEMO_NAMES)}"
        )
    return key


def demo_weights_path(name: str) -> Traversable:
    """The packaged weights resource of demo ``name`` (an ``importlib.resources`` Traversable).

    Raises:
        ConvscopeError: unknown name.
    """
    return resources.files(__name__).joinpath("weights").joinpath(f"{_check_name(name)}.safetensors")


def build_demo_model(name: str) -> nn.Module:
    """A freshly initialised (untrained) demo architecture, float32, train mode.

    Raises:
        ConvscopeError: unknown name.
    """
    key = _check_name(name)
    if key == "unet3d":
        from .models3d import DemoUNet3D

        return DemoUNet3D()
    from .models import DemoCNN, DemoUNet  # torch imported here, not at package import

    return DemoCNN(num_classes=len(CLASS_NAMES)) if key == "cnn" else DemoUNet(in_channels=1, out_channels=1)


def load_demo(name: str) -> DemoModel:
    """Build a demo model and load its shipped weights.

    Args:
        name: ``"cnn"`` or ``"unet"`` (see :data:`DEMO_NAMES`; case-insensitive).

    Returns:
        :class:`DemoModel` whose model is float32 and in eval mode.

    Raises:
        ConvscopeError: unknown name (the message lists :data:`DEMO_NAMES`).
        ModelLoadError: torch/safetensors missing, or the weights file is missing or does not
            match the architecture.
    """
    key = _check_name(name)
    try:
        import torch
        from safetensors.torch import load as load_safetensors
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelLoadError(
            f"the demo models need torch and safetensors ({exc}); install them with: pip install 'convscope[torch]'"
        ) from exc

    model = build_demo_model(key)
    res = demo_weights_path(key)
    try:
        blob = res.read_bytes()
    except (FileNotFoundError, OSError) as exc:
        raise ModelLoadError(
            f"the weights of demo {key!r} are missing ({res}); reinstall convscope, or regenerate them "
            f"with: python scripts/train_demo.py"
        ) from exc
    state = {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in load_safetensors(blob).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"the weights of demo {key!r} do not match its architecture; regenerate them with: "
            f"python scripts/train_demo.py ({exc})"
        ) from exc
    model.eval()
    spec = _SPECS[key]
    return DemoModel(
        name=key,
        model=model,
        input_shape=spec["input_shape"],
        task=spec["task"],
        class_names=tuple(spec["class_names"]),
        description=spec["description"],
    )


def demo_sample(name: str, seed: int = 0) -> np.ndarray:
    """One synthetic input for demo ``name``, matching its ``input_shape`` without the batch axis.

    Args:
        name: ``"cnn"``, ``"unet"`` or ``"unet3d"``.
        seed: generator seed.

    Returns:
        ``(C, H, W)`` float32 in ``[0, 1]``: ``(3, 64, 64)`` RGB for ``"cnn"``,
        ``(1, 64, 64)`` grayscale for ``"unet"``, ``(1, 32, 32, 16)`` (X, Y, Z RAS+) for ``"unet3d"``.

    Raises:
        ConvscopeError: unknown name.
    """
    key = _check_name(name)
    if key == "unet3d":
        from .volume import sample_volume

        return sample_volume(seed)
    _, _, h, _ = _SPECS[key]["input_shape"]
    return sample_image(_SPECS[key]["task"], seed=seed, size=h)


def __getattr__(attr: str) -> Any:
    """Lazy access to the torch modules (``convscope.demo.DemoUNet`` etc.)."""
    if attr in _LAZY_MODEL_ATTRS:
        from . import models

        return getattr(models, attr)
    if attr in _LAZY_3D_ATTRS:
        from . import models3d

        return getattr(models3d, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
