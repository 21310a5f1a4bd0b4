"""`convscope layers|kernels|activations` on .onnx and .pt2 files, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convscope.cli.main import main

from .files import write_valid


def run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {suffix: write_valid(folder, suffix) for suffix in (".onnx", ".pt2")}


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(path)
    return path


CONVS = {".onnx": ["/conv1/Conv", "/conv2/Conv"], ".pt2": ["conv1", "conv2"]}
TRUST = {".onnx": [], ".pt2": ["--trust"]}


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_cli_layers_json_of_model_file(files, capsys, suffix):
    code, out, err = run(["layers", str(files[suffix]), "--json", *TRUST[suffix]], capsys)
    assert code == 0, err
    data = json.loads(out)
    shapes = {layer["name"]: layer["out_shape"] for layer in data["layers"]}
    assert [shapes[name] for name in CONVS[suffix]] == [[4, 16, 16], [4, 16, 16]]


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_cli_kernels_of_model_file(files, capsys, tmp_path, suffix):
    out_dir = tmp_path / "k"
    code, _, err = run(["kernels", str(files[suffix]), "-o", str(out_dir), "--arrays", *TRUST[suffix]], capsys)
    assert code == 0, err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    layers = {entry.get("layer") for entry in manifest["files"]}
    assert layers == set(CONVS[suffix])
    arrays = [entry["file"] for entry in manifest["files"] if entry["file"].endswith(".npz")]
    assert len(arrays) == 2 and np.load(out_dir / arrays[0])["weights"].shape[1:] in {(3, 3, 3), (4, 3, 3)}


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_cli_activations_of_model_file(files, capsys, tmp_path, image_path, suffix):
    out_dir = tmp_path / "a"
    code, _, err = run(["activations", str(files[suffix]), str(image_path), "-o", str(out_dir), "--arrays",
                        *TRUST[suffix]], capsys)
    assert code == 0, err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert {entry.get("layer") for entry in manifest["files"]} >= set(CONVS[suffix])
    assert all((out_dir / entry["file"]).exists() for entry in manifest["files"])


def test_cli_train_mode_on_onnx_is_one_line(files, capsys, tmp_path, image_path):
    code, _, err = run(["activations", str(files[".onnx"]), str(image_path), "-o", str(tmp_path / "a"),
                        "--train-mode"], capsys)
    assert code == 2 and "inference-only" in err and len(err.strip().splitlines()) == 1
