"""The viewer reads volumes through the same registry: uploads and the --images folder."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

pytest.importorskip("nibabel")
pytest.importorskip("pydicom")

from convscope.core.volume import Volume  # noqa: E402
from convscope.server.images import (  # noqa: E402
    FOLDER_SUFFIXES,
    ImageRejected,
    decode_image,
    read_folder_image,
    scan_image_folder,
)

from . import files as F  # noqa: E402

LIMITS = {"max_bytes": 10_000_000, "max_pixels": 1_000_000}


def test_folder_suffixes_come_from_the_registry():
    for suffix in (".png", ".npy", ".nii", ".nii.gz", ".dcm"):
        assert suffix in FOLDER_SUFFIXES


@pytest.mark.parametrize("gz", [False, True])
def test_nifti_upload_decoded_as_volume(tmp_path, gz):
    truth = F.marked_volume()
    path = F.write_nifti(tmp_path / "v.nii", truth, "LAS")
    data = path.read_bytes()
    if gz:
        data = gzip.compress(data)
    vol = decode_image(data, content_type="application/gzip" if gz else "application/octet-stream", **LIMITS)
    assert isinstance(vol, Volume)
    np.testing.assert_array_equal(vol.data[0], truth)
    with pytest.raises(ImageRejected) as err:
        decode_image(data, content_type="image/png", **LIMITS)
    assert err.value.status == 415


def test_volume_voxel_limit_from_the_header(tmp_path):
    path = F.write_nifti(tmp_path / "v.nii.gz", F.marked_volume((40, 40, 40)))
    with pytest.raises(ImageRejected) as err:
        decode_image(path.read_bytes(), content_type=None, max_bytes=10_000_000, max_pixels=1000)
    assert err.value.status == 413 and "voxels" in str(err.value)


def test_dicom_upload(tmp_path):
    folder = F.write_dicom_series(tmp_path / "ct", F.marked_volume())
    one = sorted(folder.iterdir())[0]
    vol = decode_image(one.read_bytes(), content_type="application/dicom", **LIMITS)
    assert isinstance(vol, Volume) and vol.units == "HU"


def test_images_folder_lists_series_folders_and_nifti(tmp_path):
    root = tmp_path / "images"
    F.write_dicom_series(root / "patient1" / "ct", F.marked_volume())
    F.write_nifti(root / "mr.nii.gz", F.marked_volume())
    found = scan_image_folder(root)
    assert [f.name for f in found] == ["mr.nii.gz", "patient1/ct/"]
    series = read_folder_image(root, found[1], **LIMITS)
    assert isinstance(series, Volume) and series.shape == F.SHAPE
    nifti = read_folder_image(root, found[0], **LIMITS)
    assert isinstance(nifti, Volume)


def test_series_folder_with_a_link_outside_is_refused(tmp_path):
    root = tmp_path / "images"
    F.write_dicom_series(root / "ct", F.marked_volume())
    outside = F.write_dicom_series(tmp_path / "secret", F.marked_volume(), series_uid="9.9")
    os.symlink(sorted(outside.iterdir())[0], root / "ct" / "zz.dcm")
    assert [f.name for f in scan_image_folder(root)] == []
