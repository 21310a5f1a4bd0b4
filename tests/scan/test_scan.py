"""Dataset scans end to end: bad files, exact shard merges, resume after a kill, flat memory, CLI, pickling."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import convscope as cs  # noqa: E402
from convscope.core.stats import DuplicateImagesError  # noqa: E402
from convscope.scan.result import ScanState  # noqa: E402

from .nets import TinyNet, TinySeg  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "convscope")


def _write_images(folder: Path, n: int, size: int = 16, seed: int = 0, start: int = 0) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        path = folder / f"img{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _write_images(root / "a", 14, seed=1)
    _write_images(root / "b" / "deep", 10, seed=2, start=100)
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    from PIL import Image

    Image.fromarray(np.zeros((20, 16, 3), np.uint8)).save(root / "b" / "wrong_size.png")
    (root / "notes.md").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def scope() -> cs.Scope:
    return cs.Scope(TinyNet().eval())


def test_scan_lists_bad_files_and_matches_direct_computation(scope, dataset):
    result = scope.scan(dataset, top_k=3, batch_size=5, crops=False)
    assert result.images == 24
    skipped = dict(result.skipped)
    assert set(skipped) == {"a/broken.png", "b/wrong_size.png"}
    assert "cannot read" in skipped["a/broken.png"] and "--size 16x16" in skipped["b/wrong_size.png"]
    assert result.layers == ["conv1", "conv2"]
    # statistics against a direct computation over every image
    files = sorted(p for p in dataset.rglob("img*.png"))
    batch = np.concatenate([scope.prepare(str(p)).batch for p in files])
    acts = scope.activations(batch, ["conv1"])["conv1"].data
    per = acts.transpose(1, 0, 2, 3).reshape(4, -1).astype(np.float64)
    stats = result.channel("conv1", 1).stats
    assert stats.count == per.shape[1]
    assert stats.mean == pytest.approx(per[1].mean(), rel=1e-6)
    assert stats.std == pytest.approx(per[1].std(), rel=1e-6)
    assert stats.max == float(per[1].max()) and stats.min == float(per[1].min())
    scores = acts[:, 1].reshape(len(files), -1).max(axis=1)
    best = int(np.argmax(scores))
    top = result.channel("conv1", 1).examples[0]
    assert top.image_id.startswith(files[best].relative_to(dataset).as_posix() + "@")
    assert top.score == pytest.approx(float(scores[best]))
    assert top.position == tuple(int(v) for v in np.unravel_index(np.argmax(acts[best, 1]), acts.shape[2:]))
    assert result.dead_channels("conv1") == [3]


@contextlib.contextmanager
def torch_threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def one_batch_at_a_time(monkeypatch):
    """The local engine's other path: one batch at a time, its statistics on a second thread."""
    from convscope.adapters.torch_adapter import TorchAdapter

    with monkeypatch.context() as patch:
        patch.setattr(TorchAdapter, "computes_on_cpu", property(lambda self: False))
        yield


def test_batches_scanned_at_once_give_the_numbers_of_one_at_a_time(dataset, monkeypatch):
    """On CPU the local engine scans one batch per torch thread at once (each captured and reduced on
    its own thread, on one torch thread); every statistic, bit for bit, equals scanning the batches
    one at a time on one torch thread, and torch's thread count and the model are as before."""
    from convscope.adapters.torch_state import model_fingerprint

    from tests.conftest import assert_same_fingerprint

    class Recording(TinyNet):
        """Records the torch thread count and the thread of every forward pass."""

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[int, int]] = []

        def forward(self, x):
            self.seen.append((torch.get_num_threads(), threading.get_ident()))
            return super().forward(x)

    model = Recording().train()
    before = model_fingerprint(model)
    scope = cs.Scope(model)
    with torch_threads(3):  # 3 batches at once (of 7 chunks), whatever the machine's cores
        at_once = scope.scan(dataset, top_k=3, batch_size=4, crops=False)
        assert torch.get_num_threads() == 3  # restored
    assert {count for count, _ in model.seen} == {1} and len(model.seen) == 7  # one torch thread each
    assert len({thread for _, thread in model.seen}) >= 2  # on several threads
    assert_same_fingerprint(before, model_fingerprint(model))
    with torch_threads(1), one_batch_at_a_time(monkeypatch):
        one_by_one = scope.scan(dataset, top_k=3, batch_size=4, crops=False)
    assert list(at_once.layers) == list(one_by_one.layers)
    for name in one_by_one.layers:
        assert at_once.state.layers[name].equal(one_by_one.state.layers[name]), name
    assert at_once.state.ids == one_by_one.state.ids and at_once.state.skipped == one_by_one.state.skipped
    assert_same_fingerprint(before, model_fingerprint(model))


