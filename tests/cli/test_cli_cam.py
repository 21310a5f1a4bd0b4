"""`convscope cam` and `convscope unet --cam` through the installed console script (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
ROOT = str(Path(__file__).resolve().parents[2])


def _console() -> list[str]:
    script = Path(sys.executable).with_name("convscope")
    return [str(script)] if script.exists() else [sys.executable, "-m", "convscope"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, ROOT]), KERAS_BACKEND="torch")
    return subprocess.run([*_console(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    import convscope as cs

    folder = tmp_path_factory.mktemp("cam")
    path = folder / "img.npy"
    np.save(path, cs.load("demo:unet").sample())
    return path


def test_cam_writes_pngs_arrays_and_manifest(image, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("cam", "demo:unet", str(image), "-o", str(out), "--layer", "dec1.conv2", "--layer", "enc2.conv2",
                   "-m", "gradcam", "-m", "layercam", "--region", "10,10,40,40", "--reduce", "mean", "--arrays",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    pngs = {e["file"] for e in manifest["files"] if e["file"].endswith(".png")}
    assert pngs == {"dec1.conv2.gradcam.png", "dec1.conv2.layercam.png", "enc2.conv2.gradcam.png", "enc2.conv2.layercam.png"}
    entry = next(e for e in manifest["files"] if e["file"] == "enc2.conv2.gradcam.png")
    assert entry["target"]["region"] == {"box_x0_y0_x1_y1": [10, 10, 40, 40]} and entry["target"]["reduce"] == "mean"
    assert entry["output_tensor"] == "output" and entry["post_processing"]["normalize"] == "max"
    assert manifest["passes"] == {"forward": 1, "backward": 1}
    arrays = np.load(out / "enc2.conv2.gradcam.npz")
    assert arrays["raw"].shape == (1, 32, 32) and arrays["cam"].shape == (1, 64, 64)
    assert arrays["raw"].dtype == np.float32 and arrays["cam"].dtype == np.float32


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--region", "1,2,3"], "--region must be X0,Y0,X1,Y1"),
        (["--pixel", "a,b"], "--pixel must be Y,X"),
        (["--region", "0,0,8,8", "--pixel", "1,1"], "only one of --mask, --region, --pixel, --predicted"),
        (["--class", "7"], "class 7 does not exist"),
        (["--mask", "nope.png"], "mask file 'nope.png' does not exist"),
        (["-m", "gradkam"], "unknown CAM method 'gradkam'"),
        (["--layer", "dec9"], "dec9"),
        (["--output", "aux"], "no output 'aux'"),
        (["--pixel", "500,500"], "outside the output"),
    ],
)
def test_bad_targets_are_one_line_exit_2(image, tmp_path, args, needle):
    proc = run_cli("cam", "demo:unet", str(image), "-o", str(tmp_path / "o"), *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("convscope: error:"), proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_unet_cam_adds_the_cam_row(image, tmp_path):
    out = tmp_path / "u"
    proc = run_cli("unet", "demo:unet", str(image), "-o", str(out), "--cam", "--class", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = {e["file"]: e for e in json.loads((out / "manifest.json").read_text())["files"]}
    assert {"flow.png", "cam.png", "cam-flow.png", "cam.json"} <= set(files)
    cam = json.loads((out / "cam.json").read_text())
    roles = [m["role"] for m in cam["maps"]]
    assert roles[0] == "encoder 0" and "bottleneck" in roles and roles[-1] == "decoder 0"
    assert cam["target"]["class"] == 0 and cam["passes"] == {"forward": 1, "backward": 1}


def test_unet_class_without_cam_is_one_line_exit_2(image, tmp_path):
    proc = run_cli("unet", "demo:unet", str(image), "-o", str(tmp_path / "u"), "--class", "0", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "convscope: error: --class chooses the class of the CAM row; add --cam (or use --target for the gradient share)"]
    assert not (tmp_path / "u").exists()
