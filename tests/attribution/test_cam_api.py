"""scope.cam / flow.cam / targets: known answers, honest post-processing, one pass, model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import convscope as cs
from convscope.adapters.torch_state import model_fingerprint
from convscope.core import attribution as at
from convscope.errors import ConvscopeError, UnsupportedModelError
from tests.conftest import assert_same_fingerprint


class QuadrantNet(nn.Module):
    """Output = a 1x1 head on conv features, multiplied by a fixed top-left-quadrant mask: the output
    depends only on the top-left quadrant of the layer (and, through 3x3 convs, a 2-pixel margin of the input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)
        q = torch.zeros(1, 1, 16, 16)
        q[..., :8, :8] = 1
        self.register_buffer("quadrant", q)

    def forward(self, x):
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x))))) * self.quadrant


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)
        self.soft = nn.Softmax(dim=1)

    def forward(self, x):
        return self.soft(self.fc(self.pool(self.relu(self.conv(x))).flatten(1)))


@pytest.fixture(scope="module")
def x16():
    return np.random.default_rng(5).random((1, 1, 16, 16)).astype(np.float32)


def test_map_is_zero_outside_the_quadrant_the_output_depends_on(x16):
    torch.manual_seed(0)
    scope = cs.Scope(QuadrantNet().eval())
    cams = scope.cam(x16, layer="conv2", target=cs.targets.segmentation(cls=1),
                     method=["hirescam", "layercam", "inputxgrad", "saliency"], relu=False, cam_normalize="none")
    for method in ("hirescam", "layercam"):
        raw = cams[("conv2", method)].raw[0]
        assert np.abs(raw[:8, :8]).max() > 0
        assert not np.any(raw[8:, :]) and not np.any(raw[:, 8:]), method
    for method in ("inputxgrad", "saliency"):  # two 3x3 convs: the dependence reaches 2 pixels further
        raw = cams[("input", method)].raw[0]
        assert np.abs(raw[:10, :10]).max() > 0
        assert not np.any(raw[10:, :]) and not np.any(raw[:, 10:]), method


def test_one_forward_one_backward_for_many_layers_and_methods_and_model_untouched(x16):
    model = QuadrantNet()
    model.train()
    model.conv1.weight.grad = torch.ones_like(model.conv1.weight)
    before = model_fingerprint(model)
    scope = cs.Scope(model)
    cams = scope.cam(x16, layer=["conv*"], target=cs.targets.segmentation(cls=0, region=(0, 0, 6, 6)),
                     method=list(at.GRADIENT_METHODS) + ["eigencam", "saliency"])
    assert cams.passes == {"forward": 1, "backward": 1}
    assert set(cams.layers) == {"conv1", "conv2", "input"}
    assert len(cams) == 2 * 6 + 1
    assert_same_fingerprint(before, model_fingerprint(model))
    pic = cams.figure()
    assert pic.meta["kind"] == "cam_set" and pic.height > 6 * 16
    for cam in cams.values():
        assert cam.data.shape == (1, 16, 16) and cam.data.dtype == np.float32
        assert cam.data.min() >= 0 and cam.data.max() <= 1 + 1e-6


