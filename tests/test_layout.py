"""The package layout: framework subpackages, old module names as shims, no framework at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_importing_the_layers_imports_no_framework():
    out = run(
        "import sys, convscope, convscope.adapters.base, convscope.adapters._capture, convscope.adapters.sniff, "
        "convscope.adapters.registry, convscope.adapters.torch, convscope.adapters.keras, convscope.adapters.onnx, "
        "convscope.adapters.onnx.kinds, convscope.adapters.torch.kinds, convscope.core.kinds, "
        "convscope.core.merges, convscope.core.stats, convscope.core.fused, convscope.unet_flow\n"
        "print(sorted(m for m in ('torch', 'keras', 'onnx', 'tensorflow', 'jax', 'numba') if m in sys.modules))"
    )
    assert out == "[]"


def test_old_module_names_are_the_new_modules():
    out = run(
        "import importlib\n"
        "pairs = [('torch_export', 'torch.export'), ('torch_files', 'torch.files'), ('torch_state', 'torch.state'),"
        " ('torch_kinds', 'torch.kinds'), ('keras_adapter', 'keras.adapter'), ('keras_graph', 'keras.graph'),"
        " ('keras_unet', 'keras.unet'), ('keras_grad', 'keras.grad'), ('torch_adapter', 'torch.adapter'),"
        " ('torch_graph', 'torch.graph'), ('torch_rf', 'torch.rf'), ('onnx_adapter', 'onnx.adapter')]\n"
        "print(all(importlib.import_module('convscope.adapters.' + a) is importlib.import_module('convscope.adapters.' + b)"
        " for a, b in pairs))"
    )
    assert out == "True"


def test_nothing_in_adapters_imports_the_top_level_loading_module():
    adapters = SRC / "convscope" / "adapters"
    offenders = [str(p.relative_to(SRC)) for p in adapters.rglob("*.py") if "loading import" in p.read_text()]
    assert offenders == []
