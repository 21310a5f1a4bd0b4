"""Fixtures for the viewer tests: models, an images folder, TestClients and a live server."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import convscope as cs
from tests.report.nets import evil_net, small_unet, unet_image

HOST = "127.0.0.1"
PORT = 8765


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def unet_scope() -> cs.Scope:
    return cs.Scope(small_unet())


@pytest.fixture(scope="session")
def evil_scope() -> cs.Scope:
    return cs.Scope(evil_net())


@pytest.fixture(scope="session")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("viewer")
    root = base / "imgs"
    root.mkdir()
    Image.fromarray(unet_image(0)).save(root / "a.png")
    Image.fromarray(unet_image(1)).save(root / "b <i>.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    secret = base / "secret.png"
    Image.fromarray(unet_image(2)).save(secret)
    (base / "secret.txt").write_text("TOP-SECRET")
    os.symlink(secret, root / "escape.png")
    return root


def make_client(scope: cs.Scope, images: Path | None = None, **state_options: Any) -> tuple[Any, str, Any]:
    """(TestClient authenticated with a Bearer token, token, ViewerState) for ``scope``."""
    with warnings.catch_warnings():  # starlette's TestClient warns about httpx on import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from convscope.server.app import create_app
    from convscope.server.security import host_policy, new_token
    from convscope.server.state import ViewerState

    state = ViewerState(scope, images_dir=images, **state_options)
    token = new_token()
    app = create_app(state, token=token, policy=host_policy(HOST, PORT))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = TestClient(app, base_url=f"http://{HOST}:{PORT}", headers={"Authorization": f"Bearer {token}"},
                            raise_server_exceptions=True)
    return client, token, state


@pytest.fixture
def unet_client(unet_scope: cs.Scope, images_dir: Path) -> Iterator[tuple[Any, str, Any]]:
    client, token, state = make_client(unet_scope, images_dir)
    with client:
        yield client, token, state


def first_image(client: Any, name: str = "a.png") -> str:
    images = client.get("/api/images").json()["images"]
    return next(i["id"] for i in images if i["name"] == name)
