"""NIfTI and DICOM readers: orientation against nibabel, scaling, series assembly, refusals."""

from __future__ import annotations

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

from convscope.core.volume import Volume, axcodes  # noqa: E402
from convscope.errors import ImageInputError  # noqa: E402
from convscope.io.readers import reader_for_path  # noqa: E402
from convscope.io.volumes import read_dicom, read_nifti, read_volume, stack_channels  # noqa: E402

from . import files as F  # noqa: E402


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return F.marked_volume()


@pytest.mark.parametrize("codes", ["LAS", "PSR", "LPI", "SRP"])
def test_nifti_reoriented_like_nibabel_closest_canonical(tmp_path, truth, codes):
    path = F.write_nifti(tmp_path / f"v_{codes}.nii.gz", truth, codes)
    stored = nib.load(str(path))
    assert "".join(nib.aff2axcodes(stored.affine)) == codes  # the file really is stored that way
    vol = read_nifti(path)
    ref = nib.as_closest_canonical(stored)
    assert vol.data.dtype == np.float32 and vol.data.shape == (1, *truth.shape)
    np.testing.assert_array_equal(vol.data[0], ref.get_fdata())
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6)
    np.testing.assert_array_equal(vol.data[0], truth)  # and equal to the RAS+ truth
    assert vol.orientation == tuple(codes)
    np.testing.assert_allclose(vol.spacing, F.SPACING, rtol=1e-6)  # anisotropic spacing follows the axes


def test_oblique_nifti_stays_oblique_without_resampling(tmp_path, truth):
    path = F.write_nifti(tmp_path / "oblique.nii", truth, "LPS", rotate_deg=25.0)
    stored = nib.load(str(path))
    vol = read_nifti(path)
    ref = nib.as_closest_canonical(stored)
    np.testing.assert_array_equal(vol.data[0], ref.get_fdata())
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6)
    assert abs(vol.affine[0, 1]) > 0.1  # still oblique: off-diagonal terms kept
    np.testing.assert_allclose(vol.spacing, F.SPACING, rtol=1e-6)


def test_from_array_matches_nibabel_on_random_axis_orders():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(5, 6, 7)).astype(np.float32)
    for _ in range(12):
        perm = rng.permutation(3)
        aff = np.eye(4)
        aff[:3, :3] = np.eye(3)[:, perm] * rng.choice([-1, 1], size=3) * rng.uniform(0.5, 3, size=3)
        aff[:3, 3] = rng.normal(size=3) * 10
        vol = Volume.from_array(data, aff, source="array")
        ref = nib.as_closest_canonical(nib.Nifti1Image(data, aff))
        np.testing.assert_array_equal(vol.data[0], ref.get_fdata(dtype=np.float32))
        np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-9)
        assert axcodes(aff) == nib.aff2axcodes(aff)


def test_big_endian_int16_with_scl_slope(tmp_path, truth):
    path = F.write_nifti(tmp_path / "be.nii", truth, "LAS", dtype="int16", big_endian=True, slope=0.5, inter=-3.0)
    assert nib.load(str(path)).header.endianness == ">"
    vol = read_nifti(path)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data[0], truth)  # truth values are multiples of 0.5 away from -3
    assert vol.info["scl_slope"] == 0.5 and vol.info["scl_inter"] == -3.0
    assert vol.info["stored_dtype"] == "big-endian int16"


def test_4d_nifti_last_axis_is_channels(tmp_path, truth):
    four = np.stack([truth, -truth, truth * 2], axis=-1)
    aff = F.ras_affine()
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = truth.shape[0] - 1
    nib.save(nib.Nifti1Image(four[::-1].copy(), aff @ flip), str(tmp_path / "four.nii.gz"))  # stored LAS
    vol = read_volume(tmp_path / "four.nii.gz")
    assert vol.data.shape == (3, *truth.shape)
    np.testing.assert_allclose(vol.data[1], -truth)
    np.testing.assert_allclose(vol.data[2], 2 * truth)
    np.testing.assert_allclose(vol.affine, aff, atol=1e-9)


