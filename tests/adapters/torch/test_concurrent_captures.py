"""``TorchAdapter.concurrent_captures``: several threads capture at once, each sees only its own pass.

Transparency (outputs as without the block), equivalence (each thread's activations equal a plain
capture of its batch), no mutation (also when the block raises), no leak (hooks gone, thread count
restored), and the views handed to reducing callbacks.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn as nn

from convscope.adapters.torch_adapter import TorchAdapter
from convscope.adapters.torch_state import model_fingerprint
from convscope.errors import ConvscopeError
from tests.conftest import assert_same_fingerprint

LAYERS = ["conv", "bn", "shared", "shared#1", "head"]


class Twice(nn.Module):
    """conv -> BN -> in-place ReLU -> the same conv twice (``shared``, ``shared#1``) -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.shared = nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.shared(self.shared(self.relu(self.bn(self.conv(x))))))


def make_net(train: bool = True) -> Twice:
    torch.manual_seed(0)
    net = Twice()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    return net.train(train)


def batches(count: int, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((n, 3, 12, 12)).astype(np.float32) for _ in range(count)]


def plain(net: nn.Module, batch: np.ndarray, threads: int | None = None) -> dict[str, np.ndarray]:
    """A plain capture, on ``threads`` torch threads (a convolution's float result depends on them)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        result = TorchAdapter(net).capture(batch, ["conv", "bn", "shared", "head"])
    finally:
        torch.set_num_threads(before)
    return {**result.activations, "output": result.output}


def test_each_thread_gets_exactly_its_own_activations() -> None:
    net = make_net()
    inputs = batches(6)
    expected = [plain(net, b, threads=max(1, torch.get_num_threads() // 3)) for b in inputs]
    adapter = TorchAdapter(net)
    meet = threading.Barrier(3)  # the first 3 captures all wait inside their first hook: they surely overlap

    def work(i: int) -> dict[str, np.ndarray]:
        have: dict[str, np.ndarray] = {}

        def keep(name: str, array: np.ndarray) -> None:
            if name == "conv" and i < 3:
                meet.wait(timeout=30)
            have[name] = array

        result = adapter.capture(inputs[i], ["conv", "bn", "shared", "head"], on_activation=keep)
        return {**have, "output": result.output}

    with adapter.concurrent_captures(["conv", "bn", "shared", "head"], 3):
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(work, range(len(inputs))))
    for want, have in zip(expected, got):
        assert sorted(have) == sorted(want) == sorted(LAYERS + ["output"])
        for key in want:
            np.testing.assert_array_equal(have[key], want[key], err_msg=key)


def test_the_model_is_as_before_after_the_block_also_when_it_raised() -> None:
    net = make_net(train=True)
    before = model_fingerprint(net)
    adapter = TorchAdapter(net)
    seen_training: list[bool] = []
    with adapter.concurrent_captures(["conv"], 2):
        adapter.capture(batches(1)[0], ["conv"], on_activation=lambda name, a: seen_training.append(net.training))
    assert seen_training == [False]  # eval inside the block
    assert_same_fingerprint(before, model_fingerprint(net))
    with pytest.raises(RuntimeError, match="boom"):
        with adapter.concurrent_captures(["conv", "head"], 2):
            adapter.capture(batches(1)[0], ["conv"])
            raise RuntimeError("boom")
    assert_same_fingerprint(before, model_fingerprint(net))
    assert adapter._hooks is None
    # a plain capture after the block works as before
    np.testing.assert_array_equal(adapter.capture(batches(1)[0], ["conv"]).activations["conv"],
                                  plain(net, batches(1)[0])["conv"])
    assert_same_fingerprint(before, model_fingerprint(net))


def test_torch_threads_are_split_for_the_block_and_restored() -> None:
    before = torch.get_num_threads()
    if before < 2:
        pytest.skip("torch runs on one thread here")
    adapter = TorchAdapter(make_net(train=False))
    seen: list[int] = []
    with adapter.concurrent_captures(["conv"], 2) as at_once:
        assert at_once == 2
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda b: adapter.capture(b, ["conv"], on_activation=lambda n, a: seen.append(torch.get_num_threads())),
                          batches(4)))
    assert seen == [before // 2] * 4
    assert torch.get_num_threads() == before
    with adapter.concurrent_captures(["conv"], 10 * before) as at_once:
        assert at_once == 10 * before  # each on one thread, never below
        adapter.capture(batches(1)[0], ["conv"], on_activation=lambda n, a: seen.append(torch.get_num_threads()))
    assert seen[-1] == 1
    with adapter.concurrent_captures(["conv"]) as at_once:  # default: one capture per torch thread
        assert at_once == before
        adapter.capture(batches(1)[0], ["conv"], on_activation=lambda n, a: seen.append(torch.get_num_threads()))
    assert seen[-1] == 1 and torch.get_num_threads() == before


def test_views_are_read_only_and_hold_the_value_before_later_in_place_ops() -> None:
    net = make_net(train=False)
    batch = batches(1)[0]
    want = plain(net, batch, threads=max(1, torch.get_num_threads() // 2))
    adapter = TorchAdapter(net)
    got: dict[str, tuple[np.ndarray, bool]] = {}

    def reduce(name: str, view: np.ndarray) -> None:
        got[name] = (view.copy(), view.flags.writeable)

    with adapter.concurrent_captures(["bn", "head"], 2, views=True):
        adapter.capture(batch, ["bn", "head"], on_activation=reduce)
    np.testing.assert_array_equal(got["bn"][0], want["bn"])
    assert (got["bn"][0] < 0).any()  # the in-place ReLU after bn had not run yet
    assert got["bn"][1] is False and got["head"][1] is False


def test_a_channels_last_output_is_copied_in_logical_order() -> None:
    net = make_net(train=False).to(memory_format=torch.channels_last)
    batch = batches(1)[0]
    want = plain(net, batch, threads=max(1, torch.get_num_threads() // 2))
    adapter = TorchAdapter(net)
    got: dict[str, np.ndarray] = {}
    with adapter.concurrent_captures(["head"], 2, views=True):
        adapter.capture(batch, ["head"], on_activation=lambda n, a: got.__setitem__(n, a))
    assert got["head"].flags.c_contiguous and got["head"].flags.writeable  # a copy the callee owns
    np.testing.assert_array_equal(got["head"], want["head"])


def test_misuse_is_one_clear_error() -> None:
    adapter = TorchAdapter(make_net(train=False))
    with adapter.concurrent_captures(["conv"], 2):
        with pytest.raises(ConvscopeError, match="not among the layers"):
            adapter.capture(batches(1)[0], ["head"])
        with pytest.raises(ConvscopeError, match="train-mode"):
            adapter.capture(batches(1)[0], ["conv"], train_mode=True)
        with pytest.raises(ConvscopeError, match="do not nest"):
            with adapter.concurrent_captures(["conv"], 2):
                pass
    with pytest.raises(ConvscopeError, match="no layer named"):
        with adapter.concurrent_captures(["nope"], 2):
            pass
