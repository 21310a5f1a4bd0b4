"""UNetFlow: the U figure, per-level panels, unet.json, saved files and the CLI logic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.errors import NotAUNet, UnsupportedModelError
from convscope.render.flow import SKIP_COLOR

torch = pytest.importorskip("torch")

from convscope.cli.cmd_unet import run_unet  # noqa: E402
from convscope.unet_flow import UNetBackend, UNetFlow, build_unet_flow, unet_backend_for  # noqa: E402

from . import unet_zoo as Z  # noqa: E402


@pytest.fixture(scope="module")
def flow5() -> UNetFlow:
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)
    display = np.repeat((x[0, 0] * 255).astype(np.uint8)[..., None], 3, axis=2)
    return build_unet_flow(unet_backend_for(Z.UNet(5)), x, display)


def _flow(model: torch.nn.Module, shape: tuple[int, ...]) -> UNetFlow:
    torch.manual_seed(0)
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    return build_unet_flow(unet_backend_for(model), x, None)


# -- structure and metrics ---------------------------------------------------------------------


def test_flow_exposes_structure_and_one_metric_per_skip(flow5: UNetFlow) -> None:
    assert flow5.structure.num_levels == 5
    assert [(m.level, m.source, m.merge) for m in flow5.metrics] == [
        (0, "down.0.5", "cat#3"),
        (1, "down.1.5", "cat#2"),
        (2, "down.2.5", "cat#1"),
        (3, "down.3.5", "cat"),
    ]
    assert "5 resolution levels, 4 skips" in repr(flow5)


def test_backend_implements_the_protocol() -> None:
    assert isinstance(unet_backend_for(Z.UNet(2)), UNetBackend)


def test_unknown_frameworks_are_refused_with_a_reason() -> None:
    with pytest.raises(UnsupportedModelError, match="not available"):
        unet_backend_for(object())


# -- the U figure ------------------------------------------------------------------------------


def test_figure_has_the_u_layout(flow5: UNetFlow) -> None:
    picture = flow5.figure()
    boxes = picture.meta["blocks"]
    assert set(boxes) == {"input", "output", "bottleneck", *(f"enc{i}" for i in range(4)), *(f"dec{i}" for i in range(4))}
    assert boxes["input"][0] < boxes["output"][0] and boxes["input"][1] == boxes["output"][1]  # top left / right
    for i in range(4):
        assert boxes[f"enc{i}"][2] < boxes[f"dec{i}"][0]  # encoder left, decoder right
        assert boxes[f"enc{i}"][1] == boxes[f"dec{i}"][1]  # same row
        assert boxes["input"][1] < boxes[f"enc{i}"][1] < boxes["bottleneck"][1]
    rows = [boxes[f"enc{i}"][1] for i in range(4)]
    assert rows == sorted(rows)  # going down level by level
    center = (boxes["bottleneck"][0] + boxes["bottleneck"][2]) / 2
    assert abs(center - picture.width / 2) <= 1


def test_figure_for_five_levels_fits_on_a_screen(flow5: UNetFlow) -> None:
    picture = flow5.figure()
    assert picture.width <= 1200 and picture.height <= 1400


def test_figure_draws_skip_arrows(flow5: UNetFlow) -> None:
    pixels = flow5.figure().pixels
    orange = np.all(pixels == np.array(SKIP_COLOR, dtype=np.uint8), axis=2)
    assert orange.sum() > 4 * 200  # four arrows across


def test_figure_thumbnails_show_the_activation(flow5: UNetFlow) -> None:
    picture = flow5.figure()
    x0, y0, x1, _ = picture.meta["blocks"]["enc0"]
    patch = picture.pixels[y0 + 10 : y0 + 100, x0 + 30 : x1 - 30]
    assert len(np.unique(patch.reshape(-1, 3), axis=0)) > 20  # a colour-mapped map, not an empty box


def test_figure_top_channel_thumbnails_differ_from_the_mean(flow5: UNetFlow) -> None:
    assert not np.array_equal(flow5.figure(thumbnail="top").pixels, flow5.figure().pixels)


def test_figure_rejects_an_unknown_thumbnail_mode(flow5: UNetFlow) -> None:
    with pytest.raises(ValueError, match="'mean'"):
        flow5.figure(thumbnail="median")


def test_output_block_shows_the_prediction_over_the_input(flow5: UNetFlow) -> None:
    overlay = flow5.prediction_image()
    assert overlay.shape == (64, 64, 3) and overlay.dtype == np.uint8
    plain = flow5.prediction_image(overlay=False)
    assert not np.array_equal(overlay, plain)


@pytest.mark.parametrize(
    ("model", "shape"),
    [(lambda: Z.UNet(3, dims=3), (1, 1, 8, 8, 8)), (lambda: Z.UNet(3, dims=1), (1, 1, 32)), (Z.UNetPlusPlus, (1, 1, 16, 16))],
    ids=["3d", "1d", "unet++"],
)
def test_figure_and_panels_render_for_other_shapes(model, shape: tuple[int, ...]) -> None:
    flow = _flow(model(), shape)
    assert flow.figure().height > 300
    assert flow.level(0).panels(top=4).width > 600


# -- per-level panels --------------------------------------------------------------------------


def test_level_panels_show_four_tensors(flow5: UNetFlow) -> None:
    view = flow5.level(1)
    tensors = view.tensors()
    assert list(tensors) == ["encoder", "skip", "decoder", "merged"]
    assert tensors["encoder"].shape == (8, 32, 32) and tensors["merged"].shape == (16, 32, 32)
    picture = view.panels(top=8)
    assert picture.meta["level"] == 1 and picture.meta["layer"] == "cat#2"
    assert picture.width > 4 * 240


def test_level_panels_without_grids_are_smaller(flow5: UNetFlow) -> None:
    assert flow5.level(0).panels(top=0).height < flow5.level(0).panels(top=8).height


def test_unknown_level_says_which_exist(flow5: UNetFlow) -> None:
    with pytest.raises(ValueError, match=r"levels 0\.\.3"):
        flow5.level(4)


def test_unetplusplus_level_can_show_each_skip() -> None:
    view = _flow(Z.UNetPlusPlus(), (1, 1, 16, 16)).level(0)
    assert len(view.skips) == 6 and view.skip.merge == "cat#5"
    assert view.panels(top=2, skip=0).meta["layer"] == "cat"
    with pytest.raises(ValueError, match="skip=0..5"):
        view.panels(skip=6)


# -- unet.json and files -----------------------------------------------------------------------


def test_json_follows_the_schema(flow5: UNetFlow) -> None:
    data = json.loads(json.dumps(flow5.to_json(), allow_nan=False))
    assert [lvl["level"] for lvl in data["levels"]] == [0, 1, 2, 3]
    assert data["levels"][0]["shape"] == [4, 64, 64]
    assert data["levels"][0]["encoder"][-1] == "down.0.5" and data["levels"][0]["decoder"][-1] == "head"
    assert data["bottleneck"][-1] == "down.4.5"
    skip = data["skips"][0]
    assert {k: skip[k] for k in ("level", "from", "to", "merge")} == {"level": 0, "from": "down.0.5", "to": "cat#3", "merge": "concat"}
    assert 0 < skip["energy_share"] < 1 and 0 < skip["gradient_share"] < 1
    assert data["output"] == "head" and data["spatial_dims"] == 2


def test_undefined_shares_are_null_in_json() -> None:
    model = Z.TwoBranch()
    flow = build_unet_flow(unet_backend_for(model), Z.block_constant_input().numpy(), None, mask=np.zeros((8, 8)))
    assert flow.to_json()["skips"][0]["gradient_share"] is None


def test_save_writes_flow_levels_json_and_manifest(flow5: UNetFlow, tmp_path: Path) -> None:
    paths = flow5.save(tmp_path / "out")
    names = [p.name for p in paths]
    assert names == ["flow.png", "level-0.png", "level-1.png", "level-2.png", "level-3.png", "unet.json", "manifest.json"]
    for path in paths:
        assert path.is_file()
    with Image.open(paths[0]) as img:
        assert img.size == flow5.figure().size
    assert json.loads((tmp_path / "out" / "unet.json").read_text()) == json.loads(json.dumps(flow5.to_json()))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entries = {e["file"]: e for e in manifest["files"]}
    assert set(entries) == set(names) - {"manifest.json"}
    assert entries["flow.png"]["kind"] == "unet_flow"
    assert entries["level-2.png"]["kind"] == "unet_level" and entries["level-2.png"]["layer"] == "cat#1"
    assert entries["level-2.png"]["shape"] == [12, 16, 16]
    assert entries["unet.json"]["kind"] == "unet_json"


def test_run_unet_writes_the_files_for_a_bare_model(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((1, 1, 16, 16), dtype=np.float32)
    paths = run_unet(Z.UNet(3), x, None, tmp_path)
    assert [p.name for p in paths] == ["flow.png", "level-0.png", "level-1.png", "unet.json", "manifest.json"]


def test_run_unet_on_a_plain_cnn_raises_not_a_unet(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((1, 1, 16, 16), dtype=np.float32)
    with pytest.raises(NotAUNet, match="no downsampling"):
        run_unet(Z.PlainCNN(), x, None, tmp_path)
    assert not (tmp_path / "flow.png").exists()


def test_bad_display_image_is_rejected() -> None:
    x = np.zeros((1, 1, 16, 16), np.float32)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        build_unet_flow(unet_backend_for(Z.UNet(2)), x, np.zeros((16, 16), np.float32))


def test_a_level_without_skip_still_renders() -> None:
    flow = _flow(Z.StemUNet(), (1, 3, 32, 32))
    assert flow.level(0).skip is None
    assert flow.level(0).panels(top=2).meta["layer"] is None
    assert "enc0" not in flow.figure().meta["blocks"]


def test_torch_backend_is_reachable_from_unet_flow() -> None:
    import convscope.unet_flow as uf
    from convscope.adapters.torch.unet import TorchUNetBackend

    assert uf.TorchUNetBackend is TorchUNetBackend
    assert isinstance(TorchUNetBackend(Z.UNet(2)), UNetBackend)
