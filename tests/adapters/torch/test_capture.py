"""Activation capture on torch models: transparency, equivalence, no mutation, no leak."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torch.nn as nn

from convscope import Scope
from convscope.adapters.torch_state import model_fingerprint
from convscope.errors import ConvscopeError
from tests.conftest import assert_same_fingerprint


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv2(self.drop(self.relu(self.bn(self.conv(x)))))


def make_net(train: bool = False) -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    return net.train(train)


def image(n: int = 1) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_inplace_relu_does_not_corrupt_captured_conv_output():
    net = make_net()
    acts = Scope(net).activations(image(), ["conv", "bn"])
    x = torch.from_numpy(image())
    with torch.no_grad():
        ref_conv = net.conv(x).numpy()
        ref_bn = net.bn(net.conv(x)).numpy()
    np.testing.assert_array_equal(acts["conv"].data, ref_conv)
    np.testing.assert_array_equal(acts["bn"].data, ref_bn)
    assert (acts["bn"].data < 0).any(), "the in-place ReLU must not have clipped the stored BN output"


def test_capture_is_transparent_output_unchanged():
    net = make_net()
    x = torch.from_numpy(image())
    with torch.no_grad():
        ref = net(x).numpy()
    acts = Scope(net).activations(image(), kind="all")
    np.testing.assert_array_equal(acts.output, ref)


def test_all_layers_from_one_forward_pass():
    net = make_net()
    Scope(net).activations(image(), kind="all")
    assert net.calls == 1


def test_streaming_and_collected_capture_agree():
    net = make_net()
    scope = Scope(net)
    collected = scope.activations(image(), kind="all")
    streamed: dict[str, np.ndarray] = {}
    result = scope.adapter.capture(image(), list(collected), on_activation=lambda n, a: streamed.__setitem__(n, a))
    assert result.activations == {}
    assert streamed.keys() == collected.keys()
    for name in streamed:
        np.testing.assert_array_equal(streamed[name], collected[name].data)


def test_eval_mode_by_default_and_state_restored_after_train_mode_capture():
    net = make_net(train=True)
    net.bn.eval()  # mixed modes, as with frozen BatchNorm
    before = model_fingerprint(net)
    Scope(net).activations(image(4), kind="all", train=True)
    assert_same_fingerprint(before, model_fingerprint(net))
    assert net.training and not net.bn.training


def test_eval_capture_uses_running_stats():
    net = make_net(train=True)
    acts = Scope(net).activations(image(), ["bn"])
    with torch.no_grad():
        ref = net.eval().bn(net.conv(torch.from_numpy(image()))).numpy()
    np.testing.assert_allclose(acts["bn"].data, ref, rtol=1e-6, atol=1e-6)


def test_nothing_changes_including_requires_grad_hooks_and_grads():
    net = make_net()
    net.conv.weight.requires_grad_(False)
    user_handle = net.conv2.register_forward_hook(lambda m, i, o: None)
    net(torch.from_numpy(image())).sum().backward()  # the user has gradients lying around
    before = model_fingerprint(net)
    scope = Scope(net)
    scope.activations(image(), kind="all")
    scope.kernels()
    scope.layers(image())
    assert_same_fingerprint(before, model_fingerprint(net))
    assert len(net.conv2._forward_hooks) == 1
    user_handle.remove()


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.bn(self.conv(x))
        raise RuntimeError("boom inside forward")


def test_model_unchanged_when_forward_raises():
    net = Exploding().train()
    before = model_fingerprint(net)
    with pytest.raises(ConvscopeError, match="forward pass failed.*boom inside forward"):
        Scope(net).activations(image(2), kind="all", train=True)
    assert_same_fingerprint(before, model_fingerprint(net))
    assert net.training


def test_wrong_channel_count_gives_clear_error():
    net = make_net()
    with pytest.raises(ValueError, match="first convolution takes 3 channels but the image has 2"):
        Scope(net).activations(np.zeros((2, 8, 8), dtype=np.float32))


def test_no_hook_or_memory_leak_over_many_calls():
    net = make_net()
    scope = Scope(net)
    for _ in range(3):
        scope.activations(image(), kind="all")
    gc.collect()
    baseline = len(gc.get_objects())
    for _ in range(20):
        scope.activations(image(), kind="all")
    gc.collect()
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    assert len(gc.get_objects()) - baseline < 200


def test_batch_input_keeps_every_sample():
    acts = Scope(make_net()).activations(image(3), ["conv"])
    assert acts["conv"].shape == (3, 4, 8, 8)
    assert not np.array_equal(acts["conv"].sample(0), acts["conv"].sample(2))


def test_list_of_images_becomes_one_batch():
    images = [image()[0], image()[0] * 2]
    acts = Scope(make_net()).activations(images, ["conv"])
    assert acts["conv"].batch_size == 2


def test_half_precision_model_gives_float32_activations():
    net = make_net().to(torch.bfloat16)
    acts = Scope(net).activations(image(), ["conv"])
    assert acts["conv"].data.dtype == np.float32
    assert acts["conv"].source_dtype == "bfloat16"


def test_module_called_twice_is_captured_twice():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(self.conv(x))

    acts = Scope(Twice()).activations(image(), ["conv"])
    assert list(acts) == ["conv", "conv#1"]


def test_device_other_than_the_models_is_refused():
    with pytest.raises(ValueError, match="CUDA is not available|move the model"):
        Scope(make_net(), device="cuda")


def test_unknown_captured_layer_lists_close_names():
    acts = Scope(make_net()).activations(image(), ["conv", "conv2"])
    with pytest.raises(KeyError, match="conv2"):
        acts["conv3"]


def test_uninitialised_lazy_model_is_refused_and_not_materialised():
    net = nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU())
    with pytest.raises(ConvscopeError, match="lazy layers.*Run one forward pass yourself"):
        Scope(net).activations(image())
    assert isinstance(net[0], nn.LazyConv2d)  # still lazy: convscope did not create its weights


def test_channels_last_activations_come_back_contiguous_in_nchw_order():
    net = make_net().to(memory_format=torch.channels_last)
    acts = Scope(net).activations(image(), ["conv"])
    with torch.no_grad():
        ref = net.conv(torch.from_numpy(image()).to(memory_format=torch.channels_last)).numpy()
    assert acts["conv"].data.flags.c_contiguous
    np.testing.assert_array_equal(acts["conv"].data, ref)


def test_model_with_two_inputs_gets_a_clear_message():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x, y):
            return self.conv(x) + y

    with pytest.raises(ConvscopeError, match="more than one input.*wrap the model"):
        Scope(TwoInputs()).activations(image())
