"""The viewer's 3-D slices follow the input's middle view: a scan's axial slices (radiological, original
intensities in the display window) for the input picture, the channel maps and the U-Net flow."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nibabel")
pytest.importorskip("fastapi")
pytest.importorskip("torch")

from convscope.core.view import plane_slice  # noqa: E402

from .conftest import png_rgb  # noqa: E402


@pytest.fixture(scope="module")
def client(scan_client):
    return scan_client


def _image_id(c) -> str:
    return next(i["id"] for i in c.get("/api/images").json()["images"] if i["name"] == "scan.nii.gz")


def test_viewer_slices_of_a_scan_are_axial(client):
    c, state = client
    image_id = _image_id(c)
    prepared = state.prepared(image_id)
    assert prepared.view is not None and prepared.view.plane == "axial"
    # the input picture: the display (windowed original intensities), marker top right (patient left-anterior)
    picture = png_rgb(c.get(f"/api/images/{image_id}/input.png"))
    np.testing.assert_array_equal(picture, prepared.display[0])
    h, w = picture.shape[:2]
    assert (h, w) == (12, 16)  # rows: y (A->P), columns: x (R->L)
    assert picture[: h // 3, w - w // 3:, 0].min() > 200 and picture[h - h // 3:, : w // 3, 0].max() < 60
    # another axial slice of the input (z = 0 is below the superior marker)
    low = png_rgb(c.get(f"/api/images/{image_id}/input.png", params={"slice": 0}))
    assert low[..., 0].max() < 200
    # a 3-D layer: its slider counts axial z, its slices are plane_slice of the map
    layer = next(x for x in c.get("/api/model").json()["layers"] if x["name"] == "enc1.2")
    summary = c.get(f"/api/images/{image_id}/layers/{layer['id']}").json()
    maps = state.activation(image_id, layer["id"])
    assert summary["slices"] == maps.shape[-1] and summary["slice_axis"].startswith("z")
    assert summary["slice_middle"] == 4
    np.testing.assert_array_equal(state._slice_map(maps[0], 2, prepared.view), plane_slice(maps[0], "axial", 2))
    assert c.get(f"/api/images/{image_id}/layers/{layer['id']}/channels/0/overlay.png", params={"slice": 5}).status_code == 200
    assert c.get(f"/api/images/{image_id}/layers/{layer['id']}/channels/0/thumb.png",
                 params={"slice": maps.shape[-1]}).json()["error"]["code"] == "slice_out_of_range"


def test_viewer_unet_flow_of_a_scan_uses_the_axial_view(client):
    c, state = client
    image_id = _image_id(c)
    assert c.get(f"/api/images/{image_id}/unet").status_code == 200
    flow = state._flow(image_id)
    prepared = state.prepared(image_id)
    assert flow.view == prepared.view and flow.view.plane == "axial"
    np.testing.assert_array_equal(flow.display, prepared.display[0])  # the windowed scan, not the batch
    figure = png_rgb(c.get(f"/api/images/{image_id}/unet/figure.png"))
    assert figure.shape[0] > 100
