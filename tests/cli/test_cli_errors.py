"""Every CLI error is ONE line and exit status 2, through the installed console script (issue 9).

The console script is the one installed next to the running interpreter; ``PYTHONPATH`` makes it
run this checkout's source.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convscope
from convscope._version import __version__

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "convscope"
if not SCRIPT.exists():  # pragma: no cover - a venv without the entry point
    SCRIPT = Path(shutil.which("convscope") or "convscope")
FACTORY = "tests.cli.models:TinyNet"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(convscope.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("KERAS_BACKEND", "torch")
    return env


def cli(*args: str, cwd: Path | None = None, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env={**_env(), **env}, cwd=cwd or ROOT,
                          timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("convscope: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_console_script_is_installed():
    assert SCRIPT.exists(), SCRIPT


def test_version_prints_the_package_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"convscope {__version__}", result
    assert result.stderr == ""


USAGE_ERRORS = {
    "unknown command": (["foo"], "No such command 'foo'"),
    "misspelled option": (["layers", "demo:cnn", "--contianers"], "No such option: --contianers"),
    "unknown global option": (["--verbose", "layers", "demo:cnn"], "No such option: --verbose"),
    "missing argument": (["layers"], "Missing argument 'MODEL'"),
    "missing image": (["activations", "demo:cnn"], "give an input IMAGE"),
    "non-integer --top": (["activations", "demo:cnn", "x.png", "--top", "abc"], "'--top'"),
    "non-integer --port": (["serve", "demo:cnn", "--port", "http"], "'--port'"),
    "non-integer --sample": (["activations", "demo:cnn", "x.png", "--sample", "first"], "'--sample'"),
    "option without its value": (["kernels", "demo:cnn", "-o"], "'-o' requires an argument"),
    "flag given a value": (["kernels", "demo:cnn", "--labels=yes"], "--labels"),
    "extra argument": (["layers", "demo:cnn", "a.png", "b.png"], "unexpected extra argument"),
    "unquoted --kwargs JSON": (["layers", FACTORY, "--kwargs", "{in_channels:", "1}"], "--kwargs must be a JSON object"),
    "--kwargs not an object": (["layers", FACTORY, "--kwargs", "[1, 2]"], "--kwargs must be a JSON object"),
    "bad --max-memory": (["activations", "demo:cnn", "x.png", "--max-memory", "lots"], "--max-memory must look like"),
}


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_errors_are_one_line_and_exit_2(case):
    argv, needle = USAGE_ERRORS[case]
    assert_one_line_error(cli(*argv), needle)


def test_usage_error_names_the_help_of_the_command():
    result = cli("kernels", "demo:cnn", "--sacle", "minmax")
    assert_one_line_error(result, "(see 'convscope kernels --help')")


def test_no_arguments_prints_help_not_a_traceback():
    result = cli()
    assert result.returncode == 0 and "Traceback" not in result.stderr + result.stdout
    assert "activations" in result.stdout and "--version" in result.stdout


# -- errors from the user's code and environment --------------------------------------------------


def test_factory_that_raises_is_one_line_naming_its_error():
    result = cli("layers", "tests.cli.models:Raising")
    assert_one_line_error(result, "tests.cli.models:Raising() raised RuntimeError: the checkpoint server is down",
                          "--traceback")


def test_traceback_flag_shows_the_factory_traceback():
    result = cli("layers", "tests.cli.models:Raising", "--traceback")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "the checkpoint server is down" in result.stderr
    assert 'raise RuntimeError("the checkpoint server is down")' in result.stderr  # the user's line


def test_factory_returning_a_non_model_is_one_line():
    assert_one_line_error(cli("layers", "tests.cli.models:NotAModel"), "returned a builtins.dict, not a model")


def test_kwargs_the_framework_rejects_are_one_line():
    result = cli("layers", FACTORY, "--kwargs", '{"width": -4}')
    assert_one_line_error(result, "TinyNet(**{\"width\": -4}) raised", "Check --kwargs")


def test_kwargs_with_a_demo_model_is_an_error():
    assert_one_line_error(cli("layers", "demo:cnn", "--kwargs", '{"in_channels": 1}'),
                          "--kwargs applies to package.module:Factory models")


@pytest.mark.parametrize("command, options, needle", [
    ("activations", ["--slices", "axial"], "--slices applies to NIfTI/DICOM volumes, but in.png is a 2D image"),
    ("unet", ["--window", "lung", "--roi", "center"], "--window, --roi apply to NIfTI/DICOM volumes"),
    ("cam", ["--slice", "axial:3"], "--slice applies to NIfTI/DICOM volumes"),
    ("layers", ["--series", "1.2.3"], "--series applies to NIfTI/DICOM volumes"),
])
def test_volume_options_with_a_2d_image_are_refused_not_ignored(tmp_path, png, command, options, needle):
    out = tmp_path / "out"
    args = [command, "demo:unet", str(png), *options] + (["-o", str(out)] if command != "layers" else [])
    assert_one_line_error(cli(*args), needle, "leave")
    assert not out.exists()


def test_out_below_an_existing_file_is_one_line(tmp_path, png):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    result = cli("kernels", FACTORY, "-o", str(blocker / "sub"))
    assert_one_line_error(result, f"is below {blocker}, which is a file")
    assert blocker.read_text() == "mine"


def test_out_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    assert_one_line_error(cli("kernels", FACTORY, "-o", str(blocker)), "exists and is not a folder")
    assert blocker.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root may write anywhere")
def test_unwritable_out_names_the_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_one_line_error(cli("kernels", FACTORY, "-o", str(locked / "k")), f"{locked} is not writable")
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a folder nobody may create files in")
def test_out_where_folders_cannot_be_created_names_the_folder():
    target = "/sys/convscope-test-out"
    result = cli("kernels", FACTORY, "-o", target)
    assert_one_line_error(result, f"output folder {target}")
    assert ".tmp" not in result.stderr


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_port_out_of_range_is_refused_before_loading(port):
    assert_one_line_error(cli("serve", "demo:cnn", "--port", port), "--port must be between 0 and 65535")


def test_host_that_does_not_resolve_is_one_line():
    assert_one_line_error(cli("serve", "demo:cnn", "--host", "no-such-host.invalid", "--port", "0"),
                          "--host 'no-such-host.invalid' does not resolve")


def test_complex_npy_is_refused(tmp_path):
    path = tmp_path / "complex.npy"
    np.save(path, (np.ones((3, 8, 8)) + 1j).astype(np.complex64))
    assert_one_line_error(cli("activations", FACTORY, str(path), "-o", str(tmp_path / "a")), "complex numbers")
    assert not (tmp_path / "a").exists()


# -- memory budget ----------------------------------------------------------------------------------


def test_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    from convscope.io.images import MAX_PIXELS

    # between 1x and 2x Pillow's limit Pillow only warns; the header is checked first (nothing decoded)
    side = int((1.5 * MAX_PIXELS) ** 0.5)
    path = tmp_path / "bomb.png"
    _write_blank_png(path, side, side)
    start = time.monotonic()
    result = cli("layers", "demo:cnn", str(path))
    assert_one_line_error(result, "over the limit", f"{side}x{side}")
    assert time.monotonic() - start < 60


def _write_blank_png(path: Path, width: int, height: int) -> None:
    """A valid 8-bit grayscale PNG of ``width x height`` zeros, written row by row (tiny, never in memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    _write_blank_png(path, 10_000, 10_000)
    return path


def test_huge_image_on_demo_unet_ends_in_the_budget_line(huge_png, tmp_path):
    # the estimate is refused before the image is decoded: no MemoryError, no traceback, nothing written
    out = tmp_path / "acts"
    result = cli("activations", "demo:unet", str(huge_png), "-o", str(out), "--max-memory", "2G")
    assert_one_line_error(result, "at 10000x10000 would need about", "--size", "--layer", "--max-memory")
    assert not out.exists()


def test_huge_image_unet_command_also_refused(huge_png, tmp_path):
    result = cli("unet", "demo:unet", str(huge_png), "-o", str(tmp_path / "u"), "--max-memory", "2G")
    assert_one_line_error(result, "the U-Net flow (every layer, one backward pass) at 10000x10000")


def test_small_image_fits_the_budget(png, tmp_path):
    result = cli("activations", FACTORY, str(png), "-o", str(tmp_path / "ok"), "--max-memory", "64M")
    assert result.returncode == 0, result.stderr


# -- interruption ------------------------------------------------------------------------------------


def _interrupt_mid_run(tmp_path: Path, png: Path, sig: int, out: Path) -> subprocess.CompletedProcess[str]:
    """Start a slow ``activations`` run into ``out`` and send ``sig`` once its staging folder has files."""
    proc = subprocess.Popen(
        [str(SCRIPT), "activations", "tests.cli.models:ManyLayers", str(png), "-o", str(out), "--size", "160",
         "--kwargs", '{"depth": 120, "width": 24}', "--kind", "all"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [p for stage in out.glob(".convscope-run-*") for p in stage.rglob("*.png")] if out.exists() else []
        if len(staged) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted: " + (proc.communicate()[1] or "")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_the_previous_complete_run(tmp_path, png, sig, code):
    out = tmp_path / "acts"
    first = cli("activations", FACTORY, str(png), "-o", str(out))
    assert first.returncode == 0, first.stderr
    before = _snapshot(out)
    result = _interrupt_mid_run(tmp_path, png, sig, out)
    assert_one_line_error(result, f"convscope: interrupted; {out} is left as before", code=code)
    assert _snapshot(out) == before  # the previous run exactly: same files, same bytes, same manifest
    manifest = json.loads((out / "manifest.json").read_text())
    assert {entry["file"] for entry in manifest["files"]} == {p for p in before if p != "manifest.json"}


def test_interrupted_first_run_leaves_no_folder(tmp_path, png):
    out = tmp_path / "fresh"
    result = _interrupt_mid_run(tmp_path, png, signal.SIGINT, out)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert not out.exists()


# -- consistency ---------------------------------------------------------------------------------------


def test_kernels_and_activations_share_one_folder(tmp_path, png):
    out = tmp_path / "both"
    assert cli("kernels", FACTORY, "-o", str(out)).returncode == 0
    kernel_png = (out / "conv1.kernels.png").read_bytes()
    result = cli("activations", FACTORY, str(png), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "conv1.kernels.png").read_bytes() == kernel_png  # not overwritten by the activation grid
    manifest = json.loads((out / "manifest.json").read_text())
    by_command = {}
    for entry in manifest["files"]:
        by_command.setdefault(entry["command"], set()).add(entry["file"])
        assert (out / entry["file"]).is_file()  # the manifest lists only files on disk
    assert by_command == {"kernels": {"conv1.kernels.png", "conv2.kernels.png"},
                          "activations": {"conv1.png", "conv2.png"}}
    assert "wrote 2 files" in result.stdout  # this run's files


def test_one_file_is_singular(tmp_path, png):
    result = cli("kernels", FACTORY, "-o", str(tmp_path / "one"), "--layer", "conv1")
    assert result.returncode == 0 and "wrote 1 file to" in result.stdout, result.stdout


def test_rgb_draws_the_rgb_layer_in_colour_and_the_others_as_usual(tmp_path):
    out = tmp_path / "k"
    result = cli("kernels", "demo:cnn", "--rgb", "-o", str(out))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["files"]) > 1  # every conv layer, not only the first
    stem = np.asarray(Image.open(out / "stem.conv.kernels.png").convert("RGB")).astype(int)
    assert np.abs(stem[..., 0] - stem[..., 1]).max() > 0  # colour


def test_rgb_without_any_rgb_layer_is_one_line(tmp_path):
    assert_one_line_error(cli("kernels", "demo:unet", "--rgb", "-o", str(tmp_path / "k")), "--rgb needs a layer")


def test_help_states_the_defaults_the_commands_use():
    def flat(text: str) -> str:  # rich wraps help in a box: drop the borders, join the lines
        return " ".join(text.replace("│", " ").split())

    report = flat(cli("report", "--help", COLUMNS="400").stdout)
    assert "default: convolutions and activation layers" in report
    kernels = flat(cli("kernels", "--help", COLUMNS="400").stdout)
    assert "default: convscope-kernels" in kernels and "(default: auto, the same rule)" in kernels
