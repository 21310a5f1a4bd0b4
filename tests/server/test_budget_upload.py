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
