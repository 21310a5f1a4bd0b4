"""``scan --slices PLANE``: a 2D model scans every slice of every volume in DATA, each slice one
example (``rel#plane:NNNN@hash``), exact against a direct computation, in any batch size, with
cards cut from one read of each volume, resumable and mergeable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nibabel")

import convscope as cs  # noqa: E402
from convscope.io.images import prepare_input  # noqa: E402
from convscope.io.volume_prep import VolumeOptions  # noqa: E402
from convscope.scan.result import ScanError, ScanResult  # noqa: E402
from tests.volumes import files as F  # noqa: E402

from .nets import SliceNet, SliceSeg, TinyNet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "convscope")
SLICES = {"a.nii.gz": 5, "b.nii.gz": 7}  # axial slices of each volume (RAS+ z)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vols")
    rng = np.random.default_rng(11)
    for name, depth in SLICES.items():  # stored LPS: slices are counted and cut in RAS+
        F.write_nifti(root / name, rng.random((12, 8, depth)).astype(np.float32), "LPS")
    return root


def _scope(net: torch.nn.Module, plane: str = "axial") -> cs.Scope:
    scope = cs.Scope(net.eval())
    scope.volume_options = VolumeOptions(slices=plane)
    return scope


def _direct(net: torch.nn.Module, path: Path, plane: str = "axial") -> np.ndarray:
    """``(S, C, H, W)`` input of every slice, as convscope prepares them for a 1-channel 2D model."""
    return prepare_input(str(path), channels=1, spatial_dims=2, volume_options=VolumeOptions(slices=plane)).batch


@pytest.mark.parametrize("batch_size", [3, 16])
def test_every_slice_is_one_example_with_the_numbers_of_a_direct_pass(volumes, batch_size):
    net = SliceNet()
    result = _scope(net).scan(volumes, top_k=4, batch_size=batch_size, crops=False)
    assert result.images == sum(SLICES.values()) and not result.skipped
    assert {i.split("#")[0] for i in result.state.ids} == set(SLICES)
    assert any(i.startswith("b.nii.gz#axial:0006@") for i in result.state.ids)
    rows = {name: _direct(net, volumes / name) for name in SLICES}
    with torch.no_grad():
        conv1 = {name: net.conv1(torch.from_numpy(x)).numpy() for name, x in rows.items()}
    stats = result.layer("conv1")
    every = np.concatenate(list(conv1.values()))
    np.testing.assert_array_equal(stats.max, every.max(axis=(0, 2, 3)).astype(np.float64))
    assert int(stats.count[0]) == every.shape[0] * every.shape[2] * every.shape[3]
    for c in range(4):  # the best example is the slice whose channel max is largest
        best = max(((name, i) for name in SLICES for i in range(SLICES[name])), key=lambda t: conv1[t[0]][t[1], c].max())
        assert result.channel("conv1", c).examples[0].image_id.startswith(f"{best[0]}#axial:{best[1]:04d}@")


def test_the_coronal_plane_counts_its_own_slices_and_other_slice_shapes_need_size(volumes):
    scope = _scope(SliceNet(), "coronal")
    result = scope.scan(volumes, top_k=2, batch_size=4, crops=False)
    # coronal slices are 12 x depth: a's 12x5 fix the scan's shape, b's 12x7 are skipped with the way out
    assert result.images == 8 and all(i.startswith("a.nii.gz#coronal:") for i in result.state.ids)
    assert [f for f, _ in result.skipped] == ["b.nii.gz"] and "--size" in result.skipped[0][1]
    resized = scope.scan(volumes, top_k=2, batch_size=4, crops=False, size="12x6")
    assert resized.images == 16 and resized.state.input_shape == (1, 12, 6)


def test_cards_and_crops_cut_slices_from_one_read_per_volume(volumes, tmp_path, monkeypatch):
    import convscope.io.images as images

    reads: list[str] = []
    original = images._as_volume

    def counting(image, options):
        if isinstance(image, (str, os.PathLike)):
            reads.append(Path(image).name)
        return original(image, options)

    monkeypatch.setattr(images, "_as_volume", counting)
    _scope(SliceNet()).scan(volumes, top_k=3, batch_size=4, crops=False)
    assert sorted(reads) == sorted(SLICES)  # pass 1: each volume read once, all its slices at once
    reads.clear()
    result = _scope(SliceNet()).scan(volumes, top_k=3, batch_size=4, out=tmp_path / "scan")
    pass1 = 2
    card = tmp_path / "scan" / result.cards["conv2"][0]
    from PIL import Image

    with Image.open(card) as img:
        assert img.size[0] > 200
    # pass 2: the crop boxes' probe reads one volume, the cards (both layers in one group) each volume
    # once, whichever slices of it won: not once per winning slice (there are up to 2 x 7 x 3 of them)
    assert len(reads) - pass1 <= 1 + len(SLICES)
    box = result.channel("conv1", 0).examples[0].crop_box
    assert box is not None and len(box) == 4 and box[2] - box[0] <= 3 and box[3] - box[1] <= 3


def test_class_statistics_of_a_segmentation_net_cover_every_slice(volumes):
    result = _scope(SliceSeg()).scan(volumes, top_k=2, batch_size=4, crops=False)
    classes = result.state.classes["conv1"]
    assert int(classes.pixels.sum()) == sum(SLICES.values()) * 12 * 8


def test_resume_and_shards_give_the_single_scan(volumes, tmp_path):
    scope = _scope(SliceNet())
    whole = scope.scan(volumes, top_k=3, batch_size=4, crops=False)
    calls = []

    def stop_after_first(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scope.scan(volumes, top_k=3, batch_size=4, crops=False, checkpoint=tmp_path, checkpoint_every=1,
                   progress=stop_after_first)
    resumed = scope.scan(volumes, top_k=3, batch_size=4, crops=False, checkpoint=tmp_path, resume=True)
    assert resumed.state.equal(whole.state)
    (tmp_path / "a.txt").write_text(str(volumes / "a.nii.gz"))
    (tmp_path / "b.txt").write_text(str(volumes / "b.nii.gz"))
    first = scope.scan(tmp_path / "a.txt", top_k=3, batch_size=4, crops=False)
    second = scope.scan(tmp_path / "b.txt", top_k=3, batch_size=4, crops=False, edges_from=first)
    merged = first.merge(second)
    assert merged.images == whole.images
    with pytest.raises(ScanError, match="different --slices"):
        first.merge(_scope(SliceNet(), "coronal").scan(tmp_path / "b.txt", top_k=3, batch_size=4, crops=False,
                                                        edges_from=first))


def test_slices_with_a_3d_model_or_a_2d_image_beside(volumes, tmp_path):
    net3d = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1)).eval()
    with pytest.raises(cs.ConvscopeError, match="--slices axial feeds the slices of volumes to a 2D model"):
        _scope(net3d).scan(volumes, crops=False)
    from PIL import Image

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in SLICES:
        (mixed / name).write_bytes((volumes / name).read_bytes())
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(mixed / "photo.png")  # a 2D image is one example
    result = _scope(SliceNet()).scan(mixed, top_k=2, batch_size=4, crops=False)
    assert result.images == sum(SLICES.values()) + 1 and any(i.startswith("photo.png@") for i in result.state.ids)


def test_the_cli_scans_slices_and_says_how_when_they_are_missing(volumes, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    base = [CLI, "scan", "tests.scan.nets:SliceNet", str(volumes), "--top-k", "2", "--no-cards"]
    done = subprocess.run([*base, "--slices", "axial", "-o", str(tmp_path / "s")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert ScanResult.load(tmp_path / "s").images == sum(SLICES.values())
    without = subprocess.run([*base, "-o", str(tmp_path / "t")], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert without.returncode == 2 and "--slices axial" in without.stderr  # every volume skipped: said how
    assert "Traceback" not in without.stderr


def test_a_3_channel_2d_model_is_not_fed_one_channel_slices_silently(volumes):
    result = _scope(TinyNet()).scan(volumes, top_k=2, batch_size=4, crops=False)  # TinyNet takes RGB
    assert result.images == sum(SLICES.values())  # a gray slice becomes 3 equal channels, as gray pictures do


def test_slice_options_without_any_volume_in_data_are_refused(tmp_path):
    from PIL import Image

    (tmp_path / "d").mkdir()
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(tmp_path / "d" / "photo.png")
    for options in (VolumeOptions(slices="axial"), VolumeOptions(slice="axial:2")):
        scope = cs.Scope(SliceNet().eval())
        scope.volume_options = options
        with pytest.raises(cs.ConvscopeError, match=r"none of the 1 item\(s\) in DATA is a volume"):
            scope.scan(tmp_path / "d", crops=False)
