"""The CAM numbers against independent implementations (Captum, torchcam, numpy SVD, the paper's formula)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import convscope as cs
from convscope.core import attribution as at

captum_attr = pytest.importorskip("captum.attr")


class UNet(nn.Module):
    """Two-level U-Net, 2D or 3D: enc1, pool, enc2 (bottleneck), transposed-conv up, cat, dec1, 1x1 head."""

    def __init__(self, dims: int = 2, classes: int = 3) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        up = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        self.enc1 = conv(1, 4, 3, padding=1)
        self.act1 = nn.ReLU(inplace=True)
        self.pool = pool(2)
        self.enc2 = conv(4, 8, 3, padding=1)
        self.act2 = nn.ReLU()
        self.up = up(8, 4, 2, stride=2)
        self.dec1 = conv(8, 4, 3, padding=1)
        self.act3 = nn.ReLU(inplace=True)
        self.head = conv(4, classes, 1)

    def forward(self, x):
        e1 = self.act1(self.enc1(x))
        e2 = self.act2(self.enc2(self.pool(e1)))
        d1 = self.act3(self.dec1(torch.cat([self.up(e2), e1], dim=1)))
        return self.head(d1)


def _setup(dims: int):
    torch.manual_seed(3)
    model = UNet(dims).eval()
    size = (16, 16) if dims == 2 else (8, 8, 8)
    x = np.random.default_rng(2).standard_normal((2, 1, *size)).astype(np.float32)
    mask = np.zeros(size, dtype=bool)
    mask[tuple(slice(2, 7) for _ in size)] = True
    return model, x, mask


@pytest.fixture(scope="module", params=[2, 3], ids=["2d", "3d"])
def setup(request):
    return (request.param, *_setup(request.param))


def _captum_forward(model, mask, cls=1):
    m = torch.from_numpy(mask.astype(np.float32))
    return lambda inp: (model(inp)[:, cls] * m).flatten(1).sum(1)


@pytest.mark.parametrize("layer", ["enc2", "dec1"])
def test_gradcam_equals_captum_layergradcam_interpolated(setup, layer):
    dims, model, x, mask = setup
    scope = cs.Scope(model)
    cam = scope.cam(x, layer=layer, target=cs.targets.segmentation(cls=1, mask=mask), cam_normalize="none")
    ref = captum_attr.LayerGradCam(_captum_forward(model, mask), getattr(model, layer)).attribute(
        torch.from_numpy(x), relu_attributions=True
    )
    ref = captum_attr.LayerAttribution.interpolate(ref, x.shape[2:], "bilinear" if dims == 2 else "trilinear")
    ref = ref[:, 0].detach().numpy()
    assert cam.data.shape == ref.shape
    assert np.abs(ref).max() > 1e-4  # not a vacuous comparison
    np.testing.assert_allclose(cam.data, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer", ["enc1", "dec1"])
def test_hirescam_equals_captum_gradient_x_activation_summed(setup, layer):
    dims, model, x, mask = setup
    cams = cs.Scope(model).cam(x, layer=[layer], target=cs.targets.segmentation(cls=1, mask=mask),
                               method=["hirescam", "gradcam"])
    ref = captum_attr.LayerGradientXActivation(_captum_forward(model, mask), getattr(model, layer)).attribute(
        torch.from_numpy(x)
    )
    ref = ref.sum(1).detach().numpy()
    np.testing.assert_allclose(cams[(layer, "hirescam")].raw, ref, atol=1e-5, rtol=1e-5)


def _eq19(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018, Eq. 19), written out per channel with torch ops."""
    dims = tuple(range(2, acts.dim()))
    g = grads.double()
    a = acts.double()
    num = g**2
    den = 2 * g**2 + a.sum(dim=dims, keepdim=True) * g**3
    alpha = torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(den))
    w = (alpha * torch.relu(g)).sum(dim=dims)  # (N, C)
    return torch.einsum("nc,nc...->n...", w, a).float()


def test_gradcampp_equals_the_papers_eq19(setup):
    dims, model, x, mask = setup
    t = cs.targets.segmentation(cls=2, mask=mask)
    lg = cs.Scope(model).adapter.gradients(x, ["dec1"], t)
    cam = cs.Scope(model).cam(x, layer="dec1", target=t, method="gradcam++")
    ref = _eq19(torch.from_numpy(lg.activations["dec1"]), torch.from_numpy(lg.gradients["dec1"])).numpy()
    np.testing.assert_allclose(cam.raw, ref, atol=1e-5, rtol=1e-5)
    assert np.abs(ref).max() > 1e-5


