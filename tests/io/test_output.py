from __future__ import annotations

import json

import numpy as np
import pytest

from convscope.io.files import atomic_write_bytes
from convscope.io.output import OutputDir, safe_filename
from convscope.render.picture import Picture


def picture(value: int = 10) -> Picture:
    return Picture(np.full((4, 6, 3), value, dtype=np.uint8), meta={"value_range": [0, 1]})


def test_manifest_lists_every_file_with_metadata(tmp_path):
    with OutputDir(tmp_path) as out:
        out.add_picture(out.unique_name("enc1.conv", ".png"), picture(), layer="enc1.conv", kind="kernels", shape=[8, 1, 3, 3])
        out.add_arrays(out.unique_name("enc1.conv", ".npz"), {"weights": np.zeros((8, 1, 3, 3), np.float32)}, layer="enc1.conv")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    files = {entry["file"]: entry for entry in manifest["files"]}
    assert set(files) == {"enc1.conv.png", "enc1.conv.npz"}
    assert files["enc1.conv.png"]["shape"] == [8, 1, 3, 3]
    assert files["enc1.conv.png"]["value_range"] == [0, 1]
    assert files["enc1.conv.png"]["width"] == 6


def test_rendered_job_writes_png(tmp_path):
    with OutputDir(tmp_path) as out:
        out.add_rendered("a.png", lambda: picture(200), layer="a")
    from PIL import Image

    with Image.open(tmp_path / "a.png") as img:
        assert np.asarray(img)[0, 0].tolist() == [200, 200, 200]


def test_rerun_is_idempotent_and_leaves_other_files_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for _ in range(2):
        with OutputDir(tmp_path) as out:
            out.add_picture("x.png", picture())
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "notes.txt", "x.png"]


def test_unique_names_do_not_collide(tmp_path):
    with OutputDir(tmp_path) as out:
        assert out.unique_name("a/b", ".png") == "a_b.png"
        assert out.unique_name("a:b", ".png") == "a_b-2.png"


def test_safe_filename_strips_path_tricks():
    assert safe_filename("../../etc/passwd") == "etc_passwd"
    assert safe_filename("enc1.conv") == "enc1.conv"
    assert "/" not in safe_filename("model/conv2d_1:0")


def test_failed_atomic_write_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")

    import os

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


def test_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        OutputDir(tmp_path / "f")


def test_manifest_not_rewritten_when_run_fails(tmp_path):
    (tmp_path / "manifest.json").write_text('{"old": true}')
    with pytest.raises(RuntimeError):
        with OutputDir(tmp_path) as out:
            out.add_picture("x.png", picture())
            raise RuntimeError("stop")
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"old": True}
