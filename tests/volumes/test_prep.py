"""Model input vs display: intensity transforms, windows, ROI, padding, 2D slices, channels."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")
torch = pytest.importorskip("torch")

from convscope import Scope  # noqa: E402
from convscope.core.volume import Volume  # noqa: E402
from convscope.errors import ImageInputError  # noqa: E402
from convscope.io.images import prepare_input  # noqa: E402
from convscope.io.volume_prep import (  # noqa: E402
    WINDOW_PRESETS,
    VolumeOptions,
    apply_intensity,
    plane_slice,
    window_unit,
)
from convscope.io.volumes import read_nifti  # noqa: E402

from . import files as F  # noqa: E402


def _vol(data: np.ndarray) -> Volume:
    return Volume.from_array(data.astype(np.float32), np.diag([*F.SPACING, 1.0]), source="t")


def test_intensity_transforms_numbers():
    rng = np.random.default_rng(0)
    x = rng.normal(40, 300, size=(2, 6, 5, 4)).astype(np.float32)
    x[1, :2] = 0
    clip = apply_intensity(x, "clip:-175,250")
    np.testing.assert_allclose(clip, (np.clip(x, -175, 250) + 175) / 425, rtol=1e-6)
    z = apply_intensity(x, "zscore-nonzero")
    nz = x[1] != 0
    assert np.all(z[1][~nz] == 0)
    assert z[1][nz].mean() == pytest.approx(0, abs=1e-5) and z[1][nz].std() == pytest.approx(1, abs=1e-4)
    assert z[0].mean() == pytest.approx(0, abs=1e-5)  # per channel
    p = apply_intensity(x, "percentile:0.5,99.5")
    lo, hi = np.percentile(x[0], (0.5, 99.5))
    np.testing.assert_allclose(p[0], np.clip((x[0] - lo) / (hi - lo), 0, 1), rtol=1e-5, atol=1e-6)
    mixed = apply_intensity(x, "none;clip:0,1")
    np.testing.assert_array_equal(mixed[0], x[0])
    with pytest.raises(ImageInputError, match="3 ';'-separated specs but the input has 2"):
        apply_intensity(x, "none;none;none")
    with pytest.raises(ImageInputError, match="--intensity must be"):
        apply_intensity(x, "gauss")


def test_window_is_dicom_linear_like_pydicom():
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    hu = np.linspace(-1200, 1500, 541).astype(np.float64)
    for name, (level, width) in WINDOW_PRESETS.items():
        ds = Dataset()
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsStored = 16
        ds.PixelRepresentation = 1
        ds.WindowCenter = level
        ds.WindowWidth = width
        ds.VOILUTFunction = "LINEAR"
        ref = apply_windowing(hu.copy(), ds)  # scaled to the signed 16-bit output range
        lo, hi = -(2.0**15), 2.0**15 - 1  # pydicom's output range for signed 16 bits
        ours, label = window_unit(hu.astype(np.float32), name, "HU")
        np.testing.assert_allclose(ours, (ref - lo) / (hi - lo), atol=1e-5, err_msg=name)
        assert label == f"W {width:g} L {level:g}"


def test_window_never_reaches_the_model(tmp_path):
    vol = _vol(np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4) * 10 - 500)
    a = prepare_input(vol, channels=1, spatial_dims=3, volume_options=VolumeOptions(window="lung"))
    b = prepare_input(vol, channels=1, spatial_dims=3, volume_options=VolumeOptions(window="bone"))
    np.testing.assert_array_equal(a.batch, b.batch)
    np.testing.assert_array_equal(a.batch[0], vol.data)  # intensity none: values as read
    assert a.volume.describe()["window_applied"] == "W 1500 L -600"


def test_padding_to_model_downsampling_and_crop_back():
    vol = _vol(np.random.default_rng(1).normal(size=(13, 11, 9)))
    p = prepare_input(vol, channels=1, spatial_dims=3, downsampling=4)
    assert p.batch.shape == (1, 1, 16, 12, 12)
    np.testing.assert_array_equal(p.batch[0, 0, :13, :11, :9], vol.data[0])
    assert np.all(p.batch[0, 0, 13:] == 0)
    assert "multiple of 4" in p.volume.notes[0]
    half = np.arange(8 * 6 * 6, dtype=np.float32).reshape(8, 6, 6)  # a map at half resolution
    back = p.volume.to_volume(half)
    assert back.shape == (13, 11, 9)
    assert back[0, 0, 0] == half[0, 0, 0] and back[12, 10, 8] == half[6, 5, 4]


def test_roi_box_and_nan_outside():
    vol = _vol(np.random.default_rng(2).normal(size=(20, 18, 16)))
    opts = VolumeOptions(roi="center", roi_size="8,8,8")
    p = prepare_input(vol, channels=1, spatial_dims=3, volume_options=opts, downsampling=4)
    assert p.batch.shape == (1, 1, 8, 8, 8)
    np.testing.assert_array_equal(p.batch[0, 0], vol.data[0, 6:14, 5:13, 4:12])
    back = p.volume.to_volume(np.ones((8, 8, 8), np.float32))
    assert np.isnan(back[0, 0, 0]) and back[10, 9, 8] == 1
    p2 = prepare_input(vol, channels=1, spatial_dims=3, volume_options=VolumeOptions(roi="2,2,2", roi_size="8,8,8"))
    assert p2.volume.roi_start == (0, 0, 0)  # clamped into the volume
    with pytest.raises(ImageInputError, match="--roi needs --roi-size"):
        VolumeOptions(roi="center")


def test_2d_model_slice_in_radiological_view(tmp_path):
    truth = F.marked_volume()
    vol = read_nifti(F.write_nifti(tmp_path / "v.nii.gz", truth, "PSR"))
    p = prepare_input(vol, channels=1, spatial_dims=2, volume_options=VolumeOptions(slice="axial:5"))
    assert p.batch.shape == (1, 1, truth.shape[1], truth.shape[0])
    np.testing.assert_array_equal(p.batch[0, 0], plane_slice(truth, "axial", 5))
    # top-right of the radiological axial view is the patient's left-anterior: the marker
    assert p.batch[0, 0, 0, -1] == F.MARK and p.batch[0, 0, -1, 0] != F.MARK
    assert p.display.shape == (1, truth.shape[1], truth.shape[0], 3)
    every = prepare_input(vol, channels=1, spatial_dims=2, volume_options=VolumeOptions(slices="coronal"))
    assert every.batch.shape == (truth.shape[1], 1, truth.shape[2], truth.shape[0])
    with pytest.raises(ImageInputError, match="choose --slice axial:N"):
        prepare_input(vol, channels=1, spatial_dims=2)
    with pytest.raises(ImageInputError, match="has 8 axial slices"):
        prepare_input(vol, channels=1, spatial_dims=2, volume_options=VolumeOptions(slice="axial:8"))


def test_channel_count_checked_against_the_model(tmp_path):
    truth = F.marked_volume()
    a = F.write_nifti(tmp_path / "t1.nii.gz", truth)
    b = F.write_nifti(tmp_path / "t2.nii.gz", truth * 3, "LAS")
    opts = VolumeOptions(channels=(str(a), str(b)))
    p = prepare_input(None, channels=2, spatial_dims=3, volume_options=opts, downsampling=2)
    assert p.batch.shape[:2] == (1, 2)
    np.testing.assert_array_equal(p.batch[0, 1, :12, :10, :8], truth * 3)
    assert p.volume.volume.channel_names == ("t1.nii.gz", "t2.nii.gz")
    with pytest.raises(ImageInputError, match="takes 3 channels but .* has 2"):
        prepare_input(None, channels=3, spatial_dims=3, volume_options=opts)


class _Tiny3D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = torch.nn.MaxPool3d(2)
        self.a = torch.nn.Conv3d(1, 2, 3, padding=1)
        self.b = torch.nn.Conv3d(2, 2, 3, padding=1)
        self.up = torch.nn.Upsample(scale_factor=4)

    def forward(self, x):
        y = self.pool(self.a(x))
        y = self.pool(self.b(y))  # one pooling module called twice: total downsampling 4
        return self.up(y)


def test_scope_measures_downsampling_and_model_unchanged(tmp_path):
    from tests.conftest import assert_same_fingerprint
    from tests.volumes.test_planes import fingerprint

    model = _Tiny3D().eval()
    before = fingerprint(model)
    scope = Scope(model)
    path = F.write_nifti(tmp_path / "v.nii.gz", F.marked_volume((13, 11, 9)), "LAS")
    acts = scope.activations(str(path), ["a", "b"])
    assert acts["a"].data.shape[2:] == (16, 12, 12)
    assert_same_fingerprint(before, fingerprint(model))


def test_dice_scores():
    from convscope.io.volume_prep import dice_scores

    pred = np.array([0, 1, 1, 2, 2, 2])
    lab = np.array([0, 1, 0, 2, 2, 1])
    assert dice_scores(pred, lab, [1, 2, 3]) == {"1": pytest.approx(0.5), "2": pytest.approx(0.8), "3": None}


class _GradAdapter:
    """A test-only SupportsGradients: torch.autograd.grad of sum(W * output) w.r.t. the input."""

    def __init__(self, model) -> None:
        self.model = model

    def gradients(self, batch, layers, objective, *, with_input=False):
        from convscope.adapters.base import LayerGradients

        x = torch.from_numpy(batch).requires_grad_(True)
        out = self.model(x)
        w = objective.cotangent(out.detach().numpy())
        score = (out * torch.from_numpy(w)).flatten(1).sum(1)
        (grad,) = torch.autograd.grad(score.sum(), x)
        return LayerGradients({}, {}, out.detach().numpy(), "output", score.detach().numpy(), w, grad.numpy())


def test_input_channel_shares_match_captum_input_x_gradient():
    from convscope.volume_views import channel_shares, input_channel_shares

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1)).eval()
    with torch.no_grad():
        model[0].weight[:, 2] *= 5.0  # the third modality matters most
    batch = np.random.default_rng(0).normal(size=(1, 3, 6, 5, 4)).astype(np.float32)
    out = input_channel_shares(_GradAdapter(model), batch, target=1, names=["t1", "t2", "flair"])
    shares = out["shares"]
    assert sum(shares.values()) == pytest.approx(1.0) and max(shares, key=shares.get) == "flair"
    captum = pytest.importorskip("captum.attr")
    ixg = captum.InputXGradient(lambda x: model(x)[:, 1].flatten(1).sum(1))
    attr = ixg.attribute(torch.from_numpy(batch)).detach().numpy()
    ref = np.abs(attr).sum(axis=(0, 2, 3, 4))
    np.testing.assert_allclose([shares[k] for k in ("t1", "t2", "flair")], ref / ref.sum(), rtol=1e-5)
    assert channel_shares(batch, np.zeros_like(batch)) == {"0": 0.0, "1": 0.0, "2": 0.0}
    assert input_channel_shares(object(), batch) is None


def test_2d_slices_padded_to_the_model_downsampling(tmp_path):
    truth = F.marked_volume((13, 11, 9))
    vol = read_nifti(F.write_nifti(tmp_path / "v.nii.gz", truth, "LAS"))
    p = prepare_input(vol, channels=1, spatial_dims=2, volume_options=VolumeOptions(slice="coronal:5"), downsampling=8)
    assert p.batch.shape == (1, 1, 16, 16) and p.display.shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(p.batch[0, 0, :9, :13], plane_slice(truth, "coronal", 5))
    assert "zero-padded 9x13 to 16x16" in p.volume.notes[1]
    mask = p.volume.fit_region(truth >= F.MARK)
    assert mask.shape == (1, 16, 16) and mask[0, :9, :13].sum() == (plane_slice(truth, "coronal", 5) >= F.MARK).sum()


def test_too_large_model_input_refused_before_building(monkeypatch):
    import convscope.io.volume_prep as vp

    vol = _vol(np.zeros((20, 18, 16)))
    monkeypatch.setattr(vp, "MAX_BATCH_BYTES", 20 * 18 * 16 * 4 - 1)
    with pytest.raises(ImageInputError, match="--roi center --roi-size"):
        prepare_input(vol, channels=1, spatial_dims=3)
    p = prepare_input(vol, channels=1, spatial_dims=3, volume_options=VolumeOptions(roi="center", roi_size="8,8,8"))
    assert p.batch.shape == (1, 1, 8, 8, 8)