def test_registry_picks_readers_by_full_suffix_and_content(tmp_path, truth):
    path = F.write_nifti(tmp_path / "v.nii.gz", truth)
    assert reader_for_path(path).name == "nifti"  # not ".gz"
    F.write_dicom_series(tmp_path / "ct", truth)
    assert reader_for_path(tmp_path / "ct").name == "dicom"
    one = sorted((tmp_path / "ct").iterdir())[0]
    renamed = tmp_path / "IM0001"  # no extension: recognised by the DICM marker
    renamed.write_bytes(one.read_bytes())
    assert reader_for_path(renamed).name == "dicom"


# -- DICOM -------------------------------------------------------------------------------------


def hu_truth(truth: np.ndarray) -> np.ndarray:
    return (2.0 * truth - 1024.0).astype(np.float32)  # even offsets: exact after slope 2 / intercept -1024


def test_dicom_series_sorted_by_position_not_names_or_instance_numbers(tmp_path, truth):
    hu = hu_truth(truth)
    folder = F.write_dicom_series(tmp_path / "ct", hu)
    vol = read_dicom(folder)
    assert vol.units == "HU"
    np.testing.assert_array_equal(vol.data[0], hu)  # HU after RescaleSlope/Intercept, slices in position order
    assert vol.orientation == ("L", "P", "S")
    np.testing.assert_allclose(vol.affine, np.diag([*F.SPACING, 1.0]), atol=1e-5)
    assert vol.spacing[2] == pytest.approx(2.5)  # from the positions, not SliceThickness (5.0)
    assert vol.data[0].min() == pytest.approx(-1024.0)


def test_dicom_series_duplicate_positions_refused(tmp_path, truth):
    x, y, z = truth.shape
    positions = [[-(x - 1) * 0.8, -(y - 1) * 1.0, k * 2.5] for k in range(z)]
    positions[3] = list(positions[2])
    folder = F.write_dicom_series(tmp_path / "dup", hu_truth(truth), positions_override=positions)
    with pytest.raises(ImageInputError, match="duplicate positions"):
        read_dicom(folder)


def test_dicom_series_irregular_spacing_refused(tmp_path, truth):
    x, y, z = truth.shape
    zs = [0, 2.5, 5, 7.5, 12.5, 15, 17.5, 20]  # one slice missing
    positions = [[-(x - 1) * 0.8, -(y - 1) * 1.0, v] for v in zs[:z]]
    folder = F.write_dicom_series(tmp_path / "gap", hu_truth(truth), positions_override=positions)
    with pytest.raises(ImageInputError, match="irregular slice spacing"):
        read_dicom(folder)


def test_several_series_listed_then_chosen(tmp_path, truth):
    hu = hu_truth(truth)
    F.write_dicom_series(tmp_path / "study", hu, series_uid="1.2.3.4.100")
    F.write_dicom_series(tmp_path / "study" / "b", hu[:, :, ::-1].copy(), series_uid="1.2.3.4.101")
    with pytest.raises(ImageInputError, match=r"2 DICOM series: 1\.2\.3\.4\.100 .*1\.2\.3\.4\.101.*--series"):
        read_dicom(tmp_path / "study")
    vol = read_dicom(tmp_path / "study", series="1.2.3.4.101")
    np.testing.assert_array_equal(vol.data[0], hu[:, :, ::-1])
    with pytest.raises(ImageInputError, match="is not in"):
        read_dicom(tmp_path / "study", series="9.9")


def test_monochrome1_inverted(tmp_path, truth):
    hu = hu_truth(truth)
    folder = F.write_dicom_series(tmp_path / "m1", hu, photometric="MONOCHROME1", slope=1.0, intercept=0.0)
    vol = read_dicom(folder)
    stored = np.round(hu).astype(np.int16)
    np.testing.assert_array_equal(vol.data[0], -1.0 - stored)  # mirrored in the signed 16-bit range
    assert np.corrcoef(vol.data[0].ravel(), hu.ravel())[0, 1] == pytest.approx(-1.0)


