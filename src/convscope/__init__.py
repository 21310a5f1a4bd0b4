"""convscope: see what a convolutional network learned (kernels) and what it does with an input
(activations), with first-class U-Net support.

    >>> import convscope as cs
    >>> scope = cs.load("demo:unet")
    >>> scope.kernels("enc1.conv").grid().save("enc1_kernels.png")
"""

from ._version import __version__
from .core import targets
from .core.activations import Activation, ActivationSet
from .core.graph import Graph
from .core.kernels import KernelBank
from .core.layers import LayerInfo
from .core.unet import UNetStructure, find_unet
from .errors import (
    ConvscopeError,
    ImageInputError,
    LayerNotFoundError,
    ModelLoadError,
    NotAUNet,
    UnsupportedModelError,
    UntrustedFileError,
)
from .render.picture import Picture
from .scan.result import ScanResult
from .scope import LayerTable, Scope, load
from .unet import UNetFlow

__all__ = [
    "__version__",
    "Scope",
    "targets",
    "load",
    "LayerTable",
    "LayerInfo",
    "KernelBank",
    "Activation",
    "ActivationSet",
    "Picture",
    "Graph",
    "UNetStructure",
    "UNetFlow",
    "ScanResult",
    "find_unet",
    "ConvscopeError",
    "ImageInputError",
    "LayerNotFoundError",
    "ModelLoadError",
    "NotAUNet",
    "UnsupportedModelError",
    "UntrustedFileError",
]
