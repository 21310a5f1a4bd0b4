"""DICOM Segmentation objects (SEG) as label maps: written in the tests with pydicom, read with pydicom only.

The truth is a canonical RAS+ label array; the SEG is drawn on a DICOM series of the same scan (LPS
storage, shuffled files) with shuffled frames; it must land on the same voxels as a NIfTI label map
of the same content after the canonical reorientation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")
pytest.importorskip("pydicom")

from convscope.errors import ImageInputError  # noqa: E402
from convscope.io.volume_prep import VolumeOptions, prepare_volume, read_label_map  # noqa: E402
from convscope.io.volumes import read_volume  # noqa: E402

from . import files as F  # noqa: E402
from .test_cli_volumes import convscope, one_line_error  # noqa: E402

SHAPE = (13, 11, 9)  # 143 pixels a frame: bit-packed frames are not byte-aligned
SEGMENTS = {1: "marker", 2: "corner"}


def _truth() -> np.ndarray:
    vol = F.marked_volume(SHAPE)
    truth = np.zeros(SHAPE, dtype=np.int32)
    truth[vol >= F.MARK] = 1          # left-anterior-superior block
    truth[10:, :3, 1:4] = 2           # right-posterior-inferior corner (asymmetric: flips would show)
    return truth


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("segscan")
    return F.write_dicom_series(root / "series", F.marked_volume(SHAPE))


def _nifti_like(path: Path, volume, truth: np.ndarray, codes: str = "LPS") -> Path:
    """The same labels as a NIfTI on the scan's grid, stored in another orientation (``codes``)."""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, ornt_transform

    img = nib.Nifti1Image(truth.astype(np.int16), volume.affine)
    nib.save(img.as_reoriented(ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(codes)))), str(path))
    return path


def test_binary_bit_packing_is_dicom_lsb_first(tmp_path, series):
    """The helper's packing (numpy, LSB first) is pydicom's pack_bits, and pydicom unpacks it frame by frame."""
    import pydicom
    from pydicom.pixels import pack_bits

    path = F.write_seg(tmp_path / "seg.dcm", _truth(), SEGMENTS)
    ds = pydicom.dcmread(str(path))
    assert ds.BitsAllocated == 1 and ds.Rows * ds.Columns % 8 != 0
    frames = ds.pixel_array
    assert frames.shape == (ds.NumberOfFrames, ds.Rows, ds.Columns) and set(np.unique(frames)) <= {0, 1}
    assert pack_bits(frames.reshape(-1)) == ds.PixelData


def test_binary_segments_land_where_the_nifti_labels_are(tmp_path, series):
    volume = read_volume(series)
    truth = _truth()
    seg = F.write_seg(tmp_path / "seg.dcm", truth, SEGMENTS)
    nifti = _nifti_like(tmp_path / "seg.nii.gz", volume, truth, "LPS")
    from_seg, names, notes = read_label_map(str(seg), volume)
    from_nifti, _, _ = read_label_map(str(nifti), volume)
    np.testing.assert_array_equal(from_seg, from_nifti)
    np.testing.assert_array_equal(from_seg, truth)  # the canonical truth, voxel for voxel
    assert names == SEGMENTS and "BINARY" in notes[0] and "label value = SegmentNumber" in notes[0]
    # the marker label sits on the marker of the scan (left-anterior-superior), label 2 at the opposite corner
    assert np.all(volume.data[0][from_seg == 1] == F.MARK)
    assert from_seg[SHAPE[0] - 1, 0, 2] == 2 and from_seg[0, SHAPE[1] - 1, SHAPE[2] - 1] == 1


def test_seg_names_and_notes_reach_the_record(tmp_path, series):
    volume = read_volume(series)
    seg = F.write_seg(tmp_path / "seg.dcm", _truth(), SEGMENTS)
    _batch, record = prepare_volume(volume, VolumeOptions(labels=str(seg)), spatial_dims=3, factor=4)
    assert record.label_names == SEGMENTS
    described = record.describe()
    assert described["label_names"] == {"1": "marker", "2": "corner"}
    assert any("DICOM SEG seg.dcm: BINARY" in n for n in described["notes"])
    _b, sliced = prepare_volume(volume, VolumeOptions(labels=str(seg), slice="axial:4"), spatial_dims=2)
    assert sliced.label_names == SEGMENTS