def test_eigencam_equals_numpy_svd_first_component_up_to_sign(setup):
    dims, model, x, _ = setup
    cam = cs.Scope(model).cam(x, layer="enc2", method="eigencam", cam_normalize="none", relu=False)
    acts = cs.Scope(model).activations(x, ["enc2"])["enc2"].data
    for n in range(x.shape[0]):
        m = acts[n].reshape(acts.shape[1], -1).T.astype(np.float64)
        m = m - m.mean(axis=0)
        _, _, vt = np.linalg.svd(m, full_matrices=False)
        ref = (m @ vt[0]).reshape(acts.shape[2:])
        sign = np.sign(np.sum(ref * cam.raw[n]))
        np.testing.assert_allclose(cam.raw[n], sign * ref, atol=1e-4, rtol=1e-4)
        # sign convention: positively correlated with the channel-mean activation
        mean = acts[n].mean(axis=0)
        assert np.sum((cam.raw[n] - cam.raw[n].mean()) * (mean - mean.mean())) >= 0


def test_scorecam_ranking_correlates_with_torchcam():
    torchcam = pytest.importorskip("torchcam.methods")
    stats = pytest.importorskip("scipy.stats")
    model, x, mask = _setup(2)
    x = x[:1]
    m = torch.from_numpy(mask.astype(np.float32))
    cam = cs.Scope(model).cam(x, layer="enc2", target=cs.targets.segmentation(cls=1, mask=mask, reduce="mean"),
                              method="scorecam", progress=False)
    with torchcam.ScoreCAM(model, "enc2", batch_size=16, input_shape=(1, 16, 16)) as extractor:
        out = model(torch.from_numpy(x))
        ref = extractor(targets=lambda sample: (sample[1] * m).sum() / m.sum(), scores=out, normalized=False)[0]
    ref = ref[0].detach().numpy()
    ours = np.maximum(cam.raw[0], 0)
    rho = stats.spearmanr(ours.ravel(), ref.ravel()).statistic
    assert rho >= 0.95, rho


def test_resize_linear_equals_torch_interpolate():
    rng = np.random.default_rng(0)
    for shape, size, mode in [((2, 5, 7), (16, 9), "bilinear"), ((1, 3, 4, 5), (8, 7, 10), "trilinear"),
                              ((2, 6), (13,), "linear")]:
        a = rng.standard_normal(shape).astype(np.float32)
        ref = torch.nn.functional.interpolate(torch.from_numpy(a)[:, None], size=size, mode=mode, align_corners=False)
        np.testing.assert_allclose(at.resize_linear(a, size), ref[:, 0].numpy(), atol=1e-6)
        # no overshoot: linear resampling stays within the input's range
        out = at.resize_linear(np.maximum(a, 0), size)
        assert out.min() >= 0 and out.max() <= np.maximum(a, 0).max() + 1e-6


def test_eigencam_many_channels_uses_the_truncated_solver_and_agrees_with_svd():
    rng = np.random.default_rng(0)
    low = rng.standard_normal((1, 300, 1)) * rng.standard_normal((1, 1, 144)) * 3
    acts = (low + 0.1 * rng.standard_normal((1, 300, 144))).reshape(1, 300, 12, 12).astype(np.float32)
    m = acts[0].reshape(300, -1).T.astype(np.float64)
    m -= m.mean(axis=0)
    ref = (m @ np.linalg.svd(m, full_matrices=False)[2][0]).reshape(12, 12)
    got = at.eigencam(acts)[0]
    np.testing.assert_allclose(got, np.sign(np.sum(got * ref)) * ref, atol=1e-4 * np.abs(ref).max())


def test_every_gradient_method_equals_its_formula_written_out_in_numpy():
    """Independent float64 formulas (pytorch-grad-cam/torchcam definitions); N-D, dead channels, zero gradients."""
    rng = np.random.default_rng(4)
    acts = np.maximum(rng.standard_normal((2, 5, 6, 7, 3)), 0).astype(np.float32)
    acts[0, 1] = 0.0  # a dead channel: sum(A) = 0
    grads = rng.standard_normal((2, 5, 6, 7, 3)).astype(np.float32)
    grads[1, 2] = 0.0  # no gradient in one channel
    a, g = acts.astype(np.float64), grads.astype(np.float64)
    sp = (2, 3, 4)
    a_sum = a.sum(axis=sp, keepdims=True)
    den = 2 * g**2 + a_sum * g**3
    alpha = np.where(den != 0, g**2 / np.where(den != 0, den, 1), 0)
    xw = np.where(a.sum(axis=sp) != 0, (g * a).sum(axis=sp) / np.where(a.sum(axis=sp) != 0, a.sum(axis=sp), 1), 0)
    expected = {
        "gradcam": (g.mean(axis=sp)[:, :, None, None, None] * a).sum(1),
        "gradcam++": ((alpha * np.maximum(g, 0)).sum(axis=sp)[:, :, None, None, None] * a).sum(1),
        "hirescam": (g * a).sum(1),
        "xgradcam": (xw[:, :, None, None, None] * a).sum(1),
        "layercam": (np.maximum(g, 0) * a).sum(1),
    }
    fused = at.gradient_cams(list(at.GRADIENT_METHODS), acts, grads)
    for method, ref in expected.items():
        np.testing.assert_allclose(fused[method], ref, rtol=1e-5, atol=1e-6, err_msg=method)
        np.testing.assert_array_equal(fused[method], at.gradient_cam(method, acts, grads))
