"""The viewer's CAM routes: a target chosen in the page (pixel, box, class) -> the maps at every U-Net
level (or the last convolution), equal to the library's own maps, cached, validated, secured."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import convscope as cs
from convscope.adapters.torch_state import model_fingerprint
from tests.conftest import assert_same_fingerprint
from tests.report.nets import small_unet, unet_image
from tests.server.conftest import HOST, PORT, make_client, png_bytes


@pytest.fixture(scope="module")
def unet_setup() -> Any:
    model = small_unet()
    scope = cs.Scope(model)
    client, token, state = make_client(scope)
    with client:
        image_id = client.post("/api/images", files={"file": ("x.png", png_bytes(unet_image(0)), "image/png")}).json()["id"]
        yield client, token, state, scope, model, image_id


def test_unet_cam_for_a_pixel_equals_flow_cam_and_covers_every_level(unet_setup: Any) -> None:
    client, _token, state, scope, model, image_id = unet_setup
    before = model_fingerprint(model)
    response = client.get(f"/api/images/{image_id}/cam?pixel=10,20")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["mode"] == "unet" and data["method"] == "gradcam"
    assert data["target"]["region"] == {"pixel": [10, 20]} and data["target"]["score"] == "logits"
    assert data["passes"] == {"forward": 1, "backward": 1}
    roles = [m["role"] for m in data["maps"]]
    assert roles[0] == "encoder 0" and "bottleneck" in roles and roles[-1] == "decoder 0"
    assert "skip 0: skip branch" in roles and "skip 0: decoder branch" in roles
    # the same maps as the library computes on its own
    flow = scope.unet(unet_image(0), normalize="none")
    expected = flow.cam(target=cs.targets.segmentation(pixel=(10, 20)), progress=False)
    record = state.cam(image_id, _query(pixel=(10, 20)))
    assert record["roles"] == list(expected.maps)
    for role, got in zip(record["roles"], record["maps"]):
        np.testing.assert_allclose(got.data, expected.maps[role].data, atol=1e-5)
        np.testing.assert_allclose(got.raw, expected.maps[role].raw, rtol=1e-4, atol=1e-7)
    png = client.get(data["maps"][0]["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert_same_fingerprint(before, model_fingerprint(model))


def test_a_box_and_a_pixel_give_different_maps_and_answers_are_cached(unet_setup: Any) -> None:
    client, _token, state, _scope, _model, image_id = unet_setup
    box = client.get(f"/api/images/{image_id}/cam?box=30,30,50,40&method=layercam").json()
    assert box["target"]["region"] == {"box_x0_y0_x1_y1": [30, 30, 50, 40]} and box["method"] == "layercam"
    passes = state.captures
    again = client.get(f"/api/images/{image_id}/cam?box=30,30,50,40&method=layercam")
    assert again.json() == box and state.captures == passes  # cached: no new pass
    pixel = state.cam(image_id, _query(pixel=(10, 20)))
    boxed = state.cam(image_id, _query(box=(30, 30, 50, 40), method="layercam"))
    assert not np.allclose(pixel["maps"][-1].data, boxed["maps"][-1].data)


@pytest.mark.parametrize(("query", "code"), [
    ("pixel=1,2&box=0,0,3,3", "bad_target"),
    ("box=5,5,2,2", "bad_target"),
    ("pixel=abc", "invalid_request"),
    ("pixel=1,2,3,4", "invalid_request"),
    ("box=../../etc", "invalid_request"),
    ("method=scorecam", "invalid_request"),
    ("cls=-1", "invalid_request"),
    ("cls=99", "bad_target"),
    ("pixel=500,500", "bad_target"),
    ("box=70,70,90,90", "bad_target"),
])
def test_bad_cam_queries_are_json_422(unet_setup: Any, query: str, code: str) -> None:
    client, _token, _state, _scope, _model, image_id = unet_setup
    response = client.get(f"/api/images/{image_id}/cam?{query}")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and "Traceback" not in error["message"]


def test_cam_unknown_image_and_map_index(unet_setup: Any) -> None:
    client, _token, _state, _scope, _model, image_id = unet_setup
    assert client.get("/api/images/inope/cam").json()["error"]["code"] == "unknown_image"
    response = client.get(f"/api/images/{image_id}/cam/99.png")
    assert response.status_code == 422 and response.json()["error"]["code"] == "map_out_of_range"


def test_cam_routes_need_the_token_and_the_host(unet_setup: Any) -> None:
    client, _token, _state, _scope, _model, image_id = unet_setup
    assert client.get(f"/api/images/{image_id}/cam", headers={"Authorization": ""}).status_code == 401
    assert client.get(f"/api/images/{image_id}/cam/0.png", headers={"Authorization": ""}).status_code == 401
    assert client.get(f"/api/images/{image_id}/cam", headers={"Host": "evil.example:8765"}).status_code == 400
    assert client.get(f"/api/images/{image_id}/cam", headers={"Origin": "http://evil.example"}).status_code == 403
    assert f"{HOST}:{PORT}"  # the client's own host passes (the other tests)


def test_cam_over_the_memory_budget_is_a_413() -> None:
    scope = cs.Scope(small_unet())
    client, _token, state = make_client(scope)
    with client:
        image_id = client.post("/api/images", files={"file": ("x.png", png_bytes(unet_image(0)), "image/png")}).json()["id"]
        state.cache.discard_where(lambda key: True)
        client.get(f"/api/images/{image_id}/predictions")
        scope.max_memory = 1024  # the viewer layers were checked at upload; the CAM is checked again now
        response = client.get(f"/api/images/{image_id}/cam")
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


def test_classifier_gets_a_cam_per_predicted_class_equal_to_scope_cam() -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 9)).eval()
    scope = cs.Scope(model)
    client, _token, state = make_client(scope)
    with client:
        rgb = (np.random.default_rng(2).random((20, 20, 3)) * 255).astype(np.uint8)
        image_id = client.post("/api/images", files={"file": ("x.png", png_bytes(rgb), "image/png")}).json()["id"]
        top = [row["index"] for row in client.get(f"/api/images/{image_id}/predictions").json()["top"]]
        seen = []
        for cls in top:
            data = client.get(f"/api/images/{image_id}/cam?cls={cls}").json()
            assert data["mode"] == "layer" and data["target"]["class"] == cls and len(data["maps"]) == 1
            assert data["maps"][0]["layer"] == "2"  # the last convolution
            record = state.cam(image_id, _query(cls=cls))
            expected = scope.cam(rgb, target=cs.targets.classification(cls=cls))
            np.testing.assert_allclose(record["maps"][0].data, expected.data, atol=1e-5)
            seen.append(record["maps"][0].raw)
            assert client.get(data["maps"][0]["url"]).content[:4] == b"\x89PNG"
        assert not np.allclose(seen[0], seen[1])  # one map per class, not one map for all
        bad = client.get(f"/api/images/{image_id}/cam?pixel=3,3")
        assert bad.status_code == 422 and "pick a class" in bad.json()["error"]["message"]
        assert client.get(f"/api/images/{image_id}/cam?cls=9").json()["error"]["code"] == "bad_target"


def test_cam_route_is_documented(unet_setup: Any) -> None:
    client = unet_setup[0]
    paths = client.get("/api/openapi.json").json()["paths"]
    assert "/api/images/{image_id}/cam" in paths and "/api/images/{image_id}/cam/{index}.png" in paths


def _query(**kw: Any) -> Any:
    from convscope.server.state import CamQuery

    return CamQuery(**kw)


def test_onnx_model_says_in_one_line_that_it_has_no_gradients(tmp_path: Any) -> None:
    pytest.importorskip("onnxruntime")
    from torch import nn

    from tests.adapters.onnx.nets import export_onnx

    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1)).eval()
    path = export_onnx(model, tmp_path / "m.onnx", (1, 1, 16, 16))
    client, _token, _state = make_client(cs.load(str(path)))
    with client:
        image = (np.arange(256).reshape(16, 16) % 251).astype(np.uint8)
        image_id = client.post("/api/images", files={"file": ("x.png", png_bytes(image), "image/png")}).json()["id"]
        response = client.get(f"/api/images/{image_id}/cam?pixel=3,3")
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "no_gradients" and "\n" not in error["message"]
        assert "not available for ONNX models: ONNX has no autograd" in error["message"]
