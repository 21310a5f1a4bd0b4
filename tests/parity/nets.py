"""The same small 3-level U-Net in PyTorch and in Keras 3, with the weights copied across."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BLOCKS = (("enc1", 3, 4), ("enc2", 4, 8), ("bott", 8, 16), ("dec2", 16, 8), ("dec1", 8, 4))
"""(block, in channels, out channels): each block is conv1 (3x3) -> relu1 -> conv2 (3x3) -> relu2."""

CONVS = tuple(f"{b}.conv{i}" for b, _, _ in BLOCKS for i in (1, 2)) + ("up2", "up1", "head")
"""Every convolution, by its torch name; the Keras twin uses ``name.replace(".", "_")``."""


def torch_unet() -> Any:
    """enc1 -> pool1 -> enc2 -> pool2 -> bott -> up2 (ConvTranspose) -> cat(up2, enc2) -> dec2 -> up1 -> cat -> dec1 -> head."""
    import torch
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.relu2 = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu2(self.conv2(self.relu1(self.conv1(x))))

    class TinyUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc1 = Block(3, 4)
            self.pool1 = nn.MaxPool2d(2)
            self.enc2 = Block(4, 8)
            self.pool2 = nn.MaxPool2d(2)
            self.bott = Block(8, 16)
            self.up2 = nn.ConvTranspose2d(16, 8, 2, stride=2)
            self.dec2 = Block(16, 8)
            self.up1 = nn.ConvTranspose2d(8, 4, 2, stride=2)
            self.dec1 = Block(8, 4)
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e1 = self.enc1(x)
            e2 = self.enc2(self.pool1(e1))
            b = self.bott(self.pool2(e2))
            d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
            d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
            return self.head(d1)

    torch.manual_seed(0)
    model = TinyUNet().eval()
    with torch.no_grad():  # non-zero biases so that a layout mix-up cannot hide
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.bias.uniform_(-0.2, 0.2)
    return model


def keras_unet(torch_model: Any) -> Any:
    """The Keras twin (channels_last, same layer names with ``_`` for ``.``), weights copied from torch.

    torch Conv2d ``(out, in, kh, kw)`` -> Keras Conv2D ``(kh, kw, in, out)``; torch ConvTranspose2d
    ``(in, out, kh, kw)`` -> Keras Conv2DTranspose ``(kh, kw, out, in)``: both are ``permute(2, 3, 1, 0)``.
    """
    import keras

    layers = keras.layers

    def block(x: Any, name: str, cout: int) -> Any:
        x = layers.Conv2D(cout, 3, padding="same", name=f"{name}_conv1")(x)
        x = layers.ReLU(name=f"{name}_relu1")(x)
        x = layers.Conv2D(cout, 3, padding="same", name=f"{name}_conv2")(x)
        return layers.ReLU(name=f"{name}_relu2")(x)

    inputs = keras.Input((16, 16, 3), name="image")
    e1 = block(inputs, "enc1", 4)
    e2 = block(layers.MaxPooling2D(2, name="pool1")(e1), "enc2", 8)
    b = block(layers.MaxPooling2D(2, name="pool2")(e2), "bott", 16)
    up2 = layers.Conv2DTranspose(8, 2, strides=2, name="up2")(b)
    d2 = block(layers.Concatenate(axis=-1, name="cat2")([up2, e2]), "dec2", 8)
    up1 = layers.Conv2DTranspose(4, 2, strides=2, name="up1")(d2)
    d1 = block(layers.Concatenate(axis=-1, name="cat1")([up1, e1]), "dec1", 4)
    model = keras.Model(inputs, layers.Conv2D(2, 1, name="head")(d1), name="tiny_unet")
    modules = dict(torch_model.named_modules())
    for name in CONVS:
        module = modules[name]
        kernel = module.weight.detach().numpy().transpose(2, 3, 1, 0)
        model.get_layer(name.replace(".", "_")).set_weights([kernel, module.bias.detach().numpy()])
    return model


def export_onnx(torch_model: Any, path: Path) -> Path:
    """``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``: no onnxscript needed)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            torch_model, (torch.zeros(1, 3, 16, 16),), str(path), dynamo=False, input_names=["image"],
            output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


def sample(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 16, 16)).astype(np.float32)
