"""The memory budget (convscope.core.budget): parsing, the estimate, the probe, the refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn as nn

import convscope as cs
from convscope.core import budget
from convscope.core.budget import MemoryBudgetError, check_capture, estimate_capture, parse_memory, probe_sizes
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
