"""io.dataset.list_files: convscope's own output inside DATA is never scanned as data, and a folder
is searched the same way whether DATA names it, a glob matches it or a list file lists it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convscope.io.dataset import OUTPUT_REASON, DatasetError, is_convscope_output, list_files
from convscope.io.output import OutputDir


def _png(path: Path, seed: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


def _convscope_output(folder: Path) -> None:
    """A folder as any convscope command leaves it: pictures plus convscope's manifest.json."""
    with OutputDir(folder, info={"command": "report"}) as out:
        out.add_bytes("cards/conv/c0000.png", _png(folder.parent / "_tmp.png").read_bytes())
        out.add_bytes("inputs/img0.png", (folder.parent / "_tmp.png").read_bytes())
    (folder.parent / "_tmp.png").unlink()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _png(root / "a.png")
    _png(root / "sub" / "b.png", 1)
    _convscope_output(root / "sub" / "report")
    _convscope_output(root / "scan-out")
    stage = root / ".convscope-run-123-abc"  # a killed run's staging folder
    _png(stage / "x.png")
    # a user's own manifest.json (not convscope's) does not make a folder output
    _png(root / "theirs" / "c.png", 2)
    (root / "theirs" / "manifest.json").write_text(json.dumps({"files": ["c.png"], "convscope": "no"}))
    return root


def test_output_folders_inside_data_are_left_out_and_listed(data):
    left_out: list[tuple[str, str]] = []
    found = [f.rel for f in list_files(data, left_out=left_out)]
    assert found == ["a.png", "sub/b.png", "theirs/c.png"]
    assert dict(left_out) == {".convscope-run-123-abc/": OUTPUT_REASON, "scan-out/": OUTPUT_REASON,
                              "sub/report/": OUTPUT_REASON}


def test_a_glob_and_a_list_file_leave_the_same_folders_out(data, tmp_path):
    by_glob: list[tuple[str, str]] = []
    assert [f.rel for f in list_files(str(data / "**" / "*.png"), left_out=by_glob)] == \
        ["a.png", "sub/b.png", "theirs/c.png"]
    assert {rel for rel, _ in by_glob} >= {"scan-out/", "sub/report/"}
    listing = data / "list.txt"
    listing.write_text("sub\nscan-out/inputs/img0.png\n")  # a file named explicitly is taken
    by_list: list[tuple[str, str]] = []
    assert [f.rel for f in list_files(listing, left_out=by_list)] == ["scan-out/inputs/img0.png", "sub/b.png"]
    assert dict(by_list) == {"sub/report/": OUTPUT_REASON}


def test_only_output_is_a_clear_error_that_says_why(data):
    with pytest.raises(DatasetError, match="scan-out/ is convscope's own output, left out"):
        list_files(data / "scan-out")


def test_the_manifest_rule_reads_only_its_first_key(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"convscope": "0.3", "command": "scan", "files": []}')
    assert is_convscope_output(folder, ["manifest.json"])
    (folder / "manifest.json").write_text('{"files": [], "convscope": "0.3"}')
    assert not is_convscope_output(folder, ["manifest.json"])
    (folder / "manifest.json").write_bytes(b"\xff\xfe garbage")
    assert not is_convscope_output(folder, ["manifest.json"])
    assert not is_convscope_output(folder, [])
