"""``serve --scan DIR``: a channel's dataset examples through the viewer API."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("torch")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import convscope as cs  # noqa: E402

from .nets import TinyNet  # noqa: E402
from .test_scan import _write_images  # noqa: E402

HOST, PORT = "127.0.0.1", 8765


def _client(scope, scan_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from convscope.server.app import create_app
    from convscope.server.scan_view import ScanView
    from convscope.server.security import host_policy, new_token
    from convscope.server.state import ViewerState

    state = ViewerState(scope)
    token = new_token()
    app = create_app(state, token=token, policy=host_policy(HOST, PORT), scan=ScanView(scan_dir))
    client = TestClient(app, base_url=f"http://{HOST}:{PORT}", headers={"Authorization": f"Bearer {token}"})
    return client, state, token


def test_channel_examples_and_card(tmp_path):
    _write_images(tmp_path / "d", 5, size=12, seed=11)
    scope = cs.Scope(TinyNet().eval())
    result = scope.scan(tmp_path / "d", top_k=2, batch_size=4, out=tmp_path / "scan")
    client, state, token = _client(scope, tmp_path / "scan")
    layer = next(entry for entry in state.layers if entry.name == "conv2")
    data = client.get(f"/api/scan/layers/{layer.id}/channels/1").json()
    assert [e["image_id"] for e in data["examples"]] == [e.image_id for e in result.channel("conv2", 1).examples]
    assert data["card"] is True and data["images"] == 5
    card = client.get(f"/api/scan/layers/{layer.id}/channels/1/card.png")
    assert card.status_code == 200 and card.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert card.content == (tmp_path / "scan" / result.cards["conv2"][1]).read_bytes()
    bad = client.get(f"/api/scan/layers/{layer.id}/channels/99")
    assert bad.status_code == 422 and "out of range" in bad.json()["error"]["message"]
    assert client.get(f"/api/scan/layers/{layer.id}/channels/1", headers={"Authorization": "Bearer nope" * 3}).status_code == 401
