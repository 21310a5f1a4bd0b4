"""Kernels come out in canonical (out, in/groups, *k) layout for every torch conv kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from convscope import Scope
from convscope.adapters.torch_adapter import TorchAdapter


def kernel_of(module: nn.Module):
    return TorchAdapter(nn.Sequential(module)).kernel("0")


@pytest.mark.parametrize(
    "module",
    [
        nn.Conv1d(4, 6, 5),
        nn.Conv2d(3, 8, 3),
        nn.Conv3d(2, 4, 3),
        nn.Conv2d(8, 12, 3, groups=4),
        nn.Conv2d(6, 6, 3, groups=6),  # depthwise
        nn.Conv2d(6, 12, 3, groups=6),  # depthwise with multiplier 2
        nn.Conv2d(3, 4, 3, dilation=2),
    ],
)
def test_forward_convs_keep_torch_layout(module):
    bank = kernel_of(module)
    assert bank.shape == tuple(module.weight.shape)
    np.testing.assert_array_equal(bank.weights, module.weight.detach().numpy())
    assert bank.groups == module.groups
    assert bank.in_channels == module.in_channels and bank.out_channels == module.out_channels


@pytest.mark.parametrize(
    "module",
    [
        nn.ConvTranspose1d(4, 6, 3),
        nn.ConvTranspose2d(8, 6, 3, groups=2),
        nn.ConvTranspose2d(5, 7, 2, stride=2),
        nn.ConvTranspose3d(4, 2, 3),
        nn.ConvTranspose2d(6, 6, 3, groups=6),
    ],
)
def test_transposed_convs_are_converted_to_out_in_layout(module):
    bank = kernel_of(module)
    k = tuple(module.kernel_size)
    assert bank.shape == (module.out_channels, module.in_channels // module.groups, *k)
    assert bank.transposed


def test_transposed_kernel_is_what_each_output_channel_stamps():
    """A one-hot input on input channel i stamps weights[o, i_local] into output channel o."""
    torch.manual_seed(0)
    module = nn.ConvTranspose2d(4, 6, 3, groups=2, bias=False)
    bank = kernel_of(module)
    for i in range(4):
        x = torch.zeros(1, 4, 1, 1)
        x[0, i] = 1.0
        out = module(x).detach().numpy()[0]  # (6, 3, 3)
        for o in range(6):
            group_of_o = o // 3
            if i // 2 == group_of_o:
                np.testing.assert_allclose(out[o], bank.weights[o, i % 2], rtol=0, atol=1e-7)
                assert bank.input_channel_of(o, i % 2) == i
            else:
                assert np.all(out[o] == 0)


def test_forward_kernel_matches_correlation():
    """weights[o, i] is the cross-correlation kernel of output o on input i (checked with a one-hot at the centre)."""
    module = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    bank = kernel_of(module)
    x = torch.zeros(1, 2, 3, 3)
    x[0, 1, 1, 1] = 1.0
    out = module(x).detach().numpy()[0]
    np.testing.assert_allclose(out, bank.weights[:, 1, ::-1, ::-1], atol=1e-7)


def test_half_precision_weights_are_upcast_to_float32():
    module = nn.Conv2d(3, 4, 3).to(torch.bfloat16)
    bank = kernel_of(module)
    assert bank.weights.dtype == np.float32 and bank.source_dtype == "bfloat16"


def test_non_conv_layer_has_no_kernels():
    scope = Scope(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    with pytest.raises(ValueError, match="not a convolution"):
        scope.kernels("1")


def test_pattern_returns_dict_in_model_order():
    scope = Scope(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3)))
    banks = scope.kernels()
    assert list(banks) == ["0", "2"]


def test_bias_is_kept():
    module = nn.Conv2d(1, 2, 3)
    np.testing.assert_array_equal(kernel_of(module).bias, module.bias.detach().numpy())


def test_conv_applied_with_canonical_kernel_reproduces_the_layer():
    """Equivalence: F.conv2d with the canonical kernel equals the grouped layer's output."""
    torch.manual_seed(1)
    module = nn.Conv2d(6, 9, 3, groups=3, bias=False)
    bank = kernel_of(module)
    x = torch.randn(1, 6, 8, 8)
    ref = module(x)
    again = F.conv2d(x, torch.from_numpy(bank.weights), groups=bank.groups)
    torch.testing.assert_close(again, ref)