def test_the_histogram_edges_come_from_the_first_usable_batch_whatever_the_timing(tmp_path, monkeypatch):
    """The first chunk's files are all unreadable: the next batch fixes the edges, alone, before
    batches run at once; the result equals one batch at a time."""
    folder = tmp_path / "d"
    folder.mkdir()
    for name in ("a0.png", "a1.png"):
        (folder / name).write_bytes(b"not a picture")
    _write_images(folder, 9, seed=8)
    scope = cs.Scope(TinyNet().eval())
    with torch_threads(3):
        at_once = scope.scan(folder, top_k=2, batch_size=2, crops=False)
    with torch_threads(1), one_batch_at_a_time(monkeypatch):
        one_by_one = scope.scan(folder, top_k=2, batch_size=2, crops=False)
    assert len(at_once.state.skipped) == 2 and at_once.images == 9
    for name in one_by_one.layers:
        assert at_once.state.layers[name].equal(one_by_one.state.layers[name]), name


def test_batches_at_once_keep_class_statistics_of_a_segmentation_model(dataset, monkeypatch):
    scope = cs.Scope(TinySeg().eval())
    with torch_threads(1), one_batch_at_a_time(monkeypatch):
        one_by_one = scope.scan(dataset, top_k=2, batch_size=4, crops=False)
    with torch_threads(2):
        at_once = scope.scan(dataset, top_k=2, batch_size=4, crops=False)
    assert one_by_one.state.classes and set(at_once.state.classes) == set(one_by_one.state.classes)
    for name, want in one_by_one.state.classes.items():
        np.testing.assert_array_equal(at_once.state.classes[name].sums, want.sums)
        np.testing.assert_array_equal(at_once.state.classes[name].pixels, want.pixels)
    for name in one_by_one.layers:
        assert at_once.state.layers[name].equal(one_by_one.state.layers[name]), name


def test_a_forward_pass_failing_in_a_concurrent_batch_stops_the_scan_and_leaves_the_model(dataset):
    from convscope.adapters.torch_state import model_fingerprint

    from tests.conftest import assert_same_fingerprint

    class FailsLater(TinyNet):
        calls = 0

        def forward(self, x):
            type(self).calls += 1
            if type(self).calls == 4:
                raise ValueError("bad batch")
            return super().forward(x)

    model = FailsLater().eval()
    before = model_fingerprint(model)
    with torch_threads(2):
        with pytest.raises(cs.ConvscopeError, match="bad batch"):
            cs.Scope(model).scan(dataset, top_k=3, batch_size=4, crops=False)
        assert torch.get_num_threads() == 2
    assert_same_fingerprint(before, model_fingerprint(model))
    assert model.conv1._forward_hooks == {}


def test_empty_and_missing_data_are_clear_errors(scope, tmp_path):
    with pytest.raises(cs.ConvscopeError, match="no images found"):
        scope.scan(tmp_path, crops=False)
    with pytest.raises(cs.ConvscopeError, match="not found"):
        scope.scan(tmp_path / "missing", crops=False)


def _shard_lists(dataset: Path) -> list[Path]:
    files = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("img*.png"))
    cuts = [(0, 10), (10, 15), (15, len(files))]
    lists = []
    for i, (a, b) in enumerate(cuts):
        path = dataset / f"shard{i}.txt"
        path.write_text("\n".join(files[a:b]) + "\n")
        lists.append(path)
    return lists