def test_raw_is_signed_data_is_relu_resampled_and_normalised_as_stated():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(3, 2, 3, padding=1)).eval()
    x = np.random.default_rng(0).standard_normal((2, 1, 12, 12)).astype(np.float32)
    scope = cs.Scope(model)
    cam = scope.cam(x, layer="0", target=cs.targets.segmentation(cls=0), method="gradcam", relu=True, cam_normalize="max")
    lg = scope.adapter.gradients(x, ["0"], cs.targets.segmentation(cls=0))
    np.testing.assert_allclose(cam.raw, at.gradcam(lg.activations["0"], lg.gradients["0"]), atol=1e-6)
    expected = np.maximum(cam.raw, 0)
    expected = expected / expected.reshape(2, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(cam.data, expected, atol=1e-6)
    assert cam.raw.min() < 0  # the signed map is kept
    assert cam.describe()["post_processing"] == {
        "relu": True, "resample": "linear (linear/bilinear/trilinear), align_corners=False",
        "normalize": "max", "normalize_scope": "per image"}
    # a layer at half resolution is resampled linearly; shared scale across layers
    both = scope.cam(x, layer=["0", "2"], target=cs.targets.segmentation(cls=0), shared=True)
    peak = max(both[(k, "gradcam")].data.max() for k in ("0", "2"))
    assert both[("2", "gradcam")].raw.shape == (2, 6, 6) and both[("2", "gradcam")].data.shape == (2, 12, 12)
    assert abs(peak - 1.0) < 1e-6 and min(both[(k, "gradcam")].data.max() for k in ("0", "2")) < 1.0


def test_all_negative_and_zero_gradient_maps_are_reported_not_stretched():
    raw = -np.ones((1, 4, 4), dtype=np.float32)
    notes = at.map_notes(raw)
    assert "every value is <= 0" in notes[0]
    data, scales = at.postprocess([raw], (8, 8), at.PostProcess())
    assert not np.any(data[0])  # zeros stay zeros
    zero = at.map_notes(np.zeros((1, 2, 2)), grads=np.zeros((1, 3, 2, 2)))
    assert zero == ["sample 0: gradient is zero at this layer: the target does not depend on it"]


def test_classifier_default_target_is_top1_and_final_softmax_is_skipped():
    torch.manual_seed(2)
    model = Classifier().eval()
    x = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    cam = cs.Scope(model).cam(x, layer="conv")
    assert cam.output_name == "output (input of the final Softmax)"
    assert cam.target["kind"] == "classification" and cam.target["class"] == "top-1"
    with torch.no_grad():
        top = model(torch.from_numpy(x)).argmax(1).numpy()
    explicit = [cs.Scope(model).cam(x[i : i + 1], layer="conv", target=cs.targets.classification(int(top[i]))) for i in range(2)]
    for i in range(2):
        np.testing.assert_allclose(cam.raw[i], explicit[i].raw[0], atol=1e-6)


def test_per_sample_targets_and_length_mismatch():
    torch.manual_seed(2)
    model = Classifier().eval()
    x = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    scope = cs.Scope(model)
    both = scope.cam(x, layer="conv", target=[cs.targets.classification(1), cs.targets.classification(3)])
    one = scope.cam(x[1:], layer="conv", target=cs.targets.classification(3))
    np.testing.assert_allclose(both.raw[1], one.raw[0], atol=1e-6)
    with pytest.raises(ConvscopeError, match="3 targets were given for a batch of 2"):
        scope.cam(x, layer="conv", target=[cs.targets.classification(1)] * 3)


def test_segmentation_targets_regions(tmp_path):
    out = np.zeros((1, 2, 6, 6), dtype=np.float32)
    out[0, 1, 1:3, 1:3] = 5.0  # class 1 predicted in a 2x2 blob
    out[0, 1, 5, 5] = 5.0  # and one isolated pixel
    box = cs.targets.segmentation(1, region=(1, 0, 3, 2)).cotangent(out)
    assert box[0, 1].sum() == 4 and box[0, 1, 0:2, 1:3].all() and not box[0, 0].any()
    px = cs.targets.segmentation(1, pixel=(4, 2)).cotangent(out)
    assert px[0, 1, 4, 2] == 1 and px.sum() == 1
    pred = cs.targets.segmentation(1, predicted=True).cotangent(out)
    assert pred[0, 1].sum() == 5
    largest = cs.targets.segmentation(1, component="largest").cotangent(out)
    assert largest[0, 1].sum() == 4 and largest[0, 1, 5, 5] == 0
    mean = cs.targets.segmentation(1, component="largest", reduce="mean").cotangent(out)
    np.testing.assert_allclose(mean[0, 1].sum(), 1.0)
    from PIL import Image

    path = tmp_path / "m.png"
    m = np.zeros((12, 12), dtype=np.uint8)
    m[:6, :6] = 255
    Image.fromarray(m).save(path)
    masked = cs.targets.segmentation(1, mask=str(path)).cotangent(out)  # nearest-resized 12x12 -> 6x6
    assert masked[0, 1, :3, :3].all() and masked[0, 1].sum() == 9
    np.save(tmp_path / "m.npy", m[::2, ::2] > 0)
    np.testing.assert_array_equal(cs.targets.segmentation(1, mask=str(tmp_path / "m.npy")).cotangent(out), masked)
    (tmp_path / "m.nii.gz").write_bytes(b"")
    with pytest.raises(ConvscopeError, match="cannot read m.nii.gz as NIfTI"):  # NIfTI masks: tests/volumes/test_cam_volumes.py
        cs.targets.segmentation(1, mask=str(tmp_path / "m.nii.gz"))
    with pytest.raises(ConvscopeError, match="at most one of"):
        cs.targets.segmentation(1, pixel=(0, 0), region=(0, 0, 1, 1))
    with pytest.raises(ConvscopeError, match="does not exist"):
        cs.targets.segmentation(4).cotangent(out)
    with pytest.raises(ConvscopeError, match="outside the output"):
        cs.targets.segmentation(1, pixel=(9, 0)).cotangent(out)
    with pytest.raises(ConvscopeError, match="predicted nowhere"):
        cs.targets.segmentation(0, predicted=True).cotangent(out - 10 * (np.arange(2) == 0)[None, :, None, None])


def test_3d_and_1d_maps():
    torch.manual_seed(0)
    net3 = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.MaxPool3d(2), nn.Conv3d(2, 2, 3, padding=1)).eval()
    x3 = np.random.default_rng(0).random((1, 1, 8, 8, 8)).astype(np.float32)
    cams = cs.Scope(net3).cam(x3, layer=["2"], target=cs.targets.segmentation(cls=1), method=["gradcam++", "xgradcam"])
    for cam in cams.values():
        assert cam.raw.shape == (1, 4, 4, 4) and cam.data.shape == (1, 8, 8, 8) and cam.data.min() >= 0
    pic = next(iter(cams.values())).overlay()
    assert pic.meta["kind"] == "cam" and pic.width == 8
    net1 = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.Conv1d(2, 2, 3, padding=1)).eval()
    x1 = np.random.default_rng(0).random((1, 1, 20)).astype(np.float32)
    cam1 = cs.Scope(net1).cam(x1, layer="0", target=cs.targets.segmentation(cls=0), method="layercam")
    assert cam1.raw.shape == (1, 20)


