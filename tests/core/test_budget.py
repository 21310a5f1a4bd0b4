"""The memory budget (convscope.core.budget): parsing, the estimate, the probe, the refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn as nn

import convscope as cs
from convscope.core import budget
from convscope.core.budget import (
    MemoryBudgetError,
    check_capture,
    estimate_capture,
    parse_memory,
    plan_chunks,
    probe_sizes,
)
from convscope.errors import ConvscopeError


@pytest.mark.parametrize(("text", "expected"), [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5GB", int(1.5 * 2**30)),
                                                ("2048", 2048), (1000, 1000)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


def test_parse_memory_percent_of_available(monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 10 * 2**30)
    assert parse_memory("60%") == 6 * 2**30
    assert budget.default_budget() == int(10 * 2**30 * budget.DEFAULT_FRACTION)


@pytest.mark.parametrize("text", ["lots", "0", "-1G", "150%", "4Q"])
def test_parse_memory_refuses_nonsense(text):
    with pytest.raises(ConvscopeError, match="--max-memory"):
        parse_memory(text)


def test_estimate_counts_input_forward_held_and_pictures():
    per_sample = {"a": 100, "b": 400, "c": 50}  # elements per sample
    est = estimate_capture((2, 3, 10, 10), per_sample, ["a", "c"], mode="hold")
    assert est.parts["input"] == 2 * 3 * 100 * 4
    assert est.parts["forward"] == budget.FORWARD_FACTOR * 400 * 2 * 4  # the largest of ANY layer
    assert est.parts["held"] == (100 + 50) * 2 * 4
    assert est.parts["pictures"] == budget.PICTURE_FACTOR * 100 * 4
    assert est.largest_layer == "a" and est.largest_bytes == 800 and est.total == sum(est.parts.values())
    stream = estimate_capture((2, 3, 10, 10), {f"l{i}": 2**22 for i in range(100)}, [f"l{i}" for i in range(100)],
                              mode="stream")
    assert stream.parts["held"] == budget.STREAM_PENDING_BYTES + 2**22 * 2 * 4  # bounded, not 100 layers


def test_probe_extrapolates_with_input_pixels_and_keeps_pooled_layers():
    def probe(shape):
        side = shape[-1]
        return {"conv": (8, side, side), "down": (16, side // 2, side // 2), "head": (10,)}

    sizes = probe_sizes(probe, (1, 3, 1000, 1000))
    assert sizes == {"conv": 8 * 1000 * 1000, "down": 16 * 500 * 500, "head": 10}


class _Wide(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 32, 3, padding=1)
        self.down = nn.Conv2d(32, 32, 3, stride=4, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.down(self.conv(x)))


def test_scope_refuses_before_the_forward_pass_and_names_what_to_change():
    scope = cs.Scope(_Wide())
    calls = []
    scope.model.register_forward_pre_hook(lambda *_: calls.append(1))
    scope.max_memory = 8 * 2**20
    image = np.zeros((1, 1, 1024, 1024), np.float32)
    with pytest.raises(MemoryBudgetError) as info:
        scope.activations(image)
    message = str(info.value)
    assert "at 1024x1024 would need about" in message and "--size" in message and "--layer" in message
    assert "the largest, conv" in message
    assert len(calls) == 2  # only the two tiny probe passes ran, never the big one
    scope.max_memory = 4 * 2**30
    assert set(scope.activations(image).keys()) == {"conv", "down"}


def test_small_inputs_cost_no_probe():
    scope = cs.Scope(_Wide())
    calls = []
    scope.model.register_forward_pre_hook(lambda *_: calls.append(1))
    scope.activations(np.zeros((1, 1, 32, 32), np.float32))
    assert len(calls) == 1  # the metadata bound was enough: exactly one forward pass


def test_estimate_is_an_upper_bound_of_what_a_capture_holds():
    scope = cs.Scope(_Wide())
    image = np.zeros((1, 1, 256, 256), np.float32)
    names = scope.select(None)
    est = scope.check_memory(image, names)
    acts = scope.activations(image)
    held = sum(a.data.nbytes for a in acts.values())
    assert est.parts["held"] >= held and est.total > held


def test_check_capture_without_probe_uses_the_input_only():
    with pytest.raises(MemoryBudgetError, match="would need about"):
        check_capture((1, 3, 4000, 4000), ["x"], channels_by_layer={"x": 64}, budget=2**20)


# -- forward + backward work (mode "gradients"), Score-CAM's masked batches, kernel workspace ----------


def test_gradients_mode_adds_saved_tensors_and_gradients():
    per_sample = {"a": 100, "b": 400, "c": 50}
    shape = (2, 3, 10, 10)
    hold = estimate_capture(shape, per_sample, ["a", "c"], mode="hold")
    grad = estimate_capture(shape, per_sample, ["a", "c"], mode="gradients")
    every = (100 + 400 + 50) * 2 * 4
    assert grad.parts["saved"] == int(budget.SAVED_FACTOR * every)  # autograd keeps every layer's tensors
    assert grad.parts["grads"] == (100 + 50) * 2 * 4 + hold.parts["input"]  # gradients of the chosen + the input
    assert grad.parts["backward"] == budget.BACKWARD_FACTOR * 400 * 2 * 4  # gradients in flight: the largest layer
    assert grad.total - hold.total == int(budget.SAVED_FACTOR * every) + (100 + 50) * 2 * 4 + hold.parts["input"] \
        + budget.BACKWARD_FACTOR * 400 * 2 * 4
    for key in ("input", "forward", "held", "pictures"):
        assert grad.parts[key] == hold.parts[key]
    with pytest.raises(ValueError, match="gradients"):
        estimate_capture(shape, per_sample, ["a"], mode="backward")


def test_masked_batches_and_workspace_are_counted():
    per_sample = {"a": 100, "b": 400}
    shape = (2, 3, 10, 10)
    base = estimate_capture(shape, per_sample, ["a"])
    est = estimate_capture(shape, per_sample, ["a"], masked=5, workspace=1000)
    assert est.parts["masked"] == 5 * (budget.MASKED_FACTOR * 300 * 4 + budget.MASKED_FORWARD_FACTOR * 400 * 4) + 500 * 4
    assert est.parts["workspace"] == 2 * 1000
    assert est.total - base.total == est.parts["masked"] + est.parts["workspace"]


def test_unfold_workspace_only_for_small_3d_convolutions():
    from convscope.core.layers import LayerInfo

    small = LayerInfo("c", "conv", "Conv3d", in_channels=4, out_channels=8, kernel_size=(3, 3, 3))
    wide = LayerInfo("w", "conv", "Conv3d", in_channels=16, out_channels=8, kernel_size=(3, 3, 3))
    point = LayerInfo("p", "conv", "Conv3d", in_channels=4, out_channels=8, kernel_size=(1, 1, 1))
    flat = LayerInfo("f", "conv", "Conv2d", in_channels=4, out_channels=8, kernel_size=(3, 3))
    assert budget.unfold_workspace([small, wide, point], (1, 1, 48, 48, 48)) == 27 * 4 * 48**3 * 4  # 4*48*48 <= limit
    assert budget.unfold_workspace([wide, point], (1, 1, 48, 48, 48)) == 0  # 16*48*48 > limit: oneDNN, no unfold
    assert budget.unfold_workspace([flat], (1, 1, 48, 48)) == 0


def test_chunks_of_a_backward_run_are_smaller():
    channels = {"a": 8, "b": 8}
    shape = (40, 1, 64, 64)
    hold = plan_chunks(shape, ["a", "b"], channels_by_layer=channels, budget=2**40)
    limit = hold.estimate.total // 4
    forward = plan_chunks(shape, ["a", "b"], channels_by_layer=channels, budget=limit)
    backward = plan_chunks(shape, ["a", "b"], channels_by_layer=channels, budget=limit, mode="gradients")
    assert 1 <= backward.size < forward.size and backward.estimate.total <= limit
    assert backward.estimate.parts["saved"] > 0 and "saved" not in forward.estimate.parts


class _Seg(nn.Module):
    """A small segmentation-shaped CNN (output at the input's size)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.relu2(self.conv2(self.relu1(self.conv1(x)))))


def _probe_estimate(scope, image, layers, mode, **extra):
    shape, chosen, _, _, _ = scope._budget_inputs(image, layers, None, None)
    return estimate_capture(shape, probe_sizes(scope._probe_shapes, shape), chosen, mode=mode, method="probe", **extra)


def test_a_budget_between_forward_and_backward_refuses_cam_not_activations():
    scope = cs.Scope(_Seg().eval())
    image = np.random.default_rng(0).standard_normal((1, 1, 512, 512)).astype(np.float32)
    forward = _probe_estimate(scope, image, None, "hold").total
    backward = _probe_estimate(scope, image, scope._cam_layers(None), "gradients").total
    assert backward > forward
    calls = []
    scope.model.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[-1]))
    scope.max_memory = (forward + backward) // 2
    with pytest.raises(MemoryBudgetError) as info:
        scope.cam(image, method="gradcam")
    message = str(info.value)
    assert "the CAMs (activations and gradients) at 512x512" in message
    assert "--max-memory" in message and "--size" in message and "--layer" in message
    assert 512 not in calls  # refused before the real pass (only the tiny probes ran)
    assert set(scope.activations(image).keys()) == set(scope.select(None))  # forward-only work still fits
    with pytest.raises(MemoryBudgetError, match="the CAMs at 512x512"):  # Score-CAM: its masked batches
        scope.max_memory = _probe_estimate(scope, image, scope._cam_layers(None), "hold").total
        scope.cam(image, method="scorecam", progress=False)


def test_saved_part_covers_what_autograd_saves():
    """The ``saved`` part is at least the bytes autograd really packs for the backward pass
    (``saved_tensors_hooks``: exact, no RSS noise), on a U-Net with skips, pools and in-place ReLUs."""
    import torch

    from convscope.core import targets as tg
    from tests.unet.unet_zoo import UNet

    torch.manual_seed(0)
    scope = cs.Scope(UNet(levels=3, base=8, dims=2).eval())
    image = np.random.default_rng(1).standard_normal((2, 1, 96, 96)).astype(np.float32)
    est = _probe_estimate(scope, image, None, "gradients")
    params = {p.untyped_storage().data_ptr() for p in scope.model.parameters()}
    packed: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            packed[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        scope.adapter.gradients(image, scope.select(None), tg.auto())
    saved = sum(packed.values())
    assert saved > 0 and est.parts["saved"] >= saved
    assert est.parts["saved"] <= 2 * saved  # honest, not a blanket (1.56x here)
