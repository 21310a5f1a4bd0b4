"""Pure rendering: numpy arrays in, RGB ``uint8`` images out. No framework imports.

Public entry points: :class:`Picture`, :func:`render_activation_grid`, :func:`render_kernel_grid`,
:func:`render_overlay`, :func:`tile`, :func:`normalize`, :func:`get_colormap`, :func:`apply_colormap`,
:func:`map_figure` (one colour-mapped map with its colour bar) and :func:`compose` (a publication
figure of several pictures). Every picture carries its figure (``Picture.scene``), written as PNG,
SVG or PDF by ``Picture.save``.
matplotlib is never imported here (only, lazily, for a colormap name that is not bundled).
"""

from .colormap import apply_colormap, get_colormap
from .figure import compose, map_figure
from .grid import render_activation_grid, render_kernel_grid, render_overlay, tile
from .normalize import Normalized, normalize
from .picture import Picture

__all__ = [
    "Picture",
    "tile",
    "render_activation_grid",
    "render_kernel_grid",
    "render_overlay",
    "normalize",
    "Normalized",
    "get_colormap",
    "apply_colormap",
    "compose",
    "map_figure",
]
