"""Shared fixtures of the volume tests."""

from __future__ import annotations

import io

import numpy as np
import pytest


@pytest.fixture(scope="module")
def scan_client(tmp_path_factory):
    """A viewer of ``demo:unet3d`` whose ``--images`` folder holds one PSR-stored marked scan."""
    pytest.importorskip("nibabel")
    pytest.importorskip("fastapi")
    pytest.importorskip("torch")
    import convscope as cs
    from tests.server.conftest import make_client

    from . import files as F

    root = tmp_path_factory.mktemp("scanimgs")
    F.write_nifti(root / "scan.nii.gz", F.marked_volume((16, 12, 8)), "PSR")
    client, _token, state = make_client(cs.Scope("demo:unet3d"), root)
    with client:
        yield client, state


def png_rgb(response) -> np.ndarray:
    """A 200 PNG response as an ``(H, W, 3)`` int array."""
    from PIL import Image

    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
