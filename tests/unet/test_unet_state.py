"""The model is never changed: parameters, buffers, modes, requires_grad, .grad and hooks; one forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.errors import ConvscopeError, NotAUNet

torch = pytest.importorskip("torch")
nn = torch.nn

from convscope.adapters.torch_graph import trace_torch  # noqa: E402
from convscope.adapters.torch_state import model_fingerprint  # noqa: E402
from convscope.unet_flow import build_unet_flow, unet_backend_for  # noqa: E402

from ..conftest import assert_same_fingerprint  # noqa: E402
from . import unet_zoo as Z  # noqa: E402


def _batch(shape: tuple[int, ...] = (2, 1, 16, 16)) -> np.ndarray:
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def _busy_model() -> nn.Module:
    """A U-Net in train mode, one frozen parameter, existing .grad values and a user hook."""
    torch.manual_seed(0)
    model = Z.UNet(3)
    model.train()
    model.down[0][1].eval()  # mixed modes
    model.head.bias.requires_grad_(False)
    model(torch.rand(2, 1, 16, 16)).sum().backward()  # populate .grad and BN running stats
    model.ups[0].register_forward_hook(lambda m, i, o: None)
    return model


def _no_function_mode_left() -> bool:
    return torch._C._len_torch_function_stack() == 0


def test_build_unet_flow_leaves_the_model_unchanged() -> None:
    model = _busy_model()
    before = model_fingerprint(model)
    build_unet_flow(unet_backend_for(model), _batch(), None)
    assert_same_fingerprint(before, model_fingerprint(model))
    assert model.training and not model.down[0][1].training


def test_tracing_with_gradients_leaves_the_model_unchanged() -> None:
    model = _busy_model()
    before = model_fingerprint(model)
    trace_torch(model, _batch(), keep="all", gradient_merges=lambda g: [n.id for n in g if n.op == "concat"])
    assert_same_fingerprint(before, model_fingerprint(model))


def test_no_hooks_and_no_function_mode_are_left_behind() -> None:
    model = Z.UNet(3)
    trace_torch(model, _batch())
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._forward_hooks_with_kwargs and not module._forward_pre_hooks_with_kwargs
    assert _no_function_mode_left()


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Z.UNet(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner(x)
        raise RuntimeError("boom after the decoder")


def test_the_model_is_unchanged_when_the_forward_raises() -> None:
    model = Exploding()
    model.train()
    before = model_fingerprint(model)
    with pytest.raises(ConvscopeError, match="boom after the decoder"):
        build_unet_flow(unet_backend_for(model), _batch(), None)
    assert_same_fingerprint(before, model_fingerprint(model))
    assert model.training
    assert _no_function_mode_left()


def test_the_model_is_unchanged_when_it_is_not_a_unet() -> None:
    model = Z.EncoderOnly()
    model.train()
    before = model_fingerprint(model)
    with pytest.raises(NotAUNet):
        build_unet_flow(unet_backend_for(model), _batch(), None)
    assert_same_fingerprint(before, model_fingerprint(model))
    assert _no_function_mode_left()


def test_one_forward_pass_for_graph_values_and_gradients() -> None:
    model = Z.UNet(3)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    build_unet_flow(unet_backend_for(model), _batch(), None)
    assert len(calls) == 1


def test_batchnorm_running_stats_are_untouched_in_train_mode_tracing() -> None:
    model = Z.UNet(3)
    stats = model.down[0][1].running_mean.clone()
    trace_torch(model, _batch(), train_mode=True)
    assert torch.equal(model.down[0][1].running_mean, stats)
