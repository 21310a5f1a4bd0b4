"""Tiny models for the ONNX / .pt2 / TorchScript tests, and helpers that export them to files."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


class TinyCNN(nn.Module):
    """conv (grouped) -> bn -> relu -> pool -> conv_transpose (grouped) -> relu; input (N, 4, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 6, 3, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2, groups=2)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.up(self.pool(self.relu(self.bn(self.conv1(x))))))


class TinyUNet(nn.Module):
    """Two-level U-Net with concat skips; input (N, 1, 16, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.enc2 = nn.Conv2d(4, 8, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.dec2 = nn.Conv2d(16, 8, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dec1 = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = torch.relu(self.enc1(x))
        e2 = torch.relu(self.enc2(self.pool1(e1)))
        m = torch.relu(self.mid(self.pool2(e2)))
        d2 = torch.relu(self.dec2(torch.cat([self.up2(m), e2], dim=1)))
        d1 = torch.relu(self.dec1(torch.cat([self.up1(d2), e1], dim=1)))
        return self.head(d1)


def make(cls: type[nn.Module], seed: int = 0) -> nn.Module:
    """A model with deterministic, non-trivial weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = cls()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def batch(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)


def export_onnx(model: nn.Module, path: Path, shape: Sequence[int], *, dynamic: Sequence[int] = (0,)) -> Path:
    """``torch.onnx.export`` (TorchScript-based exporter, no onnxscript needed) with dynamic axes."""
    axes = {"x": {axis: f"d{axis}" for axis in dynamic}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(*shape),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes=axes, opset_version=17)
    return path


def export_pt2(model: nn.Module, path: Path, shape: Sequence[int], *, dynamic_batch: bool = True) -> Path:
    """``torch.export.export`` + ``torch.export.save``."""
    dims = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic_batch else None
    example = torch.zeros(2 if dynamic_batch else shape[0], *shape[1:])  # a batch of 1 would specialise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (example,), dynamic_shapes=dims)
        torch.export.save(program, str(path))
    return path


def torch_outputs(model: nn.Module, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Outputs of the named submodules of ``model`` for input ``x`` (forward hooks, cloned)."""
    found: dict[str, np.ndarray] = {}
    modules = dict(model.named_modules())

    def hook_for(name: str):
        def hook(_module, _inputs, output) -> None:  # returns None: the output is not replaced
            found.setdefault(name, output.detach().clone().numpy())

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        with torch.no_grad():
            model(torch.from_numpy(x))
    finally:
        for handle in handles:
            handle.remove()
    return found