def test_three_shards_merge_to_the_single_scan(scope, dataset):
    shards = _shard_lists(dataset)
    first = scope.scan(shards[0], top_k=4, batch_size=5, crops=False)
    # histogram edges are fixed by a scan's first batch: shards (and the reference) share the first shard's
    whole = scope.scan(dataset, top_k=4, batch_size=5, crops=False, edges_from=first)
    parts = [first] + [scope.scan(s, top_k=4, batch_size=5, crops=False, edges_from=first) for s in shards[1:]]
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        merged = parts[order[0]].merge(parts[order[1]]).merge(parts[order[2]])
        assert merged.images == whole.images
        for name in whole.layers:
            a, b = merged.layer(name), whole.layer(name)
            for field in ("count", "min", "max", "zeros", "positive", "hist", "edges", "top_score", "top_id", "top_pos",
                          "bottom_score", "bottom_id", "bottom_pos"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name}.{field}")
            np.testing.assert_allclose(a.mean, b.mean, rtol=1e-6)
            np.testing.assert_allclose(a.m2, b.m2, rtol=1e-6)
    with pytest.raises(DuplicateImagesError, match="in both scans"):
        parts[0].merge(parts[1]).merge(parts[1])


def test_save_load_round_trip_and_scan_json(scope, dataset, tmp_path):
    result = scope.scan(dataset, top_k=3, batch_size=8, out=tmp_path / "scan")
    doc = json.loads((tmp_path / "scan" / "scan.json").read_text())
    assert doc["schema"] == "convscope.scan" and doc["version"] == 1 and doc["images"] == 24
    assert {s["file"] for s in doc["skipped"]} == {"a/broken.png", "b/wrong_size.png"}
    layer = doc["layers"][0]
    assert layer["name"] == "conv1" and layer["dead"] == [3] and len(layer["examples"]) == 4
    example = layer["examples"][0][0]
    assert set(example) == {"image_id", "score", "position", "crop_box"}
    assert example["crop_box"] is not None
    y, x = example["position"]
    y0, x0, y1, x1 = example["crop_box"]
    assert y0 <= y < y1 and x0 <= x < x1 and (y1 - y0) <= 3 and (x1 - x0) <= 3  # 3x3 conv, padding 1
    card = tmp_path / "scan" / layer["cards"][0]
    from PIL import Image

    with Image.open(card) as img:
        assert img.size[0] > 200 and img.size[1] > 100
    again = cs.ScanResult.load(tmp_path / "scan")
    assert again.state.equal(result.state)
    assert again.channel("conv2", 2).examples == result.channel("conv2", 2).examples
    assert again.channel("conv2", 2).card is not None and again.channel("conv2", 2).card.is_file()