def test_fractional_threshold_at_half_the_maximum(tmp_path, series):
    volume = read_volume(series)
    truth = _truth()
    fractions = np.random.default_rng(0).uniform(0.3, 0.7, SHAPE)
    fractions[0, SHAPE[1] - 1, SHAPE[2] - 1] = 128 / 255   # stored 128: >= 127.5 -> inside
    fractions[1, SHAPE[1] - 1, SHAPE[2] - 1] = 127 / 255   # stored 127: outside
    seg = F.write_seg(tmp_path / "frac.dcm", truth, SEGMENTS, kind="FRACTIONAL", fractions=fractions)
    labels, names, notes = read_label_map(str(seg), volume)
    stored = np.round(fractions * 255)
    expected = np.where(stored >= 127.5, truth, 0)
    np.testing.assert_array_equal(labels, expected)
    assert labels[0, SHAPE[1] - 1, SHAPE[2] - 1] == 1 and labels[1, SHAPE[1] - 1, SHAPE[2] - 1] == 0
    assert 0 < (labels > 0).sum() < (truth > 0).sum()
    assert "FRACTIONAL (PROBABILITY), inside where value >= 0.5 x MaximumFractionalValue (255)" in notes[0]
    assert names == SEGMENTS


def test_refusals_in_python(tmp_path, series):
    volume = read_volume(series)
    truth = _truth()
    overlap = {1: truth == 1, 2: (truth == 1) | (truth == 2)}
    with pytest.raises(ImageInputError, match=r"segments 1 \(marker\) and 2 \(corner\) overlap"):
        read_label_map(str(F.write_seg(tmp_path / "o.dcm", overlap, SEGMENTS)), volume)
    with pytest.raises(ImageInputError, match="matching no slice"):
        read_label_map(str(F.write_seg(tmp_path / "z.dcm", truth, SEGMENTS, z_shift_mm=F.SPACING[2] / 2)), volume)
    with pytest.raises(ImageInputError, match="for another grid"):
        read_label_map(str(F.write_seg(tmp_path / "g.dcm", truth, SEGMENTS, frame_size=(8, 8))), volume)
    with pytest.raises(ImageInputError, match="for another grid"):
        read_label_map(str(F.write_seg(tmp_path / "s.dcm", truth, SEGMENTS, pixel_spacing=(2.0, 2.0))), volume)


def test_refusals_through_the_console_script(tmp_path, series):
    truth = _truth()
    overlap = {1: truth == 1, 2: (truth == 1) | (truth == 2)}
    cases = [
        (F.write_seg(tmp_path / "o.dcm", overlap, SEGMENTS), "overlap"),
        (F.write_seg(tmp_path / "z.dcm", truth, SEGMENTS, z_shift_mm=F.SPACING[2] / 2), "matching no slice"),
        (F.write_seg(tmp_path / "g.dcm", truth, SEGMENTS, frame_size=(8, 8)), "for another grid"),
    ]
    for seg, needle in cases:
        out = tmp_path / f"out-{seg.stem}"
        r = convscope("activations", "tests.cli.models:TinyNet", str(series), "--kwargs", '{"in_channels": 1}',
                      "--slice", "axial:4", "--label-map", str(seg), "-o", str(out))
        one_line_error(r, needle, "--label-map")
        assert not out.exists()


def test_unet_with_a_seg_label_map(tmp_path, series):
    """A 3D U-Net on the DICOM series with the SEG: outlines, Dice per segment number, names in the manifest."""
    seg = F.write_seg(tmp_path / "seg.dcm", _truth(), SEGMENTS)
    out = tmp_path / "u"
    r = convscope("unet", "tests.unet.unet_zoo:UNet", str(series), "--kwargs", '{"dims": 3, "levels": 3}',
                  "--label-map", str(seg), "-o", str(out))
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["volume"]["label_names"] == {"1": "marker", "2": "corner"}
    entry = next(e for e in manifest["files"] if e["file"] == "output.planes.png")
    assert entry["label_names"] == {"1": "marker", "2": "corner"}
    assert {"1", "2"} <= set(entry["dice"]) and all(v is None or 0 <= v <= 1 for v in entry["dice"].values())


def test_segment_names_drawn_as_a_legend(tmp_path, series):
    """Plane figures with a SEG label map carry a legend: each SegmentLabel in its outline colour."""
    from convscope.volume_views import input_planes

    volume = read_volume(series)
    seg = F.write_seg(tmp_path / "seg.dcm", _truth(), SEGMENTS)
    _batch, record = prepare_volume(volume, VolumeOptions(labels=str(seg)), spatial_dims=3, factor=1)
    pic = input_planes(record)
    legend = pic.meta["legend"]
    assert {k: v["name"] for k, v in legend.items()} == {"1": "marker", "2": "corner"}
    for entry in legend.values():
        x, y, w, h = entry["at"]
        patch = pic.pixels[y:y + h, x:x + w].reshape(-1, 3).astype(int)
        near = np.all(np.abs(patch - np.asarray(entry["color"])) <= 12, axis=1)  # antialiased text
        assert near.sum() > 5  # the name is written in its label's colour
    assert legend["1"]["color"] != legend["2"]["color"]
    plain = input_planes(prepare_volume(volume, VolumeOptions(), spatial_dims=3, factor=1)[1])
    assert "legend" not in plain.meta
