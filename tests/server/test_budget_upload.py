"""The viewer applies the CLI's memory budget to every upload: a refusal (413), never an HTTP 500."""

from __future__ import annotations

import numpy as np

import convscope as cs
from tests.report.nets import small_unet
from tests.server.conftest import make_client, png_bytes


def test_upload_over_the_budget_is_a_413_and_the_viewer_keeps_working():
    scope = cs.Scope(small_unet())
    scope.max_memory = 64 * 2**20
    client, _token, state = make_client(scope)
    with client:
        big = png_bytes(np.zeros((4000, 6000), np.uint8))  # 24 Mpx, a few KB as PNG
        response = client.post("/api/images", files={"file": ("big.png", big, "image/png")})
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "too_large" and "--max-memory" in error["message"] and "4000x6000" in error["message"]
        assert state.cache.nbytes <= state.limits.cache_bytes
        small = png_bytes((np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8))
        ok = client.post("/api/images", files={"file": ("small.png", small, "image/png")})
        assert ok.status_code == 201, ok.text


def test_upload_reports_its_size_and_channel_conversion():
    scope = cs.Scope(small_unet())  # 1 channel, any size
    client, _token, _state = make_client(scope)
    with client:
        rgb = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
        image = client.post("/api/images", files={"file": ("wide.png", png_bytes(rgb), "image/png")}).json()
        assert image["size"] == [48, 80]
        assert "used at its own size, 48x80" in image["notes"][0]
        assert any("converted from RGB to grayscale" in note for note in image["notes"])


def test_demo_model_uploads_keep_their_size():
    scope = cs.Scope("demo:unet")  # its samples are 64x64, but the U-Net takes any multiple of 8
    client, _token, _state = make_client(scope)
    with client:
        gray = (np.random.default_rng(0).random((96, 128)) * 255).astype(np.uint8)
        image = client.post("/api/images", files={"file": ("g.png", png_bytes(gray), "image/png")}).json()
        assert image["size"] == [96, 128], image


def test_classifier_predictions_are_the_softmax_top5():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 9)).eval()
    scope = cs.Scope(model)
    client, _token, state = make_client(scope)
    with client:
        rgb = (np.random.default_rng(2).random((20, 20, 3)) * 255).astype(np.uint8)
        image_id = client.post("/api/images", files={"file": ("x.png", png_bytes(rgb), "image/png")}).json()["id"]
        data = client.get(f"/api/images/{image_id}/predictions").json()
        logits = scope.activations(rgb).output[0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)[:5]
        assert data["kind"] == "classes" and data["softmax"] is True and data["classes"] == 9
        assert [row["index"] for row in data["top"]] == order.tolist()
        np.testing.assert_allclose([row["probability"] for row in data["top"]], probs[order], atol=1e-5)
        assert client.get("/api/model").json()["unet"] is False  # known now: the page will not ask for a U-Net


def test_unet_predictions_say_map():
    client, _token, _state = make_client(cs.Scope(small_unet()))
    with client:
        image_id = client.post("/api/images", files={"file": ("x.png", png_bytes(np.zeros((32, 32), np.uint8)),
                                                             "image/png")}).json()["id"]
        assert client.get(f"/api/images/{image_id}/predictions").json()["kind"] == "map"


def test_page_names_the_plane_of_3d_slices_and_the_filter_syntax():
    client, _token, _state = make_client(cs.Scope(small_unet()))
    with client:
        page = client.get("/").text
        assert "Depth slice (D axis: each map shows the H&times;W plane at that depth)" in page
        assert "name, glob or kind, as --layer / --kind" in page
        assert "/static/layer-filter.js" in page
        shared = client.get("/static/layer-filter.js")
        assert shared.status_code == 200 and "convscopeLayerMatcher" in shared.text