def test_memory_is_flat_as_the_dataset_grows(scope, tmp_path):
    _write_images(tmp_path / "d", 200, size=16, seed=7)
    (tmp_path / "small.txt").write_text("\n".join(f"d/img{i:04d}.png" for i in range(50)))
    peaks = []
    for data in (tmp_path / "small.txt", tmp_path / "d"):
        scope.scan(data, top_k=4, batch_size=10, crops=False)  # warm caches
        tracemalloc.start()
        scope.scan(data, top_k=4, batch_size=10, crops=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.3 * peaks[0] + 200_000, peaks


def test_segmentation_class_means(tmp_path):
    _write_images(tmp_path / "d", 6, size=8, seed=3)
    model = TinySeg().eval()
    seg = cs.Scope(model)
    result = seg.scan(tmp_path / "d", ["conv1"], top_k=2, batch_size=4, crops=False)
    batch = np.concatenate([seg.prepare(str(p)).batch for p in sorted((tmp_path / "d").glob("*.png"))])
    acts = seg.activations(batch, ["conv1"])
    pred = np.argmax(acts.output, axis=1)
    data = acts["conv1"].data
    view = result.channel("conv1", 2)
    for k in (0, 1):
        mask = pred == k
        if mask.any():
            assert view.class_means[f"class {k}"] == pytest.approx(float(data[:, 2][mask].astype(np.float64).mean()), rel=1e-9)


def _resume_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "CONVSCOPE_TEST_SLEEP": "0.3"}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"scan ended early: {proc.stderr.read() if proc.stderr else ''}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_resume_after_kill_gives_the_uninterrupted_result(dataset, tmp_path, how):
    out = tmp_path / "scan"
    args = [CLI, "scan", "tests.scan.nets:SlowNet", str(dataset), "-o", str(out), "--batch-size", "2", "--top-k", "3",
            "--checkpoint-every", "1", "--no-cards", "--receptive-field", "none"]
    proc = subprocess.Popen(args, cwd=ROOT, env=_resume_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "checkpoint.npz", proc)
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if how == "SIGTERM":
        assert proc.returncode == 130 and "--resume" in err
    checkpoint = ScanState.load(out / "checkpoint.npz")
    assert 0 < len(checkpoint.done) < 13
    again = subprocess.run(args, cwd=ROOT, env=_resume_env(), capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # an unfinished scan is never overwritten
    done = subprocess.run(args + ["--resume"], cwd=ROOT, env={**_resume_env(), "CONVSCOPE_TEST_SLEEP": "0"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (out / "checkpoint.npz").exists()
    from tests.scan.nets import SlowNet

    os.environ["CONVSCOPE_TEST_SLEEP"] = "0"
    try:
        straight = cs.Scope(SlowNet().eval()).scan(dataset, top_k=3, batch_size=2, crops=False)
    finally:
        del os.environ["CONVSCOPE_TEST_SLEEP"]
    resumed = cs.ScanResult.load(out)
    assert resumed.state.equal(straight.state)  # bit for bit, mean and variance included


def test_cli_errors_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, needle in (
        (["scan", "demo:cnn", str(empty), "-o", str(tmp_path / "o")], "no images found"),
        (["scan", "demo:cnn", str(empty), "--score", "median", "-o", str(tmp_path / "o")], "--score"),
        (["scan", "demo:cnn", str(empty), "--resume", "-o", str(tmp_path / "o2")], "no images found"),
    ):
        proc = subprocess.run([CLI, *argv], capture_output=True, text=True, env=env)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def _child_activations(payload: bytes, queue: multiprocessing.Queue) -> None:
    scope = pickle.loads(payload)
    queue.put(scope.activations(scope.sample(0), ["enc1.conv"])["enc1.conv"].data)


def test_scope_pickles_into_a_spawned_process():
    scope = cs.load("demo:unet")
    payload = pickle.dumps(scope)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{ROOT}{os.pathsep}{env_path}"
    try:
        proc = ctx.Process(target=_child_activations, args=(payload, queue))
        proc.start()
        got = queue.get(timeout=120)
        proc.join(60)
    finally:
        os.environ["PYTHONPATH"] = env_path
    assert proc.exitcode == 0
    np.testing.assert_array_equal(got, scope.activations(scope.sample(0), ["enc1.conv"])["enc1.conv"].data)


def test_effective_receptive_field_is_inside_the_theoretical_one(dataset):
    model = TinyNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scope = cs.Scope(model)
    theo = scope.scan(dataset, ["conv2"], top_k=2, batch_size=8)
    eff = scope.scan(dataset, ["conv2"], top_k=2, batch_size=8, receptive_field="effective")
    for c in range(6):
        for a, b in zip(theo.channel("conv2", c).examples, eff.channel("conv2", c).examples):
            assert a.image_id == b.image_id and b.crop_box is not None
            t, e = a.crop_box, b.crop_box
            assert t[0] <= e[0] < e[2] <= t[2] and t[1] <= e[1] < e[3] <= t[3]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_effective_receptive_field_checks_its_backward_pass_against_the_budget(dataset):
    from convscope.core.budget import MemoryBudgetError
    from convscope.scan.crops import compute_crops

    scope = cs.Scope(TinyNet().eval())
    result = scope.scan(dataset, ["conv2"], top_k=2, batch_size=8, receptive_field="none")
    scope.max_memory = 1024  # far below one backward pass: refused before any gradient is computed
    with pytest.raises(MemoryBudgetError, match="the effective receptive field of conv2 .*--max-memory"):
        compute_crops(scope, result, method="effective")


def test_volumes_scan_with_3d_boxes_and_cards(tmp_path):
    class Net3D(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)
            self.pool = torch.nn.MaxPool3d(2)
            self.conv2 = torch.nn.Conv3d(3, 2, 3, padding=1)

        def forward(self, x):
            return self.conv2(self.pool(self.conv(x)))

    rng = np.random.default_rng(2)
    (tmp_path / "v").mkdir()
    for i in range(5):
        np.save(tmp_path / "v" / f"vol{i}.npy", rng.random((8, 8, 8), dtype=np.float32))
    scope = cs.Scope(Net3D().eval())
    result = scope.scan(tmp_path / "v", top_k=2, batch_size=2, out=tmp_path / "scan")
    example = result.channel("conv2", 1).examples[0]
    assert len(example.position) == 3 and len(example.crop_box) == 6
    # conv2 (3^3, padding 1) at half resolution after a 2^3 pool after a 3^3 conv: input 2p-3 .. 2p+4, clipped
    want = [max(0, 2 * p - 3) for p in example.position] + [min(8, 2 * p + 5) for p in example.position]
    assert list(example.crop_box) == want
    assert (tmp_path / "scan" / result.cards["conv2"][1]).is_file()


def test_nifti_scans_get_axial_cards(tmp_path):
    pytest.importorskip("nibabel")
    from PIL import Image

    from tests.volumes import files as F

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.ReLU()).eval()
    (tmp_path / "v").mkdir()
    rng = np.random.default_rng(4)
    for i in range(3):  # stored LPS: the cards are cut from the RAS+ arrays
        F.write_nifti(tmp_path / "v" / f"ct{i}.nii.gz", rng.random((10, 8, 6)).astype(np.float32), "LPS")
    pytest.importorskip("pydicom")
    F.write_dicom_series(tmp_path / "v" / "patient" / "series1", (rng.random((10, 8, 6)) * 100).astype(np.float32))
    (tmp_path / "v" / "notes.txt").write_text("not data")
    result = cs.Scope(net).scan(tmp_path / "v", top_k=2, batch_size=2, out=tmp_path / "scan")
    assert result.images == 4 and not result.skipped  # 3 NIfTI files + one DICOM series folder (one volume)
    assert any(i.startswith("patient/series1@") for i in result.state.ids)
    card = Image.open(tmp_path / "scan" / result.cards["0"][0])
    assert card.size[0] > 100 and len(result.channel("0", 0).examples) == 2


def test_a_dicom_series_of_extensionless_files_is_one_item(tmp_path):
    """PACS exports name DICOM files IM0001, 1.2.840...: a folder of them (with a DICOMDIR and a note
    beside) is one series, found by the DICOM marker; folders of extensionless non-DICOM files and of
    pictures are not series."""
    pytest.importorskip("nibabel")
    pytest.importorskip("pydicom")
    from PIL import Image

    from convscope.io.dataset import list_files
    from tests.volumes import files as F

    rng = np.random.default_rng(6)
    series = F.write_dicom_series(tmp_path / "v" / "patient" / "series1", (rng.random((10, 8, 6)) * 100).astype(np.float32))
    for i, path in enumerate(sorted(series.glob("*.dcm"))):
        path.rename(series / f"IM{i:04d}")
    (series / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)  # a directory record, not an image
    (series / "notes.txt").write_text("acquired on the old scanner")
    F.write_nifti(tmp_path / "v" / "ct0.nii.gz", rng.random((10, 8, 6)).astype(np.float32), "LPS")
    (tmp_path / "v" / "misc").mkdir()
    for name in ("LICENSE", "Makefile"):
        (tmp_path / "v" / "misc" / name).write_text("not DICOM " * 30)
    (tmp_path / "v" / "pics").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "v" / "pics" / "a.png")
    (tmp_path / "v" / "pics" / "b").write_bytes((series / "IM0000").read_bytes())  # a stray DICOM among pictures
    found = [f.rel for f in list_files([tmp_path / "v"])]
    assert found == ["ct0.nii.gz", "patient/series1", "pics/a.png"]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.ReLU()).eval()
    result = cs.Scope(net).scan(tmp_path / "v" / "patient", top_k=1, batch_size=1, crops=False)
    assert result.images == 1 and not result.skipped
    assert result.state.input_shape == (1, 10, 8, 6)  # the 6 slices read as one RAS+ volume


