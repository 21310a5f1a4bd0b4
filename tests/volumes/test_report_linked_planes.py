"""The static report's linked orthogonal planes of a NIfTI input: one PNG per slice per plane,
a maximum projection per plane, the geometry in a JSON block, the marker in the right place."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")
pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from convscope.report.linked_planes import sampled_indices  # noqa: E402

from . import files as F  # noqa: E402
from .test_cli_volumes import KW, UNET, convscope  # noqa: E402

SHAPE = (13, 11, 9)  # marker: x 0..6 (patient left), y 5..10 (anterior), z 4..8 (superior)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("linked")
    scan = F.write_nifti(folder / "scan.nii.gz", F.marked_volume(SHAPE), "LAS")
    out = folder / "rep"
    r = convscope("report", UNET, str(scan), "-o", str(out), "--kwargs", KW, "--layer", "down.0.0", "--no-progress",
                  "--no-unet", "--window", "500,1000")
    assert r.returncode == 0, r.stderr
    return out


def _page_data(out: Path) -> dict:
    html = (out / "index.html").read_text()
    blocks = re.findall(r'<script type="application/json" class="planes-data">(.*?)</script>', html, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def _bright(out: Path, rel: str) -> np.ndarray:
    return np.asarray(Image.open(out / rel).convert("L")) > 200


def test_one_png_per_slice_and_a_mip_per_plane(report):
    data = _page_data(report)
    assert data["shape"] == list(SHAPE)
    assert data["counts"] == {"sagittal": 13, "coronal": 11, "axial": 9}
    assert data["spacing_mm"] == pytest.approx(list(F.SPACING))
    assert data["sampled"] is False
    for plane, count in data["counts"].items():
        files = sorted(p.name for p in (report / "planes/image-0").glob(f"{plane}-*.png"))
        assert len(files) == count + 1  # slices + the maximum projection
        assert f"{plane}-mip.png" in files
        assert data["planes"][plane]["indices"] == list(range(count))
    assert data["planes"]["axial"]["edges"] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    manifest = {e["file"] for e in json.loads((report / "manifest.json").read_text())["files"]}
    assert "planes/image-0/axial-0008.png" in manifest


def test_marker_in_the_right_slice_at_the_right_place(report):
    planes = _page_data(report)["planes"]
    rel = {p: planes[p]["files"] for p in planes}
    # axial, superior slice: the left-anterior block is on the image's right (radiological), at the top
    axial = _bright(report, rel["axial"][8])
    h, w = axial.shape
    cols, rows = np.nonzero(axial.any(axis=0))[0], np.nonzero(axial.any(axis=1))[0]
    assert cols.min() >= 0.45 * w and cols.max() == w - 1
    assert rows.min() == 0 and rows.max() < 0.6 * h
    assert not _bright(report, rel["axial"][0]).any()  # inferior slice: no marker
    # coronal, anterior slice: on the image's right, at the top (superior)
    coronal = _bright(report, rel["coronal"][10])
    h, w = coronal.shape
    cols, rows = np.nonzero(coronal.any(axis=0))[0], np.nonzero(coronal.any(axis=1))[0]
    assert cols.min() >= 0.45 * w and rows.max() < 0.6 * h
    assert not _bright(report, rel["coronal"][0]).any()
    # sagittal, leftmost slice: anterior on the image's left, superior at the top
    sagittal = _bright(report, rel["sagittal"][0])
    h, w = sagittal.shape
    cols, rows = np.nonzero(sagittal.any(axis=0))[0], np.nonzero(sagittal.any(axis=1))[0]
    assert cols.min() == 0 and cols.max() < 0.6 * w and rows.max() < 0.6 * h
    assert not _bright(report, rel["sagittal"][12]).any()
    # the maximum projection along z shows the block although slice 0 does not
    assert _bright(report, planes["axial"]["mip"]).any()


def test_planes_over_the_cap_are_sampled_evenly():
    assert sampled_indices(9) == list(range(9))
    idx = sampled_indices(300)
    assert len(idx) == 256 and idx[0] == 0 and idx[-1] == 299 and idx == sorted(set(idx))
    assert max(np.diff(idx)) <= 2
