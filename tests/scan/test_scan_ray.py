"""The Ray engine (local Ray, 2 CPUs, no dashboard) gives the local engine's state bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import convscope as cs  # noqa: E402

from .nets import TinyNet  # noqa: E402
from .test_scan import _write_images, torch_threads  # noqa: E402


def _local_and_ray(scope, data, *, top_k: int):
    """The local engine's scan of ``data`` and the Ray engine's (a local Ray with 2 CPUs, 2 actors)."""
    local = scope.scan(data, top_k=top_k, batch_size=3, crops=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = scope.scan(data, top_k=top_k, batch_size=3, crops=False, engine="ray", ray_actors=2)
    finally:
        ray.shutdown()
    return local, remote


def test_ray_engine_equals_local(tmp_path):
    _write_images(tmp_path / "d", 11, size=12, seed=4)
    (tmp_path / "d" / "bad.png").write_bytes(b"nope")
    local, remote = _local_and_ray(cs.Scope(TinyNet().eval()), tmp_path / "d", top_k=3)
    assert remote.images == local.images == 11
    assert remote.skipped == local.skipped and len(local.skipped) == 1
    assert remote.state.equal(local.state)  # exact, mean/variance included (same merge order)
    np.testing.assert_array_equal(remote.layer("conv2").top_id, local.layer("conv2").top_id)


def test_every_forward_pass_runs_on_one_torch_thread_on_driver_and_actors(tmp_path):
    """A model whose convolution gives other float bits on 2 torch threads than on 1: the driver's first
    chunk, the actors' chunks and the local engine's all run on one thread, so the states are equal."""
    import torch

    if torch.get_num_threads() < 2:
        pytest.skip("torch runs on one thread here")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
                                torch.nn.Conv2d(6, 6, 3, padding=1), torch.nn.Conv2d(6, 2, 1)).eval()
    x = torch.randn(3, 3, 12, 12)
    with torch.no_grad():
        two = model(x)  # the 1x1 convolution's bits depend on the thread count on this CPU
        with torch_threads(1):
            one = model(x)
    if torch.equal(one, two):
        pytest.skip("this torch computes the same bits on 1 and 2 threads")
    _write_images(tmp_path / "d", 9, size=12, seed=5)
    local, remote = _local_and_ray(cs.Scope(model), tmp_path / "d", top_k=2)
    assert remote.state.equal(local.state)


def test_ray_engine_scans_the_slices_of_volumes_as_the_local_engine(tmp_path):
    """``--slices axial``: each volume a chunk of its own, its slices in batches of batch_size, on the actors too."""
    pytest.importorskip("nibabel")
    from convscope.io.volume_prep import VolumeOptions
    from tests.volumes import files as F

    from .nets import SliceNet

    rng = np.random.default_rng(12)
    (tmp_path / "v").mkdir()
    for name, depth in (("a.nii.gz", 4), ("b.nii.gz", 7), ("c.nii.gz", 2)):
        F.write_nifti(tmp_path / "v" / name, rng.random((10, 6, depth)).astype(np.float32), "LPS")
    scope = cs.Scope(SliceNet().eval())
    scope.volume_options = VolumeOptions(slices="axial")
    local, remote = _local_and_ray(scope, tmp_path / "v", top_k=2)
    assert local.images == remote.images == 13
    assert remote.state.equal(local.state)