def test_overlay_has_a_colour_scale_and_keeps_the_cam_scale(x16):
    torch.manual_seed(0)
    cam = cs.Scope(QuadrantNet().eval()).cam(x16, layer="conv2", target=cs.targets.segmentation(cls=1))
    pic = cam.overlay()
    assert pic.width == 16 and pic.height > 16  # the colour bar below
    assert pic.meta["value_range"] == [float(cam.scale[0, 0]), float(cam.scale[0, 1])]
    bare = cam.overlay(colorbar=False, alpha=1.0)
    assert bare.height == 16
    # alpha=1: the pixels are exactly the colormap of data
    from convscope.render.colormap import apply_colormap

    np.testing.assert_array_equal(bare.pixels, apply_colormap(cam.data[0], "jet"))


def test_unknown_method_and_layer_errors(x16):
    scope = cs.Scope(QuadrantNet().eval())
    with pytest.raises(ConvscopeError, match="unknown CAM method 'gradkam'.*gradcam"):
        scope.cam(x16, layer="conv2", method="gradkam")
    with pytest.raises(ConvscopeError, match="conv2"):
        scope.cam(x16, layer="conv3")


def test_module_called_twice_is_addressed_per_call_and_noted():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.head = nn.Conv2d(2, 1, 1)

        def forward(self, x):
            return self.head(self.conv(torch.relu(self.conv(x))))

    torch.manual_seed(0)
    x = np.random.default_rng(0).random((1, 2, 8, 8)).astype(np.float32)
    scope = cs.Scope(Twice().eval())
    first = scope.cam(x, layer="conv", target=cs.targets.segmentation(cls=0), cam_normalize="none")
    second = scope.cam(x, layer="conv#1", target=cs.targets.segmentation(cls=0), cam_normalize="none")
    assert first.layer == "conv" and second.layer == "conv#1"
    assert any("called 2 times" in n for n in first.notes)
    assert not np.allclose(first.raw, second.raw)


