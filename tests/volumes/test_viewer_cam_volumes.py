"""The viewer's CAMs of a 3D U-Net on a scan: every level, and any map drawn on the three linked planes."""

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
    return png_rgb(response)


def test_3d_unet_cam_for_a_voxel_and_on_the_planes(client):
    c, state = client
    image_id = next(i["id"] for i in c.get("/api/images").json()["images"] if i["name"] == "scan.nii.gz")
    prediction = c.get(f"/api/images/{image_id}/predictions").json()
    assert prediction["kind"] == "map" and len(prediction["shape"]) == 4
    d, h, w = prediction["shape"][1:]
    data = c.get(f"/api/images/{image_id}/cam", params={"pixel": f"{d // 2},{h // 2},{w // 2}", "cls": 0}).json()
    assert data["mode"] == "unet" and data["target"]["region"] == {"pixel": [d // 2, h // 2, w // 2]}
    assert data["target"]["class"] == 0 and data["maps"][-1]["role"] == "decoder 0"
    record = state.cam(image_id, _query(pixel=(d // 2, h // 2, w // 2), cls=0))
    assert record["maps"][-1].data.shape == (1, d, h, w)
    last = data["maps"][-1]["index"]
    query = {"pixel": f"{d // 2},{h // 2},{w // 2}", "cls": 0, "cam_map": last, "opacity": 1.0}
    plain = _png(c.get(f"/api/images/{image_id}/volume/axial/4.png"))
    with_cam = _png(c.get(f"/api/images/{image_id}/volume/axial/4.png", params=query))
    assert plain.shape == with_cam.shape and np.abs(plain - with_cam).sum() > 0
    bad = c.get(f"/api/images/{image_id}/volume/axial/4.png", params={**query, "cam_map": 99})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "map_out_of_range"
    # the overlay is the CAM brought back onto the scan's grid (padding cropped)
    scan = state._volume_record(image_id)
    overlay = scan.to_volume(record["maps"][last].data[0])
    assert overlay.shape == (16, 12, 8) and np.isfinite(overlay).all()


def _query(**kw):
    from convscope.server.state import CamQuery

    return CamQuery(**kw)
