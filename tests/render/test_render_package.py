"""The render package: public names and import-time dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import convscope.render as render

SRC = Path(__file__).resolve().parents[2] / "src"


def test_public_names_are_exported() -> None:
    expected = {
        "Picture", "tile", "render_activation_grid", "render_kernel_grid", "render_overlay",
        "normalize", "get_colormap", "apply_colormap",
    }
    assert expected <= set(render.__all__)
    assert all(hasattr(render, name) for name in render.__all__)


def test_importing_render_does_not_import_matplotlib() -> None:
    code = (
        "import sys, numpy as np, convscope.render as r;"
        "r.render_activation_grid(np.zeros((2, 4, 4), np.float32));"
        "r.render_kernel_grid(np.zeros((2, 2, 3, 3), np.float32));"
        "print('matplotlib' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "False"
