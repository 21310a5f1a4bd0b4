"""The Python API of issue 2, end to end on a small torch model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import convscope as cs


class Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(x))


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc1 = Block(3, 8)
        self.enc2 = Block(8, 16)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        return self.head(self.enc2(self.pool(self.enc1(x))))


@pytest.fixture
def scope():
    torch.manual_seed(0)
    return cs.Scope(SmallNet())


@pytest.fixture
def image():
    return np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)


def test_kernels_grid_saves_png_and_shows_in_jupyter(scope, tmp_path):
    bank = scope.kernels("enc1.conv")
    assert bank.shape == (8, 3, 3, 3)
    path = bank.grid().save(tmp_path / "enc1_kernels.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 20
    assert bank.grid()._repr_png_().startswith(b"\x89PNG")


def test_rgb_first_layer_is_drawn_in_colour_by_default(scope):
    picture = scope.kernels("enc1.conv").grid()
    assert picture.meta["rgb"] is True
    pixels = picture.pixels.astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() > 0


def test_activations_glob_and_top_k_grid(scope, image, tmp_path):
    acts = scope.activations(image, layers="enc*")
    assert "enc1.conv" in acts and "enc2.relu" in acts and "head" not in acts
    picture = acts["enc1.conv"].grid(top=4, order="mean")
    assert len(picture.meta["channels"]) == 4
    means = acts["enc1.conv"].sample(0).mean(axis=(1, 2))
    assert picture.meta["channels"] == list(np.argsort(-means, kind="stable")[:4])
    picture.save(tmp_path / "enc1.png")


def test_overlay_has_the_input_size(scope, image, tmp_path):
    acts = scope.activations(image, layers="enc2.conv")
    picture = acts["enc2.conv"].overlay(image, channel="mean")
    assert picture.size == (32, 32)
    picture.save(tmp_path / "overlay.png")


def test_overlay_defaults_to_the_captured_input(scope, image):
    acts = scope.activations(image, layers="enc2.conv")
    np.testing.assert_array_equal(acts["enc2.conv"].overlay().pixels, acts["enc2.conv"].overlay(image).pixels)


def test_image_path_input(scope, image, tmp_path):
    Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "x.png")
    acts = scope.activations(tmp_path / "x.png", layers="head")
    assert acts["head"].shape == (1, 2, 16, 16)


def test_layers_table_has_out_shapes_from_an_image(scope, image):
    table = scope.layers(image)
    row = {layer.name: layer for layer in table}["enc2.conv"]
    assert row.out_shape == (16, 16, 16) and row.params == 8 * 16 * 9 + 16
    assert "enc2.conv" in str(table)


def test_unknown_layer_error_names_close_layers(scope, image):
    with pytest.raises(cs.LayerNotFoundError, match="enc1.conv"):
        scope.activations(image, layers="enc1.conf")


def test_save_kernels_and_activations_api(scope, image, tmp_path):
    manifest = scope.save_kernels(tmp_path / "k")
    assert manifest.exists()
    manifest = scope.save_activations(image, tmp_path / "a", layers="enc*", kind="conv", overlay=True)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["enc1.conv.overlay.png", "enc1.conv.png", "enc2.conv.overlay.png", "enc2.conv.png", "manifest.json"]


def test_batch_writes_one_grid_per_sample(scope, tmp_path):
    batch = np.random.default_rng(1).random((2, 3, 16, 16)).astype(np.float32)
    scope.save_activations(batch, tmp_path / "b", layers="head")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["head.s0.png", "head.s1.png", "manifest.json"]


def test_import_needs_only_numpy_and_pillow():
    import subprocess
    import sys

    code = "import sys, convscope; bad=[m for m in ('torch','matplotlib','jinja2','fastapi','keras','onnx') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_layer_table_shows_as_escaped_html_in_jupyter():
    net = SmallNet()
    net.add_module("<b>x</b>", torch.nn.Conv2d(2, 2, 1))
    html = cs.Scope(net).layers()._repr_html_()
    assert html.startswith("<table>") and "<td>enc1.conv</td>" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
