"""CAM targets from volumes: NIfTI masks read through the reader registry and fitted like the input
(padding, ROI, slices); `convscope cam` on a scan writes plane figures with the geometry in the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("nibabel")
pytest.importorskip("torch")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

import convscope as cs  # noqa: E402
from convscope.adapters.torch_state import model_fingerprint  # noqa: E402
from convscope.errors import ConvscopeError  # noqa: E402
from tests.conftest import assert_same_fingerprint  # noqa: E402
from tests.unet.unet_zoo import UNet  # noqa: E402

from . import files as F  # noqa: E402
from .test_cli_volumes import KW, UNET, convscope, one_line_error  # noqa: E402
from .test_planes import check_letters  # noqa: E402

SHAPE = (13, 11, 9)


@pytest.fixture(scope="module")
def scan_and_mask(tmp_path_factory):
    import nibabel as nib

    folder = tmp_path_factory.mktemp("camvol")
    scan = F.write_nifti(folder / "scan.nii.gz", F.marked_volume(SHAPE), "PSR")
    img = nib.load(str(scan))
    labels = (np.asarray(img.dataobj) >= F.MARK).astype(np.int16)  # stored like the scan (PSR), not canonical
    mask = folder / "seg.nii.gz"
    nib.save(nib.Nifti1Image(labels, img.affine), str(mask))
    return scan, mask


@pytest.fixture(scope="module")
def unet3d():
    torch.manual_seed(0)
    return UNet(levels=3, dims=3).eval()


def test_read_mask_reads_nifti_on_the_canonical_grid(scan_and_mask):
    _scan, mask = scan_and_mask
    got = cs.targets.read_mask(mask)
    truth = F.marked_volume(SHAPE) >= F.MARK  # RAS+ truth; the file is stored PSR
    assert got.shape == SHAPE and got.dtype == bool
    np.testing.assert_array_equal(got, truth)


def test_nifti_mask_target_is_fitted_like_the_padded_input(scan_and_mask, unet3d):
    scan, mask = scan_and_mask
    before = model_fingerprint(unet3d)
    scope = cs.Scope(unet3d)
    prepared = scope.prepare(str(scan))
    padded = prepared.batch.shape[2:]
    assert padded != SHAPE and all(p >= s for p, s in zip(padded, SHAPE))  # padded to the downsampling factor
    # independent: the canonical truth zero-padded at the high end, as the input is
    truth = np.pad(F.marked_volume(SHAPE) >= F.MARK, [(0, p - s) for p, s in zip(padded, SHAPE)])
    from_file = scope.cam(str(scan), layer="down.1.0", target=cs.targets.segmentation(cls=1, mask=str(mask)))
    from_array = scope.cam(str(scan), layer="down.1.0", target=cs.targets.segmentation(cls=1, mask=truth))
    np.testing.assert_allclose(from_file.raw, from_array.raw, rtol=1e-5, atol=1e-8)
    assert float(np.abs(from_file.raw).max()) > 0
    assert from_file.target["region"] == {"mask": str(mask)}
    # another region gives another map: the mask is really used
    whole = scope.cam(str(scan), layer="down.1.0", target=cs.targets.segmentation(cls=1))
    assert not np.allclose(whole.raw, from_file.raw)
    assert_same_fingerprint(before, model_fingerprint(unet3d))


def test_nifti_mask_on_another_grid_is_one_clear_error(tmp_path, scan_and_mask, unet3d):
    scan, _mask = scan_and_mask
    other = F.write_nifti(tmp_path / "small.nii.gz", F.marked_volume((6, 6, 6)))
    with pytest.raises(ConvscopeError, match="the mask small.nii.gz .* is not on the grid of"):
        cs.Scope(unet3d).cam(str(scan), layer="down.1.0", target=cs.targets.segmentation(cls=1, mask=str(other)))
    with pytest.raises(ConvscopeError, match="does not exist"):
        cs.targets.segmentation(mask=str(tmp_path / "nope.nii.gz"))


def test_nifti_mask_for_a_2d_model_on_one_slice(scan_and_mask):
    from torch import nn

    from convscope.io.volume_prep import VolumeOptions

    scan, mask = scan_and_mask
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1)).eval()
    scope = cs.Scope(model)
    scope.volume_options = VolumeOptions(slice="axial:6")
    prepared = scope.prepare(str(scan))
    record = prepared.volume
    from convscope.io.volume_prep import plane_slice

    truth2d = plane_slice(F.marked_volume(SHAPE) >= F.MARK, "axial", 6)
    truth2d = np.pad(truth2d, [(0, p - n) for p, n in zip(record.padded_shape, truth2d.shape)])
    assert truth2d.any() and not truth2d.all()
    from_file = scope.cam(str(scan), layer="2", target=cs.targets.segmentation(cls=0, mask=str(mask)))
    from_array = scope.cam(str(scan), layer="2", target=cs.targets.segmentation(cls=0, mask=truth2d))
    np.testing.assert_allclose(from_file.raw, from_array.raw, rtol=1e-5, atol=1e-8)


def test_cli_cam_on_a_scan_with_a_nifti_mask_writes_planes(tmp_path, scan_and_mask):
    scan, mask = scan_and_mask
    out = tmp_path / "cam"
    r = convscope("cam", UNET, str(scan), "--kwargs", KW, "--layer", "down.1.0", "--layer", "dec.1.0",
                  "--class", "1", "--mask", str(mask), "--window", "500,1000", "--arrays", "-o", str(out))
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    vol = manifest["volume"]
    assert vol["volume"]["shape"] == [1, *SHAPE] and vol["model_input_shape"] == [16, 12, 12]
    assert np.allclose(vol["volume"]["spacing_mm"], F.SPACING)
    planes = [e for e in manifest["files"] if e.get("kind") == "cam_planes"]
    assert sorted(e["file"] for e in planes) == ["dec.1.0.gradcam.planes.png", "down.1.0.gradcam.planes.png"]
    for entry in planes:
        assert entry["target"]["region"] == {"mask": str(mask)} and entry["convention"] == "radiological"
        assert entry["geometry"]["volume"]["shape"] == [1, *SHAPE] and entry["geometry"]["volume"]["affine"]
        pixels = np.asarray(Image.open(out / entry["file"]).convert("RGB"))
        check_letters(pixels, entry)
        assert set(entry["planes"]) == {"axial", "coronal", "sagittal"}
    assert (out / "down.1.0.gradcam.png").is_file() and (out / "down.1.0.gradcam.npz").is_file()


def test_cli_cam_mask_on_another_grid_is_one_line(tmp_path, scan_and_mask):
    scan, _mask = scan_and_mask
    other = F.write_nifti(tmp_path / "small.nii.gz", F.marked_volume((6, 6, 6)))
    one_line_error(convscope("cam", UNET, str(scan), "--kwargs", KW, "--mask", str(other), "-o", str(tmp_path / "o")),
                   "small.nii.gz", "not on the grid")