def test_compressed_without_decoder_names_the_package(tmp_path, truth):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLosslessSV1

    if get_decoder(JPEGLosslessSV1).is_available:
        pytest.skip("a JPEG Lossless decoder is installed here")
    folder = F.write_dicom_series(tmp_path / "jpeg", hu_truth(truth), transfer_syntax=JPEGLosslessSV1)
    with pytest.raises(ImageInputError, match=r"compressed \(JPEG Lossless.*pip install pylibjpeg pylibjpeg-libjpeg"):
        read_dicom(folder)


def test_multiframe_frames_sorted_and_rescaled_per_frame(tmp_path, truth):
    hu = hu_truth(truth)
    path = F.write_multiframe(tmp_path / "enhanced.dcm", hu)
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.data[0], hu)
    np.testing.assert_allclose(vol.spacing, F.SPACING, rtol=1e-6)
    assert vol.units == "HU" and vol.info["frames"] == truth.shape[2]


def test_single_dicom_file_is_one_slice(tmp_path, truth):
    folder = F.write_dicom_series(tmp_path / "ct", hu_truth(truth))
    vol = read_volume(sorted(folder.iterdir())[0])
    assert vol.shape[2] == 1 and vol.shape[:2] == truth.shape[:2]


def test_channels_must_share_the_grid(tmp_path, truth):
    a = read_nifti(F.write_nifti(tmp_path / "a.nii.gz", truth, "LAS"))
    b = read_nifti(F.write_nifti(tmp_path / "b.nii.gz", truth * 2, "PSR"))  # other storage, same grid
    both = stack_channels([a, b], ["a", "b"])
    assert both.data.shape == (2, *truth.shape) and both.channel_names == ("a", "b")
    c = read_nifti(F.write_nifti(tmp_path / "c.nii.gz", F.marked_volume((12, 10, 6))))
    with pytest.raises(ImageInputError, match="resampled to one grid"):
        stack_channels([a, c], ["a", "c"])
    shifted = Volume(data=a.data, affine=a.affine + np.eye(4) * 0 + np.pad(np.ones((3, 1)), ((0, 1), (3, 0))),
                     spacing=a.spacing, orientation=a.orientation, source="s")
    with pytest.raises(ImageInputError, match="different affines"):
        stack_channels([a, shifted], ["a", "s"])


def test_gantry_tilt_keeps_the_sheared_affine(tmp_path, truth):
    x, y, z = truth.shape
    positions = [[-(x - 1) * 0.8, -(y - 1) * 1.0 + 0.5 * k, 2.5 * k] for k in range(z)]  # table moves in y too
    vol = read_dicom(F.write_dicom_series(tmp_path / "tilt", hu_truth(truth), positions_override=positions))
    np.testing.assert_array_equal(vol.data[0], hu_truth(truth))
    assert vol.affine[1, 2] == pytest.approx(-0.5)  # LPS +y is RAS -y; no resampling
    assert vol.spacing[2] == pytest.approx(np.hypot(0.5, 2.5))


def test_folder_skips_files_that_are_not_dicom_images(tmp_path, truth):
    folder = F.write_dicom_series(tmp_path / "ct", hu_truth(truth))
    (folder / "README.txt").write_text("not dicom")
    (folder / "notes.dcm").write_bytes(b"garbage that is not DICOM")
    np.testing.assert_array_equal(read_dicom(folder).data[0], hu_truth(truth))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(ImageInputError, match="has no DICOM images"):
        read_dicom(empty)


def test_missing_position_refused(tmp_path, truth):
    folder = F.write_dicom_series(tmp_path / "ct", hu_truth(truth))
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(str(first))
    del ds.ImagePositionPatient
    ds.save_as(str(first))
    with pytest.raises(ImageInputError, match="ImagePositionPatient is missing"):
        read_dicom(folder)


def test_itk_formats_name_the_extra_when_simpleitk_is_missing(tmp_path):
    import importlib.util

    if importlib.util.find_spec("SimpleITK") is not None:
        pytest.skip("SimpleITK is installed")
    path = tmp_path / "scan.mha"
    path.write_bytes(b"ObjectType = Image\n")
    with pytest.raises(ImageInputError, match=r"convscope\[itk\]"):
        read_volume(path)