def test_a_state_too_big_for_memory_is_refused_up_front(scope, dataset):
    with pytest.raises(cs.ConvscopeError, match="scan state needs about .* --top-k"):
        scope.scan(dataset, top_k=3, batch_size=5, crops=False, memory_limit=1000)


def test_a_scan_written_inside_data_is_not_scanned_by_the_next_run(scope, tmp_path):
    data = tmp_path / "data"
    _write_images(data, 6)
    first = scope.scan(data, top_k=2, batch_size=4, out=data / "scan")
    assert any((data / "scan" / "cards").rglob("*.png"))  # pictures of the data's size are there now
    again = scope.scan(data, top_k=2, batch_size=4, out=data / "scan")
    assert again.state.ids == first.state.ids and len(again.state.ids) == 6
    assert [f for f, _ in again.skipped] == ["scan/"] and "convscope's own output" in again.skipped[0][1]
    for name in first.layers:
        assert again.layer(name).equal(first.layer(name))


def test_the_state_estimate_counts_the_examples_still_to_come():
    from convscope.core.stats import LayerStats
    from convscope.scan.engine import _check_memory

    acts = np.random.default_rng(0).standard_normal((5, 64, 4, 4)).astype(np.float32)
    first = ScanState(layers={"conv": LayerStats.from_batch(acts, [f"im{i}@0" for i in range(5)], k=1000)})
    assert first.layers["conv"].top_id.shape == (64, 5)  # one batch: 5 slots so far
    now = 3 * sum(v.nbytes for v in first.layers["conv"].to_arrays().values())
    _check_memory(first, 2 * now, images=5)  # 5 images in DATA: the state stays this size
    with pytest.raises(cs.ConvscopeError, match="64 channels x 1,000 top-k and bottom-k examples"):
        _check_memory(first, 2 * now, images=5000)  # slots grow to k = 1000 per channel


