"""The installed console script on NIfTI files and DICOM folders: figures in the anatomy, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")
pytest.importorskip("pydicom")
pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from . import files as F  # noqa: E402
from .test_planes import check_letters, check_marker  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
UNET = "tests.unet.unet_zoo:UNet"
KW = '{"dims": 3, "levels": 3}'


def convscope(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("convscope")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "convscope.cli.main"]
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", KERAS_BACKEND="torch")
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convscope: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scan")
    return F.write_nifti(folder / "scan.nii.gz", F.marked_volume((13, 11, 9)), "PSR")


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_activations_on_nifti_draws_every_map_in_the_anatomy(tmp_path, scan):
    out = tmp_path / "acts"
    r = convscope("activations", UNET, str(scan), "-o", str(out), "--kwargs", KW, "--layer", "down.*.0",
                  "--window", "500,1000", "--intensity", "zscore-nonzero")
    assert r.returncode == 0, r.stderr
    manifest = _manifest(out)
    vol = manifest["volume"]
    assert vol["intensity"] == "zscore-nonzero" and vol["window_applied"] == "W 1000 L 500"
    assert vol["volume"]["stored_orientation"] == "PSR" and vol["volume"]["spacing_mm"] == pytest.approx(list(F.SPACING))
    assert vol["model_input_shape"] == [16, 12, 12]  # padded to the 4x downsampling
    planes = [e for e in manifest["files"] if e["file"].endswith(".planes.png")]
    assert {e["file"] for e in planes} == {"input.planes.png", "down.0.0.planes.png", "down.1.0.planes.png", "down.2.0.planes.png"}
    boxes = None
    for entry in planes:
        pixels = np.asarray(Image.open(out / entry["file"]).convert("RGB"))
        check_letters(pixels, entry)  # right letters on every plane of every figure
        these = {p: e["box"] for p, e in entry["planes"].items()}
        boxes = boxes or these
        assert these == boxes  # the maps are drawn in the same planes as the input
        if entry["file"] == "input.planes.png":
            check_marker(pixels, entry)
            assert "model intensity zscore-nonzero" in json.dumps(entry) or entry["volume"]["intensity"] == "zscore-nonzero"


def test_unet_on_dicom_series_writes_planes(tmp_path):
    folder = F.write_dicom_series(tmp_path / "ct", (2 * F.marked_volume((12, 10, 8)) - 1024).astype(np.float32))
    out = tmp_path / "u"
    r = convscope("unet", UNET, str(folder), "-o", str(out), "--kwargs", KW, "--window", "0,1000")
    assert r.returncode == 0, r.stderr
    manifest = _manifest(out)
    assert manifest["volume"]["volume"]["units"] == "HU"
    names = {e["file"] for e in manifest["files"]}
    assert {"input.planes.png", "output.planes.png", "level-0.encoder.planes.png", "flow.png"} <= names
    for entry in manifest["files"]:
        if entry["file"].endswith(".planes.png"):
            pixels = np.asarray(Image.open(out / entry["file"]).convert("RGB"))
            check_letters(pixels, entry)
            if entry["file"] == "input.planes.png":
                check_marker(pixels, entry)


def test_error_several_series(tmp_path):
    hu = (2 * F.marked_volume() - 1024).astype(np.float32)
    F.write_dicom_series(tmp_path / "study" / "a", hu, series_uid="1.2.3.4.100")
    F.write_dicom_series(tmp_path / "study" / "b", hu, series_uid="1.2.3.4.101")
    r = convscope("activations", UNET, str(tmp_path / "study"), "-o", str(tmp_path / "o"), "--kwargs", KW)
    one_line_error(r, "2 DICOM series", "1.2.3.4.100", "1.2.3.4.101", "--series")
    assert not (tmp_path / "o").exists()
    ok = convscope("activations", UNET, str(tmp_path / "study"), "--series", "1.2.3.4.101", "-o", str(tmp_path / "o"),
                   "--kwargs", KW, "--layer", "head")
    assert ok.returncode == 0, ok.stderr


def test_error_duplicate_positions(tmp_path):
    truth = F.marked_volume()
    x, y, z = truth.shape
    positions = [[-(x - 1) * 0.8, -(y - 1) * 1.0, 2.5 * k] for k in range(z)]
    positions[5] = list(positions[4])
    folder = F.write_dicom_series(tmp_path / "dup", truth, positions_override=positions)
    one_line_error(convscope("unet", UNET, str(folder), "-o", str(tmp_path / "o"), "--kwargs", KW), "duplicate positions")


def test_error_compressed_without_decoder(tmp_path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLosslessSV1

    if get_decoder(JPEGLosslessSV1).is_available:
        pytest.skip("a JPEG Lossless decoder is installed here")
    folder = F.write_dicom_series(tmp_path / "j", F.marked_volume(), transfer_syntax=JPEGLosslessSV1)
    one_line_error(convscope("activations", UNET, str(folder), "-o", str(tmp_path / "o"), "--kwargs", KW),
                   "no decoder", "pip install pylibjpeg pylibjpeg-libjpeg")


def test_error_bad_options_before_reading(tmp_path, scan):
    one_line_error(convscope("activations", UNET, str(scan), "--window", "wide", "--kwargs", KW, "-o", str(tmp_path / "o")),
                   "--window must be")
    one_line_error(convscope("activations", UNET, str(scan), "--roi", "center", "--kwargs", KW, "-o", str(tmp_path / "o")),
                   "--roi needs --roi-size")
    one_line_error(convscope("activations", "tests.cli.models:TinyNet", str(scan), "-o", str(tmp_path / "o")),
                   "choose --slice axial:N")


def test_2d_model_on_one_slice(tmp_path, scan):
    out = tmp_path / "s"
    r = convscope("activations", "tests.cli.models:TinyNet", str(scan), "--slice", "axial:4", "-o", str(out), "--overlay")
    assert r.returncode == 0, r.stderr
    assert _manifest(out)["volume"]["plane"] == "axial" and _manifest(out)["volume"]["slices"] == [4]


def test_import_does_not_load_volume_libraries():
    code = "import sys, convscope, convscope.io.images; print([m for m in ('nibabel', 'pydicom', 'SimpleITK', 'scipy') if m in sys.modules])"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert out == "[]"


def test_unet_labels_outlines_dice_and_volume_mask(tmp_path, scan):
    import nibabel as nib

    truth = F.marked_volume((13, 11, 9))
    img = nib.load(str(scan))
    labels = (np.asarray(img.dataobj) >= F.MARK).astype(np.int16)  # stored like the scan (PSR)
    nib.save(nib.Nifti1Image(labels, img.affine), str(tmp_path / "seg.nii.gz"))
    out = tmp_path / "u"
    r = convscope("unet", UNET, str(scan), "-o", str(out), "--kwargs", KW, "--label-map", str(tmp_path / "seg.nii.gz"),
                  "--mask", str(tmp_path / "seg.nii.gz"), "--window", "500,1000")
    assert r.returncode == 0, r.stderr
    manifest = _manifest(out)
    entry = next(e for e in manifest["files"] if e["file"] == "output.planes.png")
    assert set(entry["dice"]) <= {"1"} and all(v is None or 0 <= v <= 1 for v in entry["dice"].values())
    inp = next(e for e in manifest["files"] if e["file"] == "input.planes.png")
    pixels = np.asarray(Image.open(out / "input.planes.png").convert("RGB"))
    box = inp["planes"]["axial"]["box"]
    region = pixels[box[1]:box[1] + box[3], box[0]:box[0] + box[2]]
    assert (np.all(region == (255, 64, 64), axis=-1)).sum() > 10  # the label outline is drawn
    assert truth.sum() > 0
    bad = F.write_nifti(tmp_path / "small.nii.gz", F.marked_volume((6, 6, 6)))
    one_line_error(convscope("unet", UNET, str(scan), "-o", str(tmp_path / "o"), "--kwargs", KW, "--label-map", str(bad)),
                   "not on the grid")


def test_report_on_a_scan_shows_planes(tmp_path, scan):
    out = tmp_path / "rep"
    r = convscope("report", UNET, str(scan), "-o", str(out), "--kwargs", KW, "--layer", "down.*.0", "--no-progress",
                  "--no-unet", "--window", "500,1000")
    assert r.returncode == 0, r.stderr
    files = {e["file"]: e for e in _manifest(out)["files"]}
    entry = files["inputs/image-0.png"]
    assert set(entry["planes"]) == {"axial", "coronal", "sagittal"}
    pixels = np.asarray(Image.open(out / "inputs/image-0.png").convert("RGB"))
    check_letters(pixels, entry)
    check_marker(pixels, entry)
    overlays = [e for name, e in files.items() if name.startswith("overlays/")]
    assert overlays and all(set(e["planes"]) == {"axial", "coronal", "sagittal"} for e in overlays)
    assert "inputs/image-0.png" in (out / "index.html").read_text()


def test_channels_from_several_files(tmp_path):
    truth = F.marked_volume((12, 10, 8))
    a = F.write_nifti(tmp_path / "t1.nii.gz", truth, "LAS")
    b = F.write_nifti(tmp_path / "t2.nii.gz", truth * 0.5, "PSR")
    out = tmp_path / "u"
    r = convscope("unet", UNET, "--channels", f"{a},{b}", "-o", str(out), "--kwargs", '{"dims": 3, "levels": 3, "in_ch": 2}',
                  "--intensity", "zscore-nonzero;percentile:1,99")
    assert r.returncode == 0, r.stderr
    manifest = _manifest(out)
    assert manifest["volume"]["volume"]["channels"] == ["t1.nii.gz", "t2.nii.gz"]
    assert manifest["volume"]["intensity"] == "zscore-nonzero;percentile:1,99"
    assert "input_channel_shares" in manifest
    one_line_error(convscope("unet", UNET, "--channels", f"{a},{b}", "-o", str(tmp_path / "x"), "--kwargs", KW),
                   "takes 1 channels but", "has 2")


def test_each_channel_has_its_own_window(tmp_path):
    truth = F.marked_volume((12, 10, 8))
    a = F.write_nifti(tmp_path / "ct.nii.gz", truth)
    b = F.write_nifti(tmp_path / "pet.nii.gz", truth * 0.01)
    out = tmp_path / "a"
    r = convscope("activations", UNET, "--channels", f"{a},{b}", "-o", str(out), "--layer", "head",
                  "--kwargs", '{"dims": 3, "levels": 3, "in_ch": 2}', "--window", "500,1000;percentile:1,99")
    assert r.returncode == 0, r.stderr
    files = {e["file"]: e for e in _manifest(out)["files"]}
    assert files["input.planes.png"]["window"] == "W 1000 L 500"
    assert files["input.c1.planes.png"]["window"].startswith("p1-p99")
    assert _manifest(out)["volume"]["window_applied"] == ["W 1000 L 500", "percentile 1-99"]
    for name in ("input.planes.png", "input.c1.planes.png"):
        pixels = np.asarray(Image.open(out / name).convert("RGB"))
        check_marker(pixels, files[name])


def test_keras_3d_model_on_a_scan(tmp_path, scan):
    keras = pytest.importorskip("keras")
    import convscope as cs

    inp = keras.Input((None, None, None, 1))
    x = keras.layers.Conv3D(4, 3, padding="same", name="c1")(inp)
    x = keras.layers.MaxPooling3D(2, name="p1")(x)
    x = keras.layers.Conv3D(4, 3, padding="same", name="c2")(x)
    model = keras.Model(inp, keras.layers.UpSampling3D(2, name="up")(x))
    scope = cs.Scope(model)
    assert scope.prepare(str(scan)).batch.shape == (1, 1, 14, 12, 10)  # padded to the measured factor 2
    manifest = json.loads(scope.save_activations(str(scan), tmp_path / "k", ["c1", "c2"]).read_text())
    entries = {e["file"]: e for e in manifest["files"]}
    assert {"input.planes.png", "c1.planes.png", "c2.planes.png"} <= set(entries)
    pixels = np.asarray(Image.open(tmp_path / "k" / "c2.planes.png").convert("RGB"))
    check_letters(pixels, entries["c2.planes.png"])
