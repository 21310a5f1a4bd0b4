"""The memory budget counts the backward pass: a budget between a forward-only and a forward+backward
estimate lets ``activations`` run and refuses ``cam`` and ``unet`` with the one budget line (exit 2),
through the installed console script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convscope as cs
from convscope.core.budget import estimate_capture, probe_sizes

from .test_cli_errors import assert_one_line_error, cli

SIDE = 384


@pytest.fixture(scope="module")
def gray_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("budget") / "scan.png"
    Image.fromarray((np.random.default_rng(0).random((SIDE, SIDE)) * 255).astype(np.uint8), mode="L").save(path)
    return path


def _estimate(scope: cs.Scope, image: Path, layers, mode: str) -> int:
    shape, chosen, _, _, _ = scope._budget_inputs(str(image), layers, None, None)
    return estimate_capture(shape, probe_sizes(scope._probe_shapes, shape), chosen, mode=mode, method="probe").total


@pytest.fixture(scope="module")
def between(gray_png) -> int:
    """A budget above what ``activations`` needs and below what ``cam`` and ``unet`` need (bytes)."""
    scope = cs.load("demo:unet")
    forward = _estimate(scope, gray_png, None, "stream")  # the activations command streams every layer
    cam = _estimate(scope, gray_png, scope._cam_layers(None), "gradients")
    unet = _estimate(scope, gray_png, None, "gradients")
    # streaming holds at most STREAM_PENDING_BYTES plus the largest layer (here: every layer fits)
    assert forward < cam < unet and forward <= _estimate(scope, gray_png, None, "hold")
    return (forward + cam) // 2


def test_activations_fit_the_budget(gray_png, between, tmp_path):
    result = cli("activations", "demo:unet", str(gray_png), "-o", str(tmp_path / "a"), "--max-memory", str(between))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("command", "what"), [("cam", "the CAMs (activations and gradients)"),
                                               ("unet", "the U-Net flow (every layer, one backward pass)")])
def test_backward_commands_are_refused(gray_png, between, tmp_path, command, what):
    out = tmp_path / command
    result = cli(command, "demo:unet", str(gray_png), "-o", str(out), "--max-memory", str(between))
    assert_one_line_error(result, f"{what} at {SIDE}x{SIDE} would need about", "--max-memory", "--size", "--layer")
    assert not out.exists()