def test_merged_scan_gets_crops_and_cards_again(scope, dataset, tmp_path):
    from convscope.scan.cards import write_scan
    from convscope.scan.crops import compute_crops

    shards = _shard_lists(dataset)
    first = scope.scan(shards[0], top_k=2, batch_size=5, crops=False)
    merged = first.merge(scope.scan(shards[1], top_k=2, batch_size=5, crops=False, edges_from=first))
    assert merged.channel("conv1", 0).examples[0].crop_box is None
    compute_crops(scope, merged)
    write_scan(scope, merged, tmp_path / "merged")
    again = cs.ScanResult.load(tmp_path / "merged")
    assert again.images == 15 and again.channel("conv1", 0).examples[0].crop_box is not None
    assert again.channel("conv1", 0).card.is_file()


def test_a_torchscript_model_scans_batches_at_once_with_the_numbers_of_one_at_a_time(dataset, monkeypatch):
    """TorchScript captures run their own rewritten graph (no hooks): batches at once share one saved
    model state and give the numbers of one batch at a time; the module is as before."""
    from convscope.adapters.torch_state import model_fingerprint

    from tests.conftest import assert_same_fingerprint

    scripted = torch.jit.script(TinyNet().train())
    before = model_fingerprint(scripted)
    scope = cs.Scope(scripted)
    assert scope.adapter.framework == "torchscript"
    with torch_threads(2):
        at_once = scope.scan(dataset, top_k=3, batch_size=4, crops=False)
    assert_same_fingerprint(before, model_fingerprint(scripted))
    with torch_threads(1), one_batch_at_a_time(monkeypatch):
        one_by_one = scope.scan(dataset, top_k=3, batch_size=4, crops=False)
    for name in one_by_one.layers:
        assert at_once.state.layers[name].equal(one_by_one.state.layers[name]), name


def test_fewer_batches_at_once_when_their_memory_would_not_fit(dataset, monkeypatch):
    """Half the available memory must hold every concurrent batch's working set; here it holds less
    than one, so the batches run one after another (same numbers), on the calling thread."""
    from convscope.scan import engine

    class Recording(TinyNet):
        threads: set[int] = set()

        def forward(self, x):
            type(self).threads.add(threading.get_ident())
            return super().forward(x)

    monkeypatch.setattr(engine, "available_memory", lambda: 2 * 40_000)  # less than one batch of 4 needs (61 KB)
    scope = cs.Scope(Recording().eval())
    with torch_threads(2):
        tight = scope.scan(dataset, top_k=3, batch_size=4, crops=False)
    assert Recording.threads == {threading.get_ident()}
    monkeypatch.undo()
    with torch_threads(2):
        roomy = scope.scan(dataset, top_k=3, batch_size=4, crops=False)
    for name in roomy.layers:
        assert tight.state.layers[name].equal(roomy.state.layers[name]), name


def test_an_interrupted_pass_2_keeps_pass_1_for_resume(scope, dataset, tmp_path, monkeypatch):
    import convscope.scan.cards as cards

    straight = scope.scan(dataset, top_k=3, batch_size=5, out=tmp_path / "straight")
    assert not (tmp_path / "straight" / "checkpoint.npz").exists()
    real = cards.write_scan

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cards, "write_scan", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scope.scan(dataset, top_k=3, batch_size=5, out=tmp_path / "scan")
    kept = ScanState.load(tmp_path / "scan" / "checkpoint.npz")
    assert kept.done == straight.state.done == set(range(6)) and kept.equal(straight.state)  # every batch
    monkeypatch.setattr(cards, "write_scan", real)
    calls = []
    resumed = scope.scan(dataset, top_k=3, batch_size=5, out=tmp_path / "scan", resume=True,
                         progress=lambda done, total: calls.append(done))
    assert calls == [] and resumed.state.equal(straight.state)  # no batch scanned again
    assert (tmp_path / "scan" / "scan.json").is_file() and not (tmp_path / "scan" / "checkpoint.npz").exists()


