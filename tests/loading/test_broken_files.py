"""Empty, truncated, corrupt and mislabelled files: one clear line each (API and CLI), no traceback."""

from __future__ import annotations

import pytest

import convscope
from convscope.cli.main import main
from convscope.errors import ModelLoadError, UntrustedFileError

from .files import FACTORY, png_bytes, write_valid

SUFFIXES = [".onnx", ".pt2", ".pt", ".pth", ".safetensors"]
# content of another format for each suffix (the "wrong extension" case)
WRONG = {".onnx": ".pt", ".pt2": ".pt", ".pt": ".onnx", ".pth": "png", ".safetensors": ".pt"}


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    return {suffix: write_valid(folder, suffix).read_bytes() for suffix in SUFFIXES}


def broken(valid: dict[str, bytes], suffix: str, how: str) -> bytes:
    if how == "empty":
        return b""
    if how == "truncated":
        data = valid[suffix]
        return data[: len(data) // 2]
    if how == "corrupt":
        return bytes(range(256)) * 8
    source = WRONG[suffix]
    return png_bytes() if source == "png" else valid[source]


CASES = [(suffix, how) for suffix in SUFFIXES for how in ("empty", "truncated", "corrupt", "wrong-extension")]


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.err


@pytest.mark.parametrize(("suffix", "how"), CASES)
def test_broken_model_file_raises_one_line(tmp_path, valid, suffix, how):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(broken(valid, suffix, how))
    with pytest.raises(ModelLoadError) as info:
        convscope.load(path)
    assert not isinstance(info.value, UntrustedFileError), "format problems are reported before the trust check"
    message = str(info.value)
    assert "\n" not in message and path.name in message


@pytest.mark.parametrize(("suffix", "how"), CASES)
def test_broken_model_file_cli_exit_2_one_line(tmp_path, valid, capsys, suffix, how):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(broken(valid, suffix, how))
    code, err = run_cli(["layers", str(path)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("convscope: error:")
    assert "Traceback" not in err


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
@pytest.mark.parametrize("how", ["empty", "truncated", "corrupt", "wrong-extension"])
def test_broken_weights_file_cli_exit_2_one_line(tmp_path, valid, capsys, suffix, how):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(broken(valid, suffix, how))
    code, err = run_cli(["layers", FACTORY, "--weights", str(path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert path.name in err


def test_wrong_extension_message_names_the_right_suffix(tmp_path, valid):
    path = tmp_path / "model.pt"
    path.write_bytes(valid[".onnx"])
    with pytest.raises(ModelLoadError, match=r"ONNX model.*rename it to model\.onnx"):
        convscope.load(path)


def test_truncated_zip_archive_says_truncated(tmp_path, valid):
    path = tmp_path / "model.pt2"
    path.write_bytes(valid[".pt2"][:2000])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        convscope.load(path)


def test_valid_pt2_without_trust_cli_names_the_flag(tmp_path, valid, capsys):
    path = tmp_path / "model.pt2"
    path.write_bytes(valid[".pt2"])
    code, err = run_cli(["layers", str(path)], capsys)
    assert code == 2 and "--trust" in err and len(err.strip().splitlines()) == 1
