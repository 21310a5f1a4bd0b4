"""Three-plane figures: the planted left-anterior-superior marker and the edge letters in every plane."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nibabel")
pytest.importorskip("pydicom")

from convscope.io.volumes import read_dicom, read_nifti  # noqa: E402
from convscope.render.planes import PLANE_EDGES, letter_patch, render_planes  # noqa: E402

from . import files as F  # noqa: E402

# where the patient's left-anterior-superior corner appears in each radiological plane
MARK_CORNER = {"axial": ("top", "right"), "coronal": ("top", "right"), "sagittal": ("top", "left")}


def fingerprint(model):
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
    }


def check_letters(pixels: np.ndarray, meta: dict) -> None:
    """Each plane's four letters are drawn (pixel-equal to the letter) on the right side of its image."""
    for plane, info in meta["planes"].items():
        x0, y0, w, h = info["box"]
        assert info["edges"] == PLANE_EDGES[plane]
        for edge, (x, y, pw, ph) in info["letters"].items():
            letter = PLANE_EDGES[plane][edge]
            np.testing.assert_array_equal(pixels[y:y + ph, x:x + pw, :3], letter_patch(letter), err_msg=f"{plane} {edge}")
            cx, cy = x + pw / 2, y + ph / 2
            side = {"left": cx < x0, "right": cx > x0 + w, "top": cy < y0, "bottom": cy > y0 + h}[edge]
            assert side, f"{plane}: {letter} is not on the {edge} edge"


def check_marker(pixels: np.ndarray, meta: dict, *, bright: int = 200, dark: int = 60) -> None:
    """The bright marker fills the expected corner quadrant of each plane and not the opposite one."""
    for plane, info in meta["planes"].items():
        x0, y0, w, h = info["box"]
        img = pixels[y0:y0 + h, x0:x0 + w, :3].astype(int).mean(axis=-1)
        vertical, horizontal = MARK_CORNER[plane]
        rows = slice(0, h // 3) if vertical == "top" else slice(h - h // 3, h)
        cols = slice(w - w // 3, w) if horizontal == "right" else slice(0, w // 3)
        opp_rows = slice(h - h // 3, h) if vertical == "top" else slice(0, h // 3)
        opp_cols = slice(0, w // 3) if horizontal == "right" else slice(w - w // 3, w)
        assert img[rows, cols].min() >= bright, f"{plane}: marker missing at the {vertical}-{horizontal}"
        assert img[opp_rows, opp_cols].max() <= dark, f"{plane}: something bright at the opposite corner"


@pytest.mark.parametrize("codes,rotate", [("RAS", 0.0), ("LAS", 0.0), ("PSR", 0.0), ("LPI", 0.0), ("LPS", 20.0)])
def test_marker_and_letters_in_every_plane_nifti(tmp_path, codes, rotate):
    truth = F.marked_volume()
    vol = read_nifti(F.write_nifti(tmp_path / "v.nii.gz", truth, codes, rotate_deg=rotate))
    pic = render_planes(vol, window="500,1000")
    check_letters(pic.pixels, pic.meta)
    check_marker(pic.pixels, pic.meta)


def test_marker_and_letters_dicom_series(tmp_path):
    truth = F.marked_volume()
    vol = read_dicom(F.write_dicom_series(tmp_path / "ct", 2 * truth - 1024))
    pic = render_planes(vol, window="0,1000")
    check_letters(pic.pixels, pic.meta)
    check_marker(pic.pixels, pic.meta)


def test_physical_aspect_and_scale_bar(tmp_path):
    truth = F.marked_volume((20, 16, 6))
    vol = read_nifti(F.write_nifti(tmp_path / "v.nii.gz", truth, "LAS", spacing=(0.5, 0.5, 4.0)))
    pic = render_planes(vol, size=200)
    planes = pic.meta["planes"]
    mm = pic.meta["planes"]["axial"]["mm_per_pixel"]
    _, _, w, h = planes["axial"]["box"]
    assert (w * mm, h * mm) == pytest.approx((10.0, 8.0), rel=0.02)  # 20 x 0.5 mm wide, 16 x 0.5 mm tall
    _, _, w, h = planes["coronal"]["box"]
    assert (w * mm, h * mm) == pytest.approx((10.0, 24.0), rel=0.02)  # 6 slices of 4 mm: tall, not square
    _, _, w, h = planes["sagittal"]["box"]
    assert (w * mm, h * mm) == pytest.approx((8.0, 24.0), rel=0.02)
    for info in planes.values():
        assert info["scale_bar_px"] * mm == pytest.approx(info["scale_bar_mm"], rel=0.05)
        x0, y0, w, h = info["box"]
        bar_y = y0 + h + 17 if info is planes["coronal"] else None
        if bar_y is not None:  # the tallest panel: the bar sits right under it
            row = pic.pixels[bar_y + 16 - 17 + 1]
            assert (row[x0:x0 + info["scale_bar_px"]] > 200).all()


def test_overlay_and_label_outlines(tmp_path):
    truth = F.marked_volume()
    vol = read_nifti(F.write_nifti(tmp_path / "v.nii.gz", truth, "PSR"))
    labels = (truth >= F.MARK).astype(np.int32)
    plain = render_planes(vol, window="500,1000")
    outlined = render_planes(vol, window="500,1000", labels=labels)
    changed = np.any(plain.pixels != outlined.pixels, axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 0
    assert np.all(outlined.pixels[changed] == (255, 64, 64))  # the first label colour, on the marker's edges
    overlay = np.full(truth.shape, np.nan, np.float32)
    overlay[-2:, :2, :] = 1.0  # the right-posterior edge, all slices
    overlay[-1, 0, 0] = 0.0
    shown = render_planes(vol, window="500,1000", overlay=overlay)
    diff = np.any(shown.pixels != plain.pixels, axis=-1)
    info = shown.meta["planes"]["axial"]
    x0, y0, w, h = info["box"]
    # NaN is not drawn: only a small area changes, at the axial image's bottom-left (patient right-posterior)
    axial = diff[y0:y0 + h, x0:x0 + w]
    assert axial[h - 2, 1] and not axial[:h // 2].any() and not axial[:, w // 2:].any()
    assert shown.meta["overlay"]["range"] == [0.0, 1.0]
