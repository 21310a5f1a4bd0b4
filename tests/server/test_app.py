"""The viewer's HTTP API through FastAPI's TestClient: auth, Host checks, CSP, IDs, errors, caching."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import convscope as cs
from convscope.server.state import ServerLimits
from tests.report.nets import EVIL, Tiny3D, rgb_image, unet_image
from tests.server.conftest import HOST, PORT, first_image, make_client, png_bytes


def _upload(client: Any, data: bytes, name: str = "up.png", ctype: str = "image/png") -> Any:
    return client.post("/api/images", files={"file": (name, data, ctype)})


def _error_code(response: Any) -> str:
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]["code"]


# -- authentication, Host, Origin, headers ---------------------------------------------------------
def test_api_without_token_is_refused(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    response = client.get("/api/model", headers={"Authorization": ""})
    assert response.status_code == 401 and _error_code(response) == "token_required"


def test_page_without_token_explains_what_to_do(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    response = client.get("/", headers={"Authorization": ""})
    assert response.status_code == 401
    assert "token" in response.text and "<script" not in response.text


def test_token_in_url_sets_a_strict_http_only_cookie(unet_client: tuple[Any, str, Any]) -> None:
    client, token, _state = unet_client
    response = client.get(f"/?token={token}", headers={"Authorization": ""})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert f"convscope-token-{PORT}={token}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    again = client.get("/api/model", headers={"Authorization": "", "Cookie": f"convscope-token-{PORT}={token}"})
    assert again.status_code == 200


def test_wrong_token_is_refused(unet_client: tuple[Any, str, Any]) -> None:
    client, token, _state = unet_client
    assert client.get("/api/model", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    assert client.get(f"/api/model?token={token[:-1]}", headers={"Authorization": ""}).status_code == 401


@pytest.mark.parametrize("host", ["evil.example:8765", "attacker.com", f"{HOST}:{PORT + 1}", "localhost.evil.com:8765"])
def test_foreign_host_header_is_refused_even_with_the_token(unet_client: tuple[Any, str, Any], host: str) -> None:
    client, _token, _state = unet_client
    response = client.get("/api/model", headers={"Host": host})
    assert response.status_code == 400 and _error_code(response) == "bad_host"


def test_cross_origin_post_is_refused(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    response = client.post("/api/images", files={"file": ("a.png", png_bytes(unet_image(0)), "image/png")},
                           headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and _error_code(response) == "bad_origin"


@pytest.mark.parametrize("path", ["/", "/api/model", "/api/nope", "/static/viewer.js", "/api/docs"])
def test_every_response_carries_the_csp(unet_client: tuple[Any, str, Any], path: str) -> None:
    client, _token, _state = unet_client
    response = client.get(path)
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "http" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/api/docs"])
def test_pages_have_no_inline_scripts_or_external_sources(unet_client: tuple[Any, str, Any], path: str) -> None:
    client, _token, _state = unet_client
    html = client.get(path).text
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all('src="/static/' in s for s in scripts)
    assert "style=" not in html and not re.search(r"\son\w+=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)


def test_openapi_is_served_under_the_api_and_swagger_cdn_pages_are_off(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    spec = client.get("/api/openapi.json").json()
    for path in ("/api/model", "/api/images", "/api/images/{image_id}/layers/{layer_id}",
                 "/api/images/{image_id}/layers/{layer_id}/channels/{channel}/map.png", "/api/images/{image_id}/unet"):
        assert path in spec["paths"], path
    assert "multipart/form-data" in spec["paths"]["/api/images"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404


# -- IDs, images and files ---------------------------------------------------------------------------
def test_model_lists_layers_by_id(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    model = client.get("/api/model").json()
    assert model["layers"][0] == {**model["layers"][0], "id": "l0", "name": "enc1.conv", "has_kernels": True}
    assert all(re.fullmatch(r"l\d+", layer["id"]) for layer in model["layers"])


def test_only_images_inside_the_folder_are_listed(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    images = client.get("/api/images").json()["images"]
    assert sorted(i["name"] for i in images) == ["a.png", "b <i>.png", "broken.png"]
    assert all(re.fullmatch(r"i[0-9a-f]{12}", i["id"]) for i in images)


def test_broken_folder_image_is_a_400(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    image_id = first_image(client, "broken.png")
    response = client.get(f"/api/images/{image_id}/layers/l0")
    assert response.status_code == 400 and _error_code(response) == "broken_image"


@pytest.mark.parametrize(
    "path",
    [
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/api/images/..%2F..%2Fsecret.txt/input.png",
        "/api/images/%2Fetc%2Fpasswd/input.png",
        "/api/images/a.png/input.png",
        "/api/images/escape.png/input.png",
        "/static/%2Fetc%2Fpasswd",
    ],
)
def test_paths_never_reach_the_file_system(unet_client: tuple[Any, str, Any], path: str) -> None:
    client, _token, _state = unet_client
    response = client.get(path)
    assert response.status_code == 404
    assert "TOP-SECRET" not in response.text and "root:" not in response.text
    assert response.headers["content-type"].startswith("application/json")


# -- activations, pictures, errors -----------------------------------------------------------------
def test_layer_summary_and_channel_pictures(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    image_id = first_image(client)
    summary = client.get(f"/api/images/{image_id}/layers/l0").json()
    assert summary["shape"] == [8, 64, 64] and summary["channels"] == 8 and summary["slices"] is None
    assert len(summary["channel_stats"]["mean"]) == 8
    assert {"zero_fraction", "dead_channels", "saturation"} <= set(summary["health"])
    for what in ("thumb", "map", "overlay"):
        response = client.get(f"/api/images/{image_id}/layers/l0/channels/3/{what}.png")
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG"), what
    from PIL import Image

    full = Image.open(io.BytesIO(client.get(f"/api/images/{image_id}/layers/l0/channels/3/map.png").content))
    assert min(full.size) >= 256
    assert client.get(f"/api/images/{image_id}/input.png").status_code == 200
    assert client.get(f"/api/images/{image_id}/layers/l0/grid.png").status_code == 200
    assert client.get("/api/layers/l0/kernels.png").status_code == 200
    assert client.get("/api/layers/l0/weights").json()["shape"] == [8, 1, 3, 3]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/images/{img}/layers/l999", 404, "unknown_layer"),
        ("/api/images/{img}/layers/enc1.conv", 404, "unknown_layer"),
        ("/api/images/i000000000000/layers/l0", 404, "unknown_image"),
        ("/api/images/{img}/layers/l0/channels/8/map.png", 422, "channel_out_of_range"),
        ("/api/images/{img}/layers/l0/channels/-1/thumb.png", 422, "channel_out_of_range"),
        ("/api/images/{img}/layers/l0/channels/abc/thumb.png", 422, "invalid_request"),
        ("/api/images/{img}/layers/l0/channels/99999999999999999999999/thumb.png", 422, "channel_out_of_range"),
        ("/api/images/{img}/layers/l0/channels/1/thumb.png?slice=2", 422, "not_a_volume"),
        ("/api/images/{img}/layers/l0/channels/1/thumb.png?slice=-2", 422, "invalid_request"),
        ("/api/layers/l1/kernels.png", 404, "no_kernels"),
        ("/api/images/{img}/unet/panels/99.png", 422, "panel_out_of_range"),
    ],
)
def test_bad_requests_are_4xx_json(unet_client: tuple[Any, str, Any], path: str, status: int, code: str) -> None:
    client, _token, _state = unet_client
    response = client.get(path.format(img=first_image(client)))
    assert response.status_code == status and _error_code(response) == code


def test_activations_are_computed_once_per_image(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, state = unet_client
    image_id = first_image(client)
    before = state.captures
    for layer in ("l0", "l1", "l5", "l10"):
        client.get(f"/api/images/{image_id}/layers/{layer}")
        for channel in range(3):
            client.get(f"/api/images/{image_id}/layers/{layer}/channels/{channel}/thumb.png")
    assert state.captures == before + 1


def test_cache_stays_within_its_byte_budget(unet_scope: cs.Scope, images_dir: Path) -> None:
    client, _token, state = make_client(unet_scope, images_dir, limits=ServerLimits(cache_bytes=400_000))
    with client:
        for name in ("a.png", "b <i>.png"):
            image_id = first_image(client, name)
            for layer in ("l0", "l3", "l20"):
                assert client.get(f"/api/images/{image_id}/layers/{layer}/channels/0/map.png").status_code == 200
        assert state.cache.nbytes <= 400_000
        assert state.cache.stats()["evictions"] > 0


# -- uploads -------------------------------------------------------------------------------------------
def test_upload_gives_a_new_image_id(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    response = _upload(client, png_bytes(unet_image(5)), name="../../evil<b>.png")
    assert response.status_code == 201
    image = response.json()
    assert image["origin"] == "upload" and image["name"] == "evil<b>.png"
    assert image["id"] in [i["id"] for i in client.get("/api/images").json()["images"]]
    assert client.get(f"/api/images/{image['id']}/layers/l3").status_code == 200


@pytest.mark.parametrize(
    ("data", "ctype", "status", "code"),
    [
        (b"just text", "text/plain", 415, "unsupported_type"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "image/png", 400, "broken_image"),
        (b"", "image/png", 400, "broken_image"),
    ],
)
def test_bad_uploads_are_refused(unet_client: tuple[Any, str, Any], data: bytes, ctype: str, status: int, code: str) -> None:
    client, _token, _state = unet_client
    response = _upload(client, data, ctype=ctype)
    assert response.status_code == status and _error_code(response) == code


def test_upload_must_be_multipart(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    response = client.post("/api/images", content=png_bytes(unet_image(0)), headers={"Content-Type": "image/png"})
    assert response.status_code == 415


def test_upload_without_file_field(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    response = client.post("/api/images", files={"other": ("a.png", b"x", "image/png")})
    assert response.status_code == 422 and _error_code(response) == "missing_file"


def test_upload_size_limit(unet_scope: cs.Scope) -> None:
    client, _token, _state = make_client(unet_scope, limits=ServerLimits(max_upload_bytes=2_000))
    with client:
        big = png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
        response = _upload(client, big)
        assert response.status_code == 413 and _error_code(response) == "too_large"


def test_upload_pixel_limit(unet_scope: cs.Scope) -> None:
    client, _token, _state = make_client(unet_scope, limits=ServerLimits(max_pixels=1_000))
    with client:
        response = _upload(client, png_bytes(np.zeros((64, 64), np.uint8)))
        assert response.status_code == 413 and _error_code(response) == "too_many_pixels"


def test_image_the_model_cannot_take_is_a_422(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    image_id = _upload(client, png_bytes(np.zeros((50, 50), np.uint8))).json()["id"]
    response = client.get(f"/api/images/{image_id}/layers/l0")
    assert response.status_code == 422 and _error_code(response) == "forward_failed"


# -- U-Net, XSS, 3D ------------------------------------------------------------------------------------
def test_unet_flow_with_clickable_blocks(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    image_id = first_image(client)
    view = client.get(f"/api/images/{image_id}/unet").json()
    layer_ids = {layer["id"]: layer["name"] for layer in client.get("/api/model").json()["layers"]}
    linked = {b["title"]: layer_ids[b["layer_id"]] for b in view["blocks"] if b["layer_id"]}
    assert linked["enc1.relu2"] == "enc1.relu2" and linked["head"] == "head"
    assert all(0 <= v <= 1 for b in view["blocks"] for v in b["box"])
    assert client.get(view["figure"]["url"]).content.startswith(b"\x89PNG")
    assert len(view["panels"]) == 3
    assert client.get(view["panels"][0]["url"]).status_code == 200
    assert client.get("/api/model").json()["unet"] is True


def test_not_a_unet_is_a_422(evil_scope: cs.Scope) -> None:
    client, _token, _state = make_client(evil_scope)
    with client:
        image_id = _upload(client, png_bytes(rgb_image(0))).json()["id"]
        response = client.get(f"/api/images/{image_id}/unet")
        assert response.status_code == 422 and _error_code(response) == "not_a_unet"


def test_layer_names_travel_only_as_json_text(evil_scope: cs.Scope) -> None:
    client, _token, _state = make_client(evil_scope)
    with client:
        response = client.get("/api/model")
        assert response.headers["content-type"] == "application/json"
        assert response.json()["layers"][0]["name"] == EVIL
        assert EVIL not in client.get("/").text


def test_volume_slices(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    client, _token, _state = make_client(cs.Scope(Tiny3D().eval()))
    with client:
        buf = io.BytesIO()
        np.save(buf, np.random.default_rng(0).random((1, 8, 12, 12)).astype(np.float32))
        image_id = _upload(client, buf.getvalue(), name="vol.npy", ctype="application/octet-stream").json()["id"]
        summary = client.get(f"/api/images/{image_id}/layers/l0").json()
        assert summary["slices"] == 8 and summary["shape"] == [3, 8, 12, 12]
        base = f"/api/images/{image_id}/layers/l0/channels/1"
        assert client.get(f"{base}/thumb.png?slice=3").status_code == 200
        assert client.get(f"{base}/overlay.png?slice=7").status_code == 200
        assert client.get(f"{base}/map.png?slice=8").json()["error"]["code"] == "slice_out_of_range"
        assert client.get(f"{base}/thumb.png?slice=3").content != client.get(f"{base}/thumb.png?slice=4").content


def test_status_reports_cache_and_forward_passes(unet_client: tuple[Any, str, Any]) -> None:
    client, _token, _state = unet_client
    data = client.get("/api/status").json()
    assert {"cache", "forward_passes", "images"} <= set(data)


def test_a_demo_model_without_an_images_folder_offers_its_samples() -> None:
    client, _, _ = make_client(cs.load("demo:unet"))
    with client:
        images = client.get("/api/images").json()["images"]
        assert [(i["name"], i["origin"]) for i in images] == [("demo sample 1", "sample"), ("demo sample 2", "sample")]
        layer = client.get("/api/model").json()["layers"][0]["id"]
        response = client.get(f"/api/images/{images[0]['id']}/layers/{layer}/grid.png")
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


def test_a_plain_model_without_an_images_folder_starts_empty(unet_scope: cs.Scope) -> None:
    client, _, _ = make_client(unet_scope)
    with client:
        assert client.get("/api/images").json()["images"] == []
