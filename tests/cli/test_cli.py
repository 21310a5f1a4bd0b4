"""The CLI mirrors the API: same files, one-line errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.cli.main import main

FACTORY = "tests.cli.models:TinyNet"


def run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_layers_json_lists_layers_with_shapes(capsys, image_path):
    code, out, _ = run(["layers", FACTORY, str(image_path), "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    by_name = {layer["name"]: layer for layer in data["layers"]}
    assert by_name["conv1"]["out_shape"] == [4, 16, 16]
    assert by_name["conv1"]["kernel_size"] == [3, 3]


def test_layers_table(capsys):
    code, out, _ = run(["layers", FACTORY], capsys)
    assert code == 0 and "conv2" in out and "Conv2d" in out


def test_kwargs_reach_the_factory(capsys):
    code, out, _ = run(["layers", FACTORY, "--json", "--kwargs", '{"in_channels": 1, "width": 6}'], capsys)
    layers = {layer["name"]: layer for layer in json.loads(out)["layers"]}
    assert layers["conv1"]["in_channels"] == 1 and layers["conv1"]["out_channels"] == 6


def test_kernels_writes_png_per_layer_and_manifest(capsys, tmp_path):
    out_dir = tmp_path / "k"
    code, out, _ = run(["kernels", FACTORY, "-o", str(out_dir), "--arrays"], capsys)
    assert code == 0, out
    manifest = json.loads((out_dir / "manifest.json").read_text())
    files = {entry["file"] for entry in manifest["files"]}
    assert files == {"conv1.kernels.png", "conv2.kernels.png", "conv1.kernels.npz", "conv2.kernels.npz"}
    weights = np.load(out_dir / "conv1.kernels.npz", allow_pickle=False)["weights"]
    assert weights.shape == (4, 3, 3, 3)


def test_activations_with_layer_top_overlay_and_arrays(capsys, tmp_path, image_path):
    out_dir = tmp_path / "a"
    code, _, err = run(
        ["activations", FACTORY, str(image_path), "-o", str(out_dir), "--layer", "conv1", "--top", "2",
         "--overlay", "--arrays", "--order", "l2"],
        capsys,
    )
    assert code == 0, err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    entries = {entry["file"]: entry for entry in manifest["files"]}
    assert set(entries) == {"conv1.png", "conv1.overlay.png", "conv1.npz"}
    assert len(entries["conv1.png"]["channels"]) == 2
    # intended change (issues 9, 15): the file is the overlay's figure, the 16x16 overlay (input size)
    # plus its colour bar; the manifest gives the file's size
    overlay = entries["conv1.overlay.png"]
    assert overlay["cmap"] == "jet" and overlay["alpha"] == 0.5
    with Image.open(out_dir / "conv1.overlay.png") as img:
        assert img.size == (overlay["width"], overlay["height"])
        assert img.size[0] > 16 + 40  # room for the colour bar


def test_weights_file_is_loaded_into_factory_model(capsys, tmp_path):
    from tests.cli.models import TinyNet

    model = TinyNet()
    torch.nn.init.constant_(model.conv1.weight, 0.5)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out_dir = tmp_path / "k"
    code, _, err = run(["kernels", FACTORY, "--weights", str(tmp_path / "w.pt"), "-o", str(out_dir), "--arrays",
                        "--layer", "conv1"], capsys)
    assert code == 0, err
    assert np.all(np.load(out_dir / "conv1.kernels.npz")["weights"] == 0.5)


def test_unknown_layer_is_one_line_with_suggestions(capsys, tmp_path):
    code, _, err = run(["kernels", FACTORY, "--layer", "conv3", "-o", str(tmp_path / "x")], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "conv1" in err and "Traceback" not in err


def test_bad_kwargs_json_is_one_line(capsys):
    code, _, err = run(["layers", FACTORY, "--kwargs", "{in_channels: 1}"], capsys)
    assert code == 2 and "--kwargs must be a JSON object" in err


def test_missing_factory_module_is_one_line(capsys):
    code, _, err = run(["layers", "nosuchpkg.models:Net"], capsys)
    assert code == 2 and "cannot import 'nosuchpkg.models'" in err


def test_wrong_channel_image_is_one_line(capsys, tmp_path):
    np.save(tmp_path / "two.npy", np.zeros((2, 8, 8), dtype=np.float32))
    code, _, err = run(["activations", FACTORY, str(tmp_path / "two.npy"), "-o", str(tmp_path / "o")], capsys)
    assert code == 2 and "takes 3 channels but the image has 2" in err


def test_pickled_whole_model_needs_trust(capsys, tmp_path):
    from tests.cli.models import TinyNet

    torch.save(TinyNet(), tmp_path / "whole.pt")
    code, _, err = run(["layers", str(tmp_path / "whole.pt")], capsys)
    assert code == 2 and "--trust" in err
    code, out, err = run(["layers", str(tmp_path / "whole.pt"), "--trust"], capsys)
    assert code == 0 and "conv1" in out


def test_unet_command_writes_flow_levels_and_json(capsys, tmp_path):
    np.save(tmp_path / "img.npy", np.random.default_rng(0).random((64, 64)).astype(np.float32))
    out_dir = tmp_path / "u"
    code, out, err = run(["unet", "demo:unet", str(tmp_path / "img.npy"), "-o", str(out_dir)], capsys)
    assert code == 0, err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["flow.png", "level-0.png", "level-1.png", "level-2.png", "manifest.json", "unet.json"]
    data = json.loads((out_dir / "unet.json").read_text())
    assert [skip["merge"] for skip in data["skips"]] == ["concat"] * 3
    assert all(0.0 <= skip["energy_share"] <= 1.0 and 0.0 <= skip["gradient_share"] <= 1.0 for skip in data["skips"])


def test_unet_command_on_a_classifier_is_one_line(capsys, tmp_path):
    np.save(tmp_path / "img.npy", np.random.default_rng(0).random((3, 64, 64)).astype(np.float32))
    code, _, err = run(["unet", "demo:cnn", str(tmp_path / "img.npy"), "-o", str(tmp_path / "u")], capsys)
    assert code == 2 and "not a spatial map" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--scale", "weird"], "scale must be one of"),
        (["--order", "foo"], "order must be one of"),
        (["--top", "0"], "top must be a positive"),
        (["--volume", "cube"], "volume must be one of"),
        (["--cmap", "nocmap"], "nocmap"),
    ],
)
def test_bad_activation_options_fail_before_anything_is_written(capsys, tmp_path, image_path, flags, message):
    out_dir = tmp_path / "a"
    code, _, err = run(["activations", FACTORY, str(image_path), "-o", str(out_dir), *flags], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out_dir.exists() or not any(out_dir.iterdir())
