"""OutputDir commits a run at once: a failed or interrupted run leaves the folder as it was (issue 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from convscope.errors import ConvscopeError
from convscope.io.output import STAGE_PREFIX, OutputDir


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_that_raises_leaves_the_previous_run(tmp_path):
    with OutputDir(tmp_path, info={"command": "kernels"}) as out:
        out.add_bytes("a.bin", b"old", kind="x")
    before = _snapshot(tmp_path)
    with pytest.raises(RuntimeError), OutputDir(tmp_path, info={"command": "kernels"}) as out:
        out.add_bytes("a.bin", b"new", kind="x")
        out.add_bytes("b.bin", b"new", kind="x")
        assert (tmp_path / "a.bin").read_bytes() == b"old"  # staged, not yet in place
        raise RuntimeError("boom")
    assert _snapshot(tmp_path) == before
    assert not list(tmp_path.glob(f"{STAGE_PREFIX}*"))


def test_keyboard_interrupt_on_a_new_folder_removes_it(tmp_path):
    target = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt), OutputDir(target) as out:
        out.add_bytes("a.bin", b"x")
        raise KeyboardInterrupt
    assert not target.exists()


def test_commit_moves_files_and_returns_final_paths(tmp_path):
    with OutputDir(tmp_path, info={"command": "activations"}) as out:
        path = out.add_json("sub/x.json", {"a": 1}, kind="x")
        assert path == tmp_path / "sub" / "x.json"
    assert json.loads(path.read_text()) == {"a": 1}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [e["file"] for e in manifest["files"]] == ["sub/x.json"] and manifest["files"][0]["command"] == "activations"


def test_stale_stage_of_a_killed_run_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{STAGE_PREFIX}{int(dead.stdout)}-abc"
    stale.mkdir()
    (stale / "half.png").write_bytes(b"x")
    with OutputDir(tmp_path) as out:
        out.add_bytes("a.bin", b"x")
    assert not stale.exists()


def test_output_below_a_file_is_one_clear_error(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("mine")
    with pytest.raises(ConvscopeError, match="which is a file"):
        OutputDir(blocker / "sub")
    assert blocker.read_text() == "mine"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_folder_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConvscopeError, match="is not writable"):
            OutputDir(locked)
    finally:
        locked.chmod(0o700)
