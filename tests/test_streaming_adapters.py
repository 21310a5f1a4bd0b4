"""Every adapter that declares streaming (Keras: tests/adapters/keras/test_streaming.py, run per backend) hands activations over as the forward pass produces them:
the process's resident memory during a streamed capture does not grow with the number of layers
captured (each activation is 4 MiB; collecting 24 of them needs 96 MiB).

Resident memory (``/proc/self/statm``) is sampled in the callback, so it counts the framework's
tensors too, not only numpy's; a collecting (non-streamed) capture of the same layers is the
control that shows the measurement can fail.
"""

from __future__ import annotations

import ctypes
import gc
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convscope.adapters.base import capabilities

pytestmark = pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")

MIB = 2**20
DEPTH = 24
SHAPE = (1, 16, 256, 256)  # 4 MiB float32 per activation
ACT = int(np.prod(SHAPE)) * 4


def _fixed_mmap_threshold() -> None:
    """Make glibc serve (and return) every large block with mmap, so resident memory follows live memory.

    glibc raises its mmap threshold after a large block is freed, and later blocks then come from the
    heap, where freed pages stay resident and are reused without growing RSS; a fixed threshold
    (``mallopt(M_MMAP_THRESHOLD, 128 KiB)``) turns that off. No-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def streamed_growth(adapter: Any, names: list[str]) -> int:
    """Peak RSS above the starting point while streaming ``names`` (callback drops each array)."""
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    adapter.capture(x, names[:1], on_activation=lambda _n, _a: None)  # warm up kernels and caches
    _fixed_mmap_threshold()
    gc.collect()
    start = rss()
    peak = [start]

    def sink(_name: str, _array: np.ndarray) -> None:
        peak[0] = max(peak[0], rss())

    adapter.capture(x, names, on_activation=sink)
    return peak[0] - start


def collected_growth(adapter: Any, names: list[str]) -> int:
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    _fixed_mmap_threshold()
    gc.collect()
    start = rss()
    result = adapter.capture(x, names)
    grown = rss() - start
    del result
    return grown


def check(adapter: Any, names: list[str]) -> None:
    assert capabilities(adapter)["streaming"]
    assert len(names) >= DEPTH
    few = streamed_growth(adapter, names[:4])
    many = streamed_growth(adapter, names)
    assert many - few < 6 * ACT, f"streaming {len(names)} layers grew {many / MIB:.0f} MiB vs {few / MIB:.0f} MiB for 4"
    assert collected_growth(adapter, names) > DEPTH // 3 * ACT  # the control: collecting does grow


def torch_chain() -> Any:
    import torch.nn as nn

    layers = [nn.Conv2d(16, 16, 1) for _ in range(DEPTH)]
    return nn.Sequential(*layers).eval()


def test_torch_adapter_streams() -> None:
    from convscope.adapters import adapter_for

    adapter = adapter_for(torch_chain())
    check(adapter, [str(i) for i in range(DEPTH)])


def test_pt2_adapter_streams(tmp_path: Path) -> None:
    import torch

    from convscope.adapters.torch_export import ExportedProgramAdapter

    program = torch.export.export(torch_chain(), (torch.zeros(SHAPE),))
    adapter = ExportedProgramAdapter(program)
    check(adapter, [str(i) for i in range(DEPTH)])


def test_adapters_that_collect_say_so(tmp_path: Path) -> None:
    import convscope
    from tests.adapters.onnx.nets import TinyCNN, export_onnx, make

    onnx = convscope.load(export_onnx(make(TinyCNN), tmp_path / "m.onnx", (1, 4, 8, 8))).adapter
    assert not capabilities(onnx)["streaming"]


