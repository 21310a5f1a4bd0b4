"""The Ray engine (local Ray, 2 CPUs, no dashboard) gives the local engine's state bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import convscope as cs  # noqa: E402

from .nets import TinyNet  # noqa: E402
from .test_scan import _write_images  # noqa: E402


def test_ray_engine_equals_local(tmp_path):
    _write_images(tmp_path / "d", 11, size=12, seed=4)
    (tmp_path / "d" / "bad.png").write_bytes(b"nope")
    scope = cs.Scope(TinyNet().eval())
    local = scope.scan(tmp_path / "d", top_k=3, batch_size=3, crops=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = scope.scan(tmp_path / "d", top_k=3, batch_size=3, crops=False, engine="ray", ray_actors=2)
    finally:
        ray.shutdown()
    assert remote.images == local.images == 11
    assert remote.skipped == local.skipped and len(local.skipped) == 1
    assert remote.state.equal(local.state)  # exact, mean/variance included (same merge order)
    np.testing.assert_array_equal(remote.layer("conv2").top_id, local.layer("conv2").top_id)
