"""The 2D "middle view" of a 3D model's input (core/view.py MiddleView): a volume's axial plane through
the middle of the fed region in radiological view, everywhere a 3D array becomes one picture (the U-Net
flow's input/level/output blocks, level panels, the input display, CAM and activation overlays); a
plain 3D array keeps the middle slice along its first axis.

The scans are stored PSR (not RAS), 14x10x7 voxels (padded to 16x12x8 by a 3-level U-Net), with a
bright block in the patient's left-anterior-superior corner: radiological axial view puts it on the
image's right half and top half.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("nibabel")
pytest.importorskip("torch")

import torch  # noqa: E402

import convscope as cs  # noqa: E402
from convscope.adapters.torch_state import model_fingerprint  # noqa: E402
from convscope.core.view import FIRST_AXIS, MiddleView, plane_slice  # noqa: E402
from convscope.io.volume_prep import VolumeOptions  # noqa: E402
from convscope.render.colormap import apply_colormap  # noqa: E402
from convscope.render.flow import blend, colorize_map, fit_into, label_image  # noqa: E402
from tests.conftest import assert_same_fingerprint  # noqa: E402
from tests.unet.unet_zoo import UNet  # noqa: E402

from . import files as F  # noqa: E402

SHAPE = (14, 10, 7)  # not a multiple of 4: the batch is zero-padded to 16x12x8
Z_MID = SHAPE[2] // 2  # the middle of the fed region (no ROI: the whole volume)
ISO = (1.0, 1.0, 1.0)

NETS = {
    "transpose-concat-3": lambda: UNet(levels=3, dims=3),
    "upsample-add-3": lambda: UNet(levels=3, dims=3, up="upsample", merge="add"),
    "interpolate-concat-2": lambda: UNet(levels=2, dims=3, up="interpolate", out_ch=3),
}


def _windowed(truth: np.ndarray, z: int) -> np.ndarray:
    """Independent display of the default window (percentile 0.5-99.5 of the whole volume) on axial z."""
    lo, hi = np.percentile(truth, (0.5, 99.5))
    plane = truth[:, :, z].T[::-1, ::-1]  # rows: y high (anterior) first; cols: x high (patient right) first
    unit = np.clip((plane - np.float32(lo)) / np.float32(hi - lo), 0, 1).astype(np.float32)
    return np.repeat((unit[..., None] * 255.0 + 0.5).astype(np.uint8), 3, axis=-1)


def _marker_quadrant(picture: np.ndarray) -> tuple[float, float]:
    """(row, col) of the bright pixels' centroid as fractions of the picture's height and width."""
    bright = picture[..., 0] > 128 if picture.ndim == 3 else picture > 0.5
    rows, cols = np.nonzero(bright)
    assert rows.size, "no marker in the picture"
    return (rows.mean() + 0.5) / picture.shape[0], (cols.mean() + 0.5) / picture.shape[1]


def _level_slice(amap: np.ndarray, padded: tuple[int, ...]) -> np.ndarray:
    """Expected view of a ``(a, b, c)`` map at any resolution over the padded box: the fed region's
    extent (ceil of its share), the slice holding input z = Z_MID, radiological axial."""
    a, b, c = amap.shape
    ex, ey = -(-SHAPE[0] * a // padded[0]), -(-SHAPE[1] * b // padded[1])
    k = int((Z_MID + 0.5) * c / padded[2])
    return plane_slice(amap[:ex, :ey], "axial", k)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("middleview")
    truth = F.marked_volume(SHAPE)
    iso = F.write_nifti(folder / "iso.nii.gz", truth, "PSR", spacing=ISO)
    aniso = F.write_nifti(folder / "aniso.nii.gz", truth, "LPS")  # F.SPACING: 0.8 x 1.0 x 2.5 mm
    return truth, iso, aniso


@pytest.fixture(scope="module", params=sorted(NETS))
def net(request):
    torch.manual_seed(0)
    return request.param, NETS[request.param]().eval()


@pytest.fixture(scope="module")
def flow_run(scans, net):
    truth, iso, _ = scans
    name, model = net
    before = model_fingerprint(model)
    scope = cs.Scope(model)
    scope.volume_options = VolumeOptions(intensity="zscore-nonzero")
    prepared = scope.prepare(str(iso))
    flow = scope.unet(str(iso))
    return truth, model, before, scope, prepared, flow


def test_display_of_a_3d_volume_is_the_windowed_original_axial_slice(flow_run):
    truth, model, before, _scope, prepared, _flow = flow_run
    padded = tuple(prepared.batch.shape[2:])
    assert padded != SHAPE and all(p >= n for p, n in zip(padded, SHAPE))  # zero-padded to the downsampling
    view = prepared.view
    assert isinstance(view, MiddleView) and view.plane == "axial" and view.region == SHAPE
    expected = _windowed(truth, Z_MID)
    assert prepared.display is not None and prepared.display.shape == (1, SHAPE[1], SHAPE[0], 3)  # padding cropped
    np.testing.assert_array_equal(prepared.display[0], expected)
    # not the model's (z-scored) values: their min-max picture differs
    zs = plane_slice(prepared.batch[0, 0, : SHAPE[0], : SHAPE[1]], "axial", Z_MID)
    zs_unit = (zs - zs.min()) / (zs.max() - zs.min())
    assert not np.array_equal((zs_unit * 255 + 0.5).astype(np.uint8), expected[..., 0])
    row, col = _marker_quadrant(prepared.display[0])
    assert row < 0.5 and col > 0.5  # anterior at the top, the patient's left on the image's right
    assert view.label() == f"axial slice z={Z_MID} of the input"
    assert_same_fingerprint(before, model_fingerprint(model))


def test_flow_blocks_follow_the_axial_view(flow_run):
    _truth, model, before, _scope, prepared, flow = flow_run
    padded = tuple(prepared.batch.shape[2:])
    assert flow.view == prepared.view
    # input block: the display (windowed original intensities)
    np.testing.assert_array_equal(flow._input_image(0), prepared.display[0])
    # a deeper level's thumbnail: the channel mean's axial slice at that level's resolution
    s = flow.structure
    deep = s.bottleneck_output
    maps = flow.sample_maps(deep, 0)
    assert maps.shape[1:] != padded
    expected = colorize_map(_level_slice(maps.mean(axis=0), padded), "viridis")
    np.testing.assert_array_equal(flow._thumb(deep, "mean", "viridis", 0), expected)
    # the prediction block: the arg-max class map's axial slice (blended over the display)
    out = flow.sample_maps(s.output, 0)
    classes = label_image(_level_slice(np.argmax(out, axis=0), padded)).astype(np.uint8)
    np.testing.assert_array_equal(flow.prediction_image(0, overlay=False), classes)
    np.testing.assert_array_equal(flow.prediction_image(0), blend(prepared.display[0], classes, 0.5))
    # the drawn figure: the input block's raster is the display fitted into the thumbnail box
    picture = flow.figure()
    from convscope.render.scene import Raster

    rasters = [it for it in picture.scene.items if isinstance(it, Raster) and it.title == "input"]
    assert len(rasters) == 1
    np.testing.assert_array_equal(rasters[0].pixels, fit_into(prepared.display[0], 112, 112))
    assert picture.meta["view"]["plane"] == "axial" and picture.meta["view"]["z"] == Z_MID
    legend = " ".join(it.text for it in picture.scene.items if getattr(it, "role", "") == "legend")
    assert "axial slice z=3 of the input" in legend
    # level panels: the mean map of each panel is the same view
    panels = flow.level(0).panels(top=0)
    assert panels.meta["view"]["plane"] == "axial"
    assert_same_fingerprint(before, model_fingerprint(model))


def test_cam_overlays_follow_the_axial_view(flow_run):
    _truth, model, before, _scope, prepared, flow = flow_run
    padded = tuple(prepared.batch.shape[2:])
    ucam = flow.cam(progress=False)
    assert ucam.cams.view == flow.view
    for role, result in ucam.maps.items():
        assert result.view == flow.view, role
        amap, what = result.slice2d(0)
        np.testing.assert_array_equal(amap, _level_slice(result.data[0], padded))
        assert what == f"axial slice z={Z_MID} of the input"
        pic = result.overlay(colorbar=False)
        expected = blend(prepared.display[0], apply_colormap(np.clip(amap, 0, 1), "jet"), 0.5)
        np.testing.assert_array_equal(pic.pixels, expected)
        assert pic.meta["view"]["plane"] == "axial"
    row = ucam.figure()
    assert row.pixels.shape[0] > 0
    assert_same_fingerprint(before, model_fingerprint(model))


def test_scope_cam_on_a_volume_uses_the_view_and_writes_it(tmp_path, scans):
    truth, iso, _ = scans
    torch.manual_seed(0)
    model = UNet(levels=3, dims=3).eval()
    before = model_fingerprint(model)
    scope = cs.Scope(model)
    result = scope.cam(str(iso), layer="down.1.0", progress=False)
    prepared = scope.prepare(str(iso))
    assert result.view == prepared.view and result.view.plane == "axial"
    amap, what = result.slice2d(0)
    np.testing.assert_array_equal(amap, _level_slice(result.data[0], tuple(prepared.batch.shape[2:])))
    assert "axial slice z=3" in result.overlay().meta["title"]
    cams = scope.cam(str(iso), layer="down.1.0", progress=False, as_set=True)
    manifest = json.loads(cams.save(tmp_path / "cam").read_text())
    assert manifest["view"]["plane"] == "axial" and manifest["view"]["z"] == Z_MID
    assert_same_fingerprint(before, model_fingerprint(model))


def test_anisotropic_voxels_keep_their_aspect(scans):
    truth, _iso, aniso = scans
    torch.manual_seed(0)
    model = UNet(levels=3, dims=3).eval()
    scope = cs.Scope(model)
    prepared = scope.prepare(str(aniso))  # stored LPS, spacing 0.8 (x) x 1.0 (y) x 2.5 (z) mm
    view = prepared.view
    np.testing.assert_array_equal(prepared.display[0], _windowed(truth, Z_MID))
    assert np.allclose(view.pixel_mm(prepared.batch.shape[2:]), (1.0, 0.8))  # (row = y, column = x) in mm
    stretched = view.stretch(prepared.display[0])
    height_mm, width_mm = SHAPE[1] * 1.0, SHAPE[0] * 0.8
    assert stretched.shape[1] == SHAPE[0]
    assert abs(stretched.shape[0] / stretched.shape[1] - height_mm / width_mm) < 0.5 / SHAPE[0] + 1e-6
    assert "physical aspect" in view.describe()["aspect"]
    flow = scope.unet(str(aniso))
    from convscope.render.scene import Raster

    raster = next(it for it in flow.figure().scene.items if isinstance(it, Raster) and it.title == "input")
    assert abs(raster.pixels.shape[0] / raster.pixels.shape[1] - height_mm / width_mm) < 0.05
    row, col = _marker_quadrant(stretched)
    assert row < 0.5 and col > 0.5


def test_activation_overlay_of_a_volume_uses_the_view(scans):
    _truth, iso, _ = scans
    torch.manual_seed(0)
    model = UNet(levels=3, dims=3).eval()
    scope = cs.Scope(model)
    acts = scope.activations(str(iso), ["down.0.0"])
    act = acts["down.0.0"]
    assert act.view is not None and act.view.plane == "axial"
    pic = act.overlay(channel="mean")
    assert pic.meta["view"]["plane"] == "axial" and pic.meta["view"]["z"] == Z_MID
    # the map's slice is the axial view (drawn over the display of the same shape)
    np.testing.assert_array_equal(act.view.take(act.channel_map("mean", 0)),
                                  _level_slice(act.channel_map("mean", 0), tuple(act.data.shape[2:])))
    assert act.input_display.shape[:2] == act.view.take(act.channel_map("mean", 0)).shape


def test_a_plain_3d_array_keeps_the_first_axis_middle_slice(tmp_path):
    torch.manual_seed(0)
    model = UNet(levels=3, dims=3).eval()
    before = model_fingerprint(model)
    rng = np.random.default_rng(0)
    arr = rng.random((16, 12, 8), dtype=np.float32)
    path = tmp_path / "cube.npy"
    np.save(path, arr)
    scope = cs.Scope(model)
    prepared = scope.prepare(str(path))
    assert prepared.view == FIRST_AXIS and prepared.volume is None
    unit = arr[8]  # values in [0, 1]: shown as they are
    expected = np.repeat(((unit * 255.0 + 0.5).astype(np.uint8))[..., None], 3, axis=-1)
    np.testing.assert_array_equal(prepared.display[0], expected)
    flow = scope.unet(str(path))
    assert flow.view == FIRST_AXIS
    deep = flow.structure.bottleneck_output
    maps = flow.sample_maps(deep, 0)
    expected_thumb = colorize_map(maps.mean(axis=0)[maps.shape[1] // 2], "viridis")
    np.testing.assert_array_equal(flow._thumb(deep, "mean", "viridis", 0), expected_thumb)
    picture = flow.figure()
    assert picture.meta["view"]["plane"] is None
    legend = " ".join(it.text for it in picture.scene.items if getattr(it, "role", "") == "legend")
    assert "middle slice along the first spatial axis" in legend
    cam = scope.cam(str(path), layer="down.1.0", progress=False)
    amap, what = cam.slice2d(0)
    np.testing.assert_array_equal(amap, cam.data[0][8])
    assert what == "middle slice 8 of 16 along the first spatial axis"
    assert_same_fingerprint(before, model_fingerprint(model))


def test_size_resize_shows_the_whole_resized_batch(scans):
    _truth, iso, _ = scans
    torch.manual_seed(0)
    scope = cs.Scope(UNet(levels=3, dims=3).eval())
    prepared = scope.prepare(str(iso), size="8x8x8")
    assert prepared.batch.shape[2:] == (8, 8, 8)
    view = prepared.view
    assert view.plane == "axial" and view.region is None
    assert prepared.display.shape == (1, 8, 8, 3)
    row, col = _marker_quadrant(prepared.display[0])
    assert row < 0.5 and col > 0.5


def test_roi_view_names_the_volume_slice_and_crops_the_box(scans):
    truth, iso, _ = scans
    torch.manual_seed(0)
    scope = cs.Scope(UNet(levels=3, dims=3).eval())
    scope.volume_options = VolumeOptions(roi="center", roi_size="6,6,3")
    prepared = scope.prepare(str(iso))
    record, view = prepared.volume, prepared.view
    (x0, y0, z0), (sx, sy, sz) = record.roi_start, record.roi_shape
    assert (sx, sy, sz) == (6, 6, 3) and prepared.batch.shape[2:] == (8, 8, 4)  # padded to 4
    z = z0 + sz // 2
    assert view.label() == f"axial slice z={z} of the input" and view.describe()["z"] == z
    full = _windowed(truth, z)  # window over the whole scan; then the box, in radiological order
    rows = slice(truth.shape[1] - (y0 + sy), truth.shape[1] - y0)
    cols = slice(truth.shape[0] - (x0 + sx), truth.shape[0] - x0)
    np.testing.assert_array_equal(prepared.display[0], full[rows, cols])


def test_cli_unet_and_cam_manifests_name_the_view(tmp_path, scans):
    from .test_cli_volumes import KW, UNET, convscope

    _truth, iso, _ = scans
    out = tmp_path / "unet"
    r = convscope("unet", UNET, str(iso), "--kwargs", KW, "--cam", "-o", str(out))
    assert r.returncode == 0, r.stderr
    files = json.loads((out / "manifest.json").read_text())["files"]
    for kind in ("unet_flow", "unet_level", "unet_cam"):
        entry = next(e for e in files if e.get("kind") == kind)
        assert entry["view"]["plane"] == "axial" and entry["view"]["z"] == Z_MID, kind
    out = tmp_path / "cam"
    r = convscope("cam", UNET, str(iso), "--kwargs", KW, "--layer", "down.1.0", "-o", str(out))
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["view"]["label"] == f"axial slice z={Z_MID} of the input"
    entry = next(e for e in manifest["files"] if e.get("kind") == "cam")
    assert entry["view"]["plane"] == "axial" and f"axial slice z={Z_MID}" in entry["title"]


def test_3d_grids_of_a_scan_show_sagittal_coronal_axial_planes_radiologically(scans):
    """A scan's 3D activation grid: the three views per channel are plane_slice's sagittal, coronal
    and axial planes (the same pixels as a grid of those planes); a plain array keeps array axes."""
    from convscope.render.grid import _volume_views

    _truth, iso, _ = scans
    torch.manual_seed(0)
    scope = cs.Scope(UNet(levels=3, dims=3).eval())
    act = scope.activations(str(iso), ["down.0.0"])["down.0.0"]
    maps = act.sample(0)
    pic = act.grid(channels=[0, 1])
    assert pic.meta["orientation"] == "radiological" and pic.meta["views"] == ["sagittal", "coronal", "axial"]
    views, _ = _volume_views(maps, "slices", [0, 1], "radiological")
    x, y, z = maps.shape[1:]
    for view, plane, index in zip(views, ("sagittal", "coronal", "axial"), (x // 2, y // 2, z // 2)):
        np.testing.assert_array_equal(view, plane_slice(maps[[0, 1]], plane, index))
    plain = cs.Scope(UNet(levels=3, dims=3).eval()).activations(
        np.asarray(maps[None, :1]), ["down.0.0"])["down.0.0"].grid(channels=[0])
    assert plain.meta["orientation"] == "array" and plain.meta["views"][0] == "axis 0"
