""".pt2 gradients(): one forward + one VJP, equal to torch autograd on the eager model it came from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import convscope
from convscope.adapters.base import SupportsGradients
from convscope.core.objective import ChannelObjective
from tests.adapters.onnx.nets import TinyUNet, batch, export_pt2, make


class SigmoidNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(torch.relu(self.conv(x))))


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    model = make(TinyUNet)
    return model, convscope.load(export_pt2(model, tmp_path_factory.mktemp("pt2g") / "u.pt2", (1, 1, 16, 16)), trust=True)


def eager_reference(model: nn.Module, x: np.ndarray, layers: list[str], objective: ChannelObjective):
    """Independent: forward hooks on the eager model + torch.autograd.grad of sum(W * out)."""
    acts: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(n).register_forward_hook(lambda _m, _i, o, n=n: acts.setdefault(n, o)) for n in layers]
    try:
        xt = torch.from_numpy(x).requires_grad_(True)
        out = model(xt)
        w = torch.from_numpy(objective.cotangent(out.detach().numpy()))
        grads = torch.autograd.grad(out, [acts[n] for n in layers] + [xt], grad_outputs=w)
    finally:
        for h in handles:
            h.remove()
    return {n: g.numpy() for n, g in zip(layers, grads)}, grads[-1].numpy(), {n: acts[n].detach().numpy() for n in layers}


def test_pt2_gradients_equal_eager_autograd(unet):
    model, scope = unet
    assert isinstance(scope.adapter, SupportsGradients)
    x = batch((2, 1, 16, 16), seed=4)
    mask = np.zeros((16, 16), bool)
    mask[4:10, 2:8] = True
    objective = ChannelObjective(channel=1, mask=mask)
    layers = ["enc1", "dec2", "head"]
    got = scope.adapter.gradients(x, layers, objective, with_input=True)
    ref_grads, ref_input, ref_acts = eager_reference(model, x, layers, objective)
    assert got.output_name == "output"
    for name in layers:
        np.testing.assert_allclose(got.activations[name], ref_acts[name], atol=1e-5)
        np.testing.assert_allclose(got.gradients[name], ref_grads[name], atol=1e-5)
        assert np.abs(got.gradients[name]).sum() > 0
    np.testing.assert_allclose(got.input_gradient, ref_input, atol=1e-5)
    out = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got.score, (objective.cotangent(out) * out).reshape(2, -1).sum(1), rtol=1e-5)


def test_pt2_gradients_start_from_the_logits_of_a_final_sigmoid(tmp_path):
    model = make(SigmoidNet)
    scope = convscope.load(export_pt2(model, tmp_path / "s.pt2", (1, 1, 8, 8)), trust=True)
    x = batch((2, 1, 8, 8), seed=1)
    got = scope.adapter.gradients(x, ["conv"], ChannelObjective(channel=0))
    assert got.output_name == "output (input of the final sigmoid)"
    logits = model.head(torch.relu(model.conv(torch.from_numpy(x)))).detach().numpy()
    np.testing.assert_allclose(got.output, logits, atol=1e-6)
    plain = scope.adapter.gradients(x, ["conv"], ChannelObjective(channel=0, from_logits=False))
    assert plain.output_name == "output" and plain.output.min() >= 0 and plain.output.max() <= 1
    assert not np.allclose(plain.gradients["conv"], got.gradients["conv"])


def test_pt2_gradients_leave_the_program_unchanged(unet):
    _, scope = unet
    module = scope.adapter.module
    before = {k: (v.clone(), v.requires_grad, v.grad) for k, v in module.named_parameters()}
    scope.adapter.gradients(batch((1, 1, 16, 16)), ["enc1"], ChannelObjective())
    for k, v in module.named_parameters():
        assert torch.equal(v, before[k][0]) and v.requires_grad == before[k][1] and v.grad is None
