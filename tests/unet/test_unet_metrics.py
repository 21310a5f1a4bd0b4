"""Skip metrics on constructed models: a zeroed branch gives shares of exactly 0 or 1, symmetric ones 0.5."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.errors import ConvscopeError

torch = pytest.importorskip("torch")
nn = torch.nn

from convscope.adapters.torch.unet import gradient_shares  # noqa: E402
from convscope.unet_flow import build_unet_flow, unet_backend_for  # noqa: E402

from . import unet_zoo as Z  # noqa: E402


def flow_of(model: nn.Module, x: torch.Tensor | None = None, **kwargs: object):
    batch = (Z.block_constant_input() if x is None else x).numpy()
    return build_unet_flow(unet_backend_for(model), batch, None, **kwargs)


@pytest.mark.parametrize("merge", ["concat", "add"])
def test_zeroed_skip_has_zero_shares(merge: str) -> None:
    (m,) = flow_of(Z.TwoBranch(merge, zero="skip")).metrics
    assert m.merge_kind == merge
    assert m.energy_share == 0.0
    assert m.gradient_share == 0.0


@pytest.mark.parametrize("merge", ["concat", "add"])
def test_zeroed_decoder_gives_the_skip_everything(merge: str) -> None:
    (m,) = flow_of(Z.TwoBranch(merge, zero="decoder")).metrics
    assert m.energy_share == 1.0
    assert m.gradient_share == 1.0


@pytest.mark.parametrize("merge", ["concat", "add"])
def test_symmetric_branches_share_half(merge: str) -> None:
    (m,) = flow_of(Z.TwoBranch(merge)).metrics
    assert m.energy_share == pytest.approx(0.5, abs=1e-6)
    assert m.gradient_share == pytest.approx(0.5, abs=1e-6)
    assert m.skip_energy == pytest.approx(m.decoder_energy, rel=1e-6)


class TwoHeads(Z.TwoBranch):
    """Concat of skip and decoder; output channel 0 reads only the skip, channel 1 only the decoder."""

    def __init__(self) -> None:
        super().__init__("concat")
        self.head = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 2, 1, 1))


@pytest.mark.parametrize(("target", "share"), [(0, 1.0), (1, 0.0)])
def test_gradient_share_follows_the_target_channel(target: int, share: float) -> None:
    (m,) = flow_of(TwoHeads(), target=target).metrics
    assert m.gradient_share == share
    assert m.energy_share == pytest.approx(0.5, abs=1e-6)


def test_an_all_ones_mask_equals_no_mask() -> None:
    model = Z.UNet(3)
    x = torch.rand(1, 1, 16, 16)
    plain = [m.gradient_share for m in flow_of(model, x).metrics]
    masked = [m.gradient_share for m in flow_of(model, x, mask=np.ones((16, 16), bool)).metrics]
    assert masked == pytest.approx(plain, rel=1e-6)


def test_an_empty_mask_leaves_the_gradient_share_undefined() -> None:
    (m,) = flow_of(Z.TwoBranch(), mask=np.zeros((8, 8))).metrics
    assert m.gradient_share is None
    assert m.energy_share == pytest.approx(0.5, abs=1e-6)


def test_a_mask_at_another_size_is_resized_to_the_output() -> None:
    (m,) = flow_of(Z.TwoBranch(), mask=np.ones((4, 4))).metrics
    assert m.gradient_share == pytest.approx(0.5, abs=1e-6)


def test_a_mask_of_the_wrong_rank_is_rejected() -> None:
    with pytest.raises(ConvscopeError, match="mask must be"):
        flow_of(Z.TwoBranch(), mask=np.ones(8))


def test_a_target_outside_the_output_channels_is_rejected() -> None:
    with pytest.raises(ConvscopeError, match=r"target must be a channel index of the output, 0\.\.0"):
        flow_of(Z.TwoBranch(), target=3)


def test_shares_lie_in_unit_interval_for_a_real_unet() -> None:
    torch.manual_seed(0)  # a tiny random net can have dead ReLUs (zero gradient): keep it deterministic
    flow = flow_of(Z.AttentionUNet(), torch.rand(1, 1, 32, 32))
    assert len(flow.metrics) == 3
    for m in flow.metrics:
        assert 0.0 < m.energy_share < 1.0
        assert 0.0 < m.gradient_share < 1.0


def test_unetplusplus_shares_at_one_merge_are_fractions_of_all_its_branches() -> None:
    flow = flow_of(Z.UNetPlusPlus(), torch.rand(1, 1, 16, 16))
    into_last = [m for m in flow.metrics if m.merge == "cat#5"]
    assert [m.source for m in into_last] == ["blocks.x00.5", "blocks.x01.5", "blocks.x02.5"]
    assert sum(m.energy_share for m in into_last) < 1.0  # the upsampled branch has the rest


def test_gradient_shares_function_sums_to_one_per_merge() -> None:
    model = Z.TwoBranch()
    shares = gradient_shares(model, Z.block_constant_input().numpy(), ["cat"])
    assert shares["cat"] == pytest.approx((0.5, 0.5), abs=1e-6)
