"""The viewer's linked-plane API: scan geometry and one lazily rendered plane per request."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nibabel")
pytest.importorskip("fastapi")
pytest.importorskip("torch")

from .conftest import png_rgb  # noqa: E402


@pytest.fixture(scope="module")
def client(scan_client):
    return scan_client


def _png(response) -> np.ndarray:
    return png_rgb(response).mean(axis=-1)


def test_volume_info_and_planes(client):
    c, state = client
    images = c.get("/api/images").json()["images"]
    image_id = next(i["id"] for i in images if i["name"] == "scan.nii.gz")
    info = c.get(f"/api/images/{image_id}/volume").json()
    assert info["shape"] == [16, 12, 8] and info["counts"] == {"sagittal": 16, "coronal": 12, "axial": 8}
    assert info["edges"]["axial"] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert info["describe"]["volume"]["stored_orientation"] == "PSR"
    axial = _png(c.get(f"/api/images/{image_id}/volume/axial/4.png"))
    h, w = axial.shape
    assert axial[: h // 3, w - w // 3:].min() > 200 and axial[h - h // 3:, : w // 3].max() < 60  # L-A marker top right
    sag = _png(c.get(f"/api/images/{image_id}/volume/sagittal/8.png"))
    assert sag.shape[0] > sag.shape[1]  # 8 slices of 2.5 mm are taller than 12 x 1 mm is wide
    layer_id = next(layer["id"] for layer in c.get("/api/model").json()["layers"] if layer["name"] == "enc1.2")
    over = c.get(f"/api/images/{image_id}/volume/coronal/6.png", params={"layer": layer_id, "opacity": 0.8})
    plain = c.get(f"/api/images/{image_id}/volume/coronal/6.png")
    assert over.status_code == 200 and over.content != plain.content
    mip = _png(c.get(f"/api/images/{image_id}/volume/axial/0.png", params={"mip": "true"}))
    assert mip[: h // 3, w - w // 3:].min() > 200  # the projection shows the marker from any slice
    bad = c.get(f"/api/images/{image_id}/volume/axial/99.png")
    assert bad.status_code == 422