def test_flow_cam_every_level_and_both_skip_branches_on_one_scale():
    from tests.attribution.test_reference import UNet

    torch.manual_seed(3)
    model = UNet(2).eval()
    before = model_fingerprint(model)
    x = np.random.default_rng(0).random((1, 1, 16, 16)).astype(np.float32)
    flow = cs.Scope(model).unet(x)
    result = flow.cam(target=cs.targets.segmentation(cls=1, region=(0, 0, 8, 8)))
    roles = list(result.maps) + list(result.missing)
    assert "encoder 0" in roles and "bottleneck" in roles and "decoder 0" in roles
    assert "skip 0: skip branch" in roles and "skip 0: decoder branch" in roles
    assert result.cams.passes == {"forward": 1, "backward": 1}
    scales = {tuple(cam.scale[0]) for cam in result.maps.values()}
    assert len(scales) == 1  # one shared scale
    assert max(cam.data.max() for cam in result.maps.values()) == pytest.approx(1.0)
    pic = result.figure()
    assert pic.meta["kind"] == "unet_cam" and pic.width > 16 * len(result.maps)
    assert result.to_json()["maps"][0]["post_processing"]["normalize_scope"].startswith("per image, shared")
    plain = flow.level(0).panels(top=0)
    with_cam = flow.level(0).panels(top=0, cam=result)
    assert with_cam.width > plain.width  # the CAM column
    assert result.level_column(0).grid_caption == "encoder | skip branch | decoder branch | decoder"
    assert flow.figure(cam=result).meta["thumbnail"] == "cam"
    assert_same_fingerprint(before, model_fingerprint(model))


def test_onnx_forward_only_methods_work_and_gradient_methods_say_why(tmp_path):
    pytest.importorskip("onnxruntime")
    from tests.adapters.onnx.nets import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)).eval()
    path = export_onnx(model, tmp_path / "m.onnx", (1, 1, 12, 12))
    x = np.random.default_rng(0).random((1, 1, 12, 12)).astype(np.float32)
    onnx_scope = cs.load(str(path))
    layer = [n for n in onnx_scope.select(None)][0]
    cams = onnx_scope.cam(x, layer=layer, target=cs.targets.segmentation(cls=1), method=["eigencam", "scorecam"],
                          progress=False)
    ref = cs.Scope(model).cam(x, layer="0", target=cs.targets.segmentation(cls=1), method=["eigencam", "scorecam"],
                              progress=False)
    for method in ("eigencam", "scorecam"):
        np.testing.assert_allclose(cams[(layer, method)].raw, ref[("0", method)].raw, atol=1e-4, rtol=1e-3)
    with pytest.raises(UnsupportedModelError, match=r"gradcam \(gradients\) is not available for ONNX models: ONNX has no autograd: use eigencam or scorecam"):
        onnx_scope.cam(x, layer=layer, method="gradcam")


def test_scorecam_prints_its_pass_count_up_front_and_batches(x16, capsys):
    torch.manual_seed(0)
    scope = cs.Scope(QuadrantNet().eval())
    cams = scope.cam(x16, layer=["conv1", "conv2"], target=cs.targets.segmentation(cls=1, reduce="mean"),
                     method=["gradcam", "scorecam"], progress=False)
    err = capsys.readouterr().err
    assert "Score-CAM: 8 masked inputs in at least 2 forward pass(es)" in err
    # 1 forward + 1 backward for gradcam, 1 clean forward, 1 batched pass per layer
    assert cams.passes == {"forward": 4, "backward": 1, "scorecam_batch": 4}
    one_by_one = scope.cam(x16, layer="conv2", target=cs.targets.segmentation(cls=1, reduce="mean"), method="scorecam",
                           progress=False, scorecam_budget_mb=1e-9)
    np.testing.assert_allclose(one_by_one.raw, cams[("conv2", "scorecam")].raw, atol=1e-6)