def test_sigterm_during_pass_2_keeps_the_statistics_for_resume(dataset, tmp_path):
    out = tmp_path / "scan"
    args = [CLI, "scan", "tests.scan.nets:SlowNet", str(dataset), "-o", str(out), "--batch-size", "6", "--top-k", "2"]
    env = {**_resume_env(), "CONVSCOPE_TEST_SLEEP": "0.5"}  # pass 2's two forward passes: a window of 1 s or more
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while True:  # pass 1 is over when the checkpoint holds every batch; pass 2's forward passes sleep too
        assert proc.poll() is None and time.time() < deadline, "the scan ended before pass 2 could be interrupted"
        try:
            if len(ScanState.load(out / "checkpoint.npz").done) == 5:
                break
        except Exception:  # noqa: BLE001 - not written yet
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "continue with --resume" in err and len(err.strip().splitlines()) == 1, err
    assert (out / "checkpoint.npz").exists() and not (out / "scan.json").exists()
    done = subprocess.run(args + ["--resume"], cwd=ROOT, env={**_resume_env(), "CONVSCOPE_TEST_SLEEP": "0"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert cs.ScanResult.load(out).images == 24 and not (out / "checkpoint.npz").exists()


def test_a_batch_too_big_for_the_memory_budget_is_refused_before_any_image_is_decoded(dataset, monkeypatch, tmp_path):
    import convscope.io.dataset as ds
    from convscope.core.budget import MemoryBudgetError

    decoded = []
    real = ds.decode_file
    monkeypatch.setattr(ds, "decode_file", lambda *a, **k: decoded.append(1) or real(*a, **k))
    scope = cs.Scope(TinyNet().eval())
    scope.max_memory = 64 * 2**10
    with pytest.raises(MemoryBudgetError, match=r"a scan batch of 26 images .* smaller batch \(now 26\)"):
        scope.scan(dataset, batch_size=64, crops=False)
    assert decoded == []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([CLI, "scan", "demo:cnn", str(dataset), "--batch-size", "64", "--max-memory", "1M",
                           "-o", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--max-memory" in proc.stderr


def test_an_error_in_pass_2_keeps_the_statistics_and_says_so(dataset, tmp_path):
    out = tmp_path / "scan"
    env = {**_resume_env(), "CONVSCOPE_TEST_SLEEP": "0"}
    proc = subprocess.run([CLI, "scan", "tests.scan.nets:FailsInCards", str(dataset), "-o", str(out), "--batch-size", "6"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "this model fails on 16 images" in lines[0] and "statistics are kept" in lines[0] and "--resume" in lines[0]
    assert len(ScanState.load(out / "checkpoint.npz").done) == 5  # pass 1 complete, not lost


def test_a_crop_method_the_model_cannot_do_is_refused_before_pass_1(dataset, monkeypatch):
    import convscope.scan.engine as engine

    monkeypatch.setattr(engine, "run_scan", lambda *a, **k: pytest.fail("pass 1 ran"))
    scope = cs.Scope(TinyNet().eval())
    scope.adapter.framework = "onnx"  # an adapter without input gradients
    with pytest.raises(cs.ConvscopeError, match="effective receptive field needs input gradients.*not onnx"):
        scope.scan(dataset, receptive_field="effective")


def test_every_layer_kind_gets_cards_a_linear_head_the_whole_example(tmp_path):
    from PIL import Image

    _write_images(tmp_path / "d", 5, size=32)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    result = cs.Scope(model).scan(tmp_path / "d", kind="all", top_k=2, batch_size=2, out=tmp_path / "scan")
    assert {"0", "2", "4"} <= set(result.layers)  # conv, pool (1x1 maps), the Linear head (no map)
    for layer in ("2", "4"):
        with Image.open(tmp_path / "scan" / result.cards[layer][0]) as card:
            assert card.size[0] > 200 and len(result.channel(layer, 0).examples) == 2
