"""The bundled 3D demo U-Net: shipped weights, quality on fresh volumes, the generated NIfTI."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nib = pytest.importorskip("nibabel")

from convscope.demo import DEMO_NAMES, demo_weights_path, load_demo  # noqa: E402
from convscope.demo.volume import VOLUME_SPACING, make_volumes, sample_volume, write_demo_nifti  # noqa: E402
from convscope.io.volumes import read_nifti  # noqa: E402


def test_unet3d_dice_on_fresh_volumes():
    demo = load_demo("unet3d")
    x, m = make_volumes(16, seed=12345)
    with torch.no_grad():
        pred = demo.model(torch.from_numpy(x)).numpy() > 0
    truth = m > 0.5
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert dice >= 0.9


def test_demo_weights_stay_small_and_float16():
    from safetensors.numpy import load as load_np

    assert "unet3d" in DEMO_NAMES
    total = sum(len(demo_weights_path(n).read_bytes()) for n in DEMO_NAMES)
    assert total < 1.5 * 1024 * 1024
    dtypes = {str(v.dtype) for v in load_np(demo_weights_path("unet3d").read_bytes()).values()}
    assert dtypes <= {"float16", "int64"}


def test_generated_nifti_reads_back_to_the_sample(tmp_path):
    scan, labels = write_demo_nifti(tmp_path, seed=4)
    assert nib.aff2axcodes(nib.load(str(scan)).affine) == ("L", "P", "S")
    vol = read_nifti(scan)
    np.testing.assert_array_equal(vol.data[0], sample_volume(4)[0])
    assert vol.spacing == pytest.approx(VOLUME_SPACING)
    organ = read_nifti(labels).data[0] > 0
    assert organ[: organ.shape[0] // 2].sum() > organ[organ.shape[0] // 2:].sum()  # on the patient's left (low x)


def test_demo_writes_the_volume_pages(tmp_path):
    from convscope.cli.demo import _volume_demo

    lines = []
    section = _volume_demo(tmp_path / "unet3d", seed=0, echo=lines.append)
    assert section["href"] == "unet3d/index.html"
    page = (tmp_path / "unet3d" / "index.html").read_text()
    assert "output.planes.png" in page and "head.planes.png" in page and "Dice" in page
    assert (tmp_path / "unet3d" / "scan.nii.gz").exists()
