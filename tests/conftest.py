"""Shared fixtures: tiny torch models and the "model unchanged" check."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")


def assert_same_fingerprint(before: dict, after: dict) -> None:
    """Everything convscope promises not to change: state (params + buffers), modes, requires_grad, grads, hooks."""
    import torch

    assert before["state"].keys() == after["state"].keys()
    for key in before["state"]:
        assert torch.equal(before["state"][key], after["state"][key]), f"{key} changed"
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert len(before["grads"]) == len(after["grads"])
    for g0, g1 in zip(before["grads"], after["grads"]):
        assert (g0 is None) == (g1 is None)
        if g0 is not None:
            assert torch.equal(g0, g1)
    assert before["hooks"] == after["hooks"]


@pytest.fixture(autouse=True)
def _deterministic_process_state():
    """Every test starts from the same torch and legacy-numpy random state (tests that build random
    tiny nets, which can have dead ReLUs, are reproducible whatever runs before them), and torch's
    thread count is restored after it (the benchmark smoke test runs a one-thread way in-process)."""
    import sys

    np.random.seed(0)
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.manual_seed(0)
    yield
    torch = sys.modules.get("torch")
    if torch is not None and threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
