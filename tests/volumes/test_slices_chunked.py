"""``--slices PLANE``: a 2D model on every slice of a volume, streamed in chunks sized to the memory budget.

Chunked and one-batch runs must give the same numbers and pictures; the model never sees more than one
chunk at a time; the model is never changed; the chunk count is stated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")
torch = pytest.importorskip("torch")

from convscope.core.budget import MemoryBudgetError, plan_chunks  # noqa: E402
from convscope.io.volume_prep import VolumeOptions  # noqa: E402

from ..conftest import assert_same_fingerprint  # noqa: E402
from . import files as F  # noqa: E402
from .test_cli_volumes import convscope, one_line_error  # noqa: E402
from .test_planes import fingerprint  # noqa: E402

SHAPE = (16, 12, 40)  # 40 axial slices


class Counting(torch.nn.Module):
    """A small 2D CNN that records the largest batch its forward pass saw (ignoring the 1-sample probes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(6, 4, 3, padding=1)
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(int(x.shape[0]))
        return self.conv2(self.relu(self.conv1(x)))


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> tuple[Path, Path]:
    import nibabel as nib

    folder = tmp_path_factory.mktemp("slices")
    path = F.write_nifti(folder / "scan.nii.gz", F.marked_volume(SHAPE), "LPS")
    img = nib.load(str(path))
    labels = (np.asarray(img.dataobj) >= F.MARK).astype(np.int16)
    nib.save(nib.Nifti1Image(labels, img.affine), str(folder / "seg.nii.gz"))
    return path, folder / "seg.nii.gz"


def _scope(model, budget=None, **options):
    import convscope as cs

    scope = cs.Scope(model)
    scope.volume_options = VolumeOptions(slices="axial", **options)
    scope.max_memory = budget
    return scope


def _small_budget(scope, image, names, mode, fraction=0.2) -> int:
    whole = scope.plan_slices(image, names, mode=mode).estimate.total  # the one-batch estimate
    return int(whole * fraction)


def test_plan_chunks_sizes_and_refusal():
    channels = {"a": 8, "b": 8}
    shape = (40, 1, 64, 64)
    whole = plan_chunks(shape, ["a", "b"], channels_by_layer=channels, budget=2**40)
    assert (whole.size, whole.chunks, whole.reason) == (40, 1, "")
    plan = plan_chunks(shape, ["a", "b"], channels_by_layer=channels, budget=whole.estimate.total // 5)
    assert 1 <= plan.size < 40 and plan.chunks == -(-40 // plan.size)
    assert plan.estimate.total <= whole.estimate.total // 5 and "per forward pass fit" in plan.reason
    bigger = plan_chunks(shape, ["a", "b"], channels_by_layer=channels, budget=whole.estimate.total // 5 * 2)
    assert bigger.size > plan.size  # a larger budget never gives smaller chunks
    ranges = plan.ranges()
    assert ranges[0][0] == 0 and ranges[-1][1] == 40 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    with pytest.raises(MemoryBudgetError, match="--slice axial:N"):
        plan_chunks(shape, ["a", "b"], channels_by_layer=channels, budget=1000, hint="; feed one slice with --slice axial:N")


def test_activations_chunked_equal_one_batch_and_bounded(tmp_path, scan):
    image, _ = scan
    torch.manual_seed(0)
    model = Counting().eval()
    before = fingerprint(model)
    scope = _scope(model)
    names = scope.select(None)
    one = scope.save_activations(image, tmp_path / "one", arrays=True)
    seen_one = max(model.seen)
    budget = _small_budget(scope, image, names, "stream")
    scope.max_memory = budget
    model.seen.clear()
    plan = scope.plan_slices(image, names, mode="stream")
    chunked = scope.save_activations(image, tmp_path / "chunked", arrays=True)
    assert seen_one == 40 and 1 < plan.chunks and max(model.seen) == plan.size < 40  # never the whole stack at once
    assert model.seen[-plan.chunks:] == [b - a for a, b in plan.ranges()]  # the chunks, in order
    m1, m2 = (json.loads(p.read_text()) for p in (one, chunked))
    assert m1["chunks"]["chunks"] == 1 and m2["chunks"] == plan.describe()
    assert m2["chunks"]["estimate_bytes"] <= budget
    for name in names:
        a = np.load(tmp_path / "one" / f"{name}.npz")["activation"]
        b = np.load(tmp_path / "chunked" / f"{name}.npz")["activation"]
        assert a.shape == b.shape == (40, model.get_submodule(name).out_channels, 12, 16)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    files1 = sorted(e["file"] for e in m1["files"])
    assert files1 == sorted(e["file"] for e in m2["files"])
    assert "conv2.s39.png" in files1 and "conv2.planes.png" in files1 and "input.planes.png" in files1
    for rel in files1:
        if rel.endswith(".png"):
            assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "chunked" / rel).read_bytes(), rel
    entries = {e["file"]: e for e in m2["files"]}
    assert entries["conv2.s39.png"]["shape"] == [40, 4, 12, 16]  # the whole batch's shape, not the chunk's
    assert entries["conv2.npz"]["arrays"] == {"activation": [40, 4, 12, 16]}
    assert_same_fingerprint(before, fingerprint(model))


def test_slice_maps_land_on_their_slices(tmp_path, scan):
    """The per-slice channel means drawn on the planes are the maps of the right slices: an identity
    net's map equals the scan (through the radiological view and back)."""
    image, _ = scan

    class Identity(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1, bias=False)
            with torch.no_grad():
                self.conv.weight.fill_(1.0)

        def forward(self, x):
            return self.conv(x)

    scope = _scope(Identity().eval())
    scope.max_memory = _small_budget(scope, image, ["conv"], "stream", 0.3)
    prepared = scope.prepare(image)
    record = prepared.volume
    stack = prepared.batch[:, 0]
    back = record.to_volume(stack)
    np.testing.assert_array_equal(back, record.volume.data[0])
    manifest = json.loads(scope.save_activations(image, tmp_path / "id").read_text())
    assert manifest["chunks"]["chunks"] > 1
    entry = next(e for e in manifest["files"] if e["file"] == "conv.planes.png")
    assert entry["kind"] == "activation_planes" and entry["reduce"] == "channel mean of each slice"


def test_unet_chunked_equal_one_batch(tmp_path, scan):
    from convscope.cli.cmd_unet import run_unet
    from tests.unet.unet_zoo import UNet

    image, seg = scan
    torch.manual_seed(0)
    model = UNet(levels=3, dims=2).eval()
    before = fingerprint(model)
    runs = {}
    for label, fraction in (("one", None), ("chunked", 0.25)):
        scope = _scope(model, labels=str(seg))
        if fraction is not None:
            scope.max_memory = _small_budget(scope, image, None, "hold", fraction)
        plan = scope.plan_slices(image, what="the U-Net flow (every layer)")
        prepared = scope.prepare(image)
        mask = prepared.volume.fit_region(prepared.volume.labels != 0)
        run_unet(scope.adapter, prepared.batch, None, tmp_path / label, volume=prepared.volume, chunks=plan, mask=mask)
        runs[label] = (plan, json.loads((tmp_path / label / "manifest.json").read_text()),
                       json.loads((tmp_path / label / "unet.json").read_text()))
    (p1, m1, u1), (p2, m2, u2) = runs["one"], runs["chunked"]
    assert p1.chunks == 1 and p2.chunks > 1 and m2["chunks"]["chunks"] == p2.chunks
    for a, b in zip(u1["skips"], u2["skips"]):
        assert a["energy_share"] == pytest.approx(b["energy_share"], rel=1e-5)
        assert a["gradient_share"] is not None and a["gradient_share"] == pytest.approx(b["gradient_share"], rel=1e-4)
    d1 = next(e for e in m1["files"] if e["file"] == "output.planes.png")
    d2 = next(e for e in m2["files"] if e["file"] == "output.planes.png")
    assert d1["dice"] == d2["dice"] and set(d1["dice"]) <= {"1"}
    for rel in ("output.planes.png", "level-0.decoder.planes.png", "level-1.encoder.planes.png", "flow.png"):
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "chunked" / rel).read_bytes(), rel
    assert_same_fingerprint(before, fingerprint(model))


def test_unet_slice_dice_matches_the_prediction(tmp_path, scan):
    """The Dice in output.planes.png is that of the prediction slice by slice, mapped onto the scan."""
    from convscope.cli.cmd_unet import run_unet
    from convscope.io.volume_prep import dice_scores

    image, seg = scan

    class Thresh(torch.nn.Module):  # "segments" voxels above 500 exactly: two classes, logits +-(x - 500)
        def __init__(self) -> None:
            super().__init__()
            self.enc = torch.nn.Conv2d(1, 2, 1)
            self.pool = torch.nn.MaxPool2d(2)
            self.mid = torch.nn.Conv2d(2, 2, 1)
            self.up = torch.nn.Upsample(scale_factor=2)
            self.out = torch.nn.Conv2d(4, 2, 1)
            with torch.no_grad():
                for conv in (self.enc, self.mid):
                    conv.weight.zero_()
                    conv.bias.zero_()
                    conv.weight[0, 0] = 1.0
                self.enc.bias[0] = 0.0
                self.out.weight.zero_()
                self.out.weight[1, 0] = 1.0
                self.out.weight[0, 0] = -1.0
                self.out.bias[:] = torch.tensor([500.0, -500.0])

        def forward(self, x):
            e = self.enc(x)
            return self.out(torch.cat([e, self.up(self.mid(self.pool(e)))], dim=1))

    scope = _scope(Thresh().eval(), labels=str(seg))
    scope.max_memory = _small_budget(scope, image, None, "hold", 0.3)
    plan = scope.plan_slices(image)
    prepared = scope.prepare(image)
    run_unet(scope.adapter, prepared.batch, None, tmp_path / "t", volume=prepared.volume, chunks=plan)
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    entry = next(e for e in manifest["files"] if e["file"] == "output.planes.png")
    truth = prepared.volume.labels
    predicted = (prepared.volume.volume.data[0] > 500).astype(np.int32)
    assert entry["dice"] == dice_scores(predicted, truth, [1]) == {"1": 1.0}
    assert plan.chunks > 1


def test_train_mode_and_report_check_the_whole_stack_cam_one_slice(tmp_path, scan):
    image, _ = scan
    scope = _scope(Counting().eval())
    names = scope.select(None)
    scope.max_memory = _small_budget(scope, image, names, "stream", 0.3)
    with pytest.raises(MemoryBudgetError, match=r"--slice axial:N.*--train-mode"):
        scope.save_activations(image, tmp_path / "t", train=True)
    with pytest.raises(MemoryBudgetError, match=r"--slice axial:N"):  # the report checks the whole stack
        scope.report(image, tmp_path / "r", unet=False)
    scope.max_memory = 4096  # not even one slice fits: the CAMs are refused before any pass
    with pytest.raises(MemoryBudgetError, match="of one axial slice.*--slice axial:N or raise --max-memory"):
        scope.cam(image)
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()


def test_cli_chunks_printed_and_refused(tmp_path, scan):
    image, _ = scan
    out = tmp_path / "a"
    args = ("activations", "tests.cli.models:TinyNet", str(image), "--kwargs", '{"in_channels": 1}', "--slices", "axial")
    r = convscope(*args, "-o", str(out), "--max-memory", "300K")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    chunks = manifest["chunks"]
    assert chunks["samples"] == 40 and chunks["chunks"] > 1 and chunks["estimate_bytes"] <= 300 * 1024
    assert f"40 axial slices in {chunks['chunks']} chunks of up to {chunks['chunk_size']}" in r.stdout
    one_line_error(convscope(*args, "-o", str(tmp_path / "b"), "--max-memory", "8K"), "--slice axial:N", "--max-memory")
    assert not (tmp_path / "b").exists()


class Segmenter(torch.nn.Module):
    """A 2-class 2D segmenter (for CAMs) that records the largest batch its forward pass saw."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(6, 6, 3, padding=1)
        self.head = torch.nn.Conv2d(6, 2, 1)
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(int(x.shape[0]))
        return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))))


@pytest.mark.parametrize("shared", [False, True])
def test_cams_chunked_equal_one_batch(tmp_path, scan, shared):
    image, seg = scan
    torch.manual_seed(1)
    model = Segmenter().eval()
    before = fingerprint(model)
    methods = ["gradcam", "hirescam", "eigencam", "inputxgrad"]
    one = _scope(model).cam(image, layer=["conv1", "conv2"], method=methods, shared=shared, as_set=True)
    scope = _scope(model)  # a budget for 30% of the stack, forward + backward pass (what scope.cam checks)
    scope.max_memory = int(scope.plan_cam(image, ["conv1", "conv2"], methods).estimate.total * 0.3)
    model.seen.clear()
    chunked = scope.cam(image, layer=["conv1", "conv2"], method=methods, shared=shared, as_set=True)
    assert chunked.chunks is not None and chunked.chunks["chunks"] > 1 and one.chunks["chunks"] == 1
    assert max(model.seen) == chunked.chunks["chunk_size"] < 40
    assert chunked.passes["backward"] == chunked.chunks["chunks"] and one.passes["backward"] == 1
    assert list(one) == list(chunked)
    for key in one:
        a, b = one[key], chunked[key]
        assert a.data.shape == b.data.shape == (40, 12, 16)
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.scale, b.scale, rtol=1e-4, atol=1e-6)
        assert a.notes == b.notes
    manifest = json.loads(chunked.save(tmp_path / "c", volume=scope.prepare(image).volume).read_text())
    assert manifest["chunks"] == chunked.chunks
    planes = [e for e in manifest["files"] if e["kind"] == "cam_planes"]
    assert len(planes) == len(list(one)) and all(e["file"].endswith(".planes.png") for e in planes)
    assert_same_fingerprint(before, fingerprint(model))


def test_cam_target_mask_cut_per_chunk(scan):
    """A mask per slice (the label map fitted to the slices) is cut to each chunk: the same maps as one pass."""
    import convscope as cs

    image, seg = scan
    torch.manual_seed(2)
    model = Segmenter().eval()
    scope = _scope(model, labels=str(seg))
    record = scope.prepare(image).volume
    mask = record.fit_region(record.labels != 0)
    keep = [i for i in range(40) if mask[i].any()]
    assert 3 < len(keep) < 40
    per = cs.targets.per_sample([cs.targets.segmentation(1, mask=mask[i]) if mask[i].any() else cs.targets.segmentation(1)
                                 for i in range(40)])
    full = mask.copy()
    full[:, :2, :2] = True  # every slice has a region: one (40, rows, cols) mask for the whole stack
    whole = cs.targets.segmentation(1, mask=full)
    one = [scope.cam(image, layer="conv2", target=t) for t in (per, whole)]
    scope.max_memory = int(scope.plan_cam(image, ["conv2"], ["gradcam"]).estimate.total * 0.3)
    chunked = [scope.cam(image, layer="conv2", target=t) for t in (per, whole)]
    for a, b in zip(one, chunked):
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-4, atol=1e-6)
    assert not np.allclose(one[0].raw, one[1].raw)  # the two targets differ: the masks were used


def test_cli_cam_slices_streamed(tmp_path, scan):
    image, _ = scan
    out = tmp_path / "cam"
    r = convscope("cam", "tests.cli.models:TinyNet", str(image), "--kwargs", '{"in_channels": 1}', "--slices", "axial",
                  "--layer", "conv1", "-o", str(out), "--max-memory", "300K")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chunks"]["chunks"] > 1 and manifest["passes"]["backward"] == manifest["chunks"]["chunks"]
    assert f"40 axial slices in {manifest['chunks']['chunks']} chunks" in r.stdout
    assert (out / "conv1.gradcam.planes.png").is_file() and (out / "conv1.gradcam.s39.png").is_file()


def test_array_stream_writes_an_npz_in_blocks(tmp_path):
    from convscope.io.output import OutputDir

    data = np.arange(7 * 3 * 5, dtype=np.float32).reshape(7, 3, 5)
    with OutputDir(tmp_path / "o", info={"command": "t"}) as out:
        stream = out.open_array_stream("a.npz", "activation", data.shape, data.dtype, kind="activation-array")
        for start in range(0, 7, 3):
            stream.write(data[start:start + 3])
        with pytest.raises(ValueError, match="does not continue"):
            stream.write(np.zeros((1, 3, 4), dtype=np.float32))
        stream.close()
        short = out.open_array_stream("b.npz", "x", (4, 2), np.float32)
        short.write(np.zeros((3, 2), dtype=np.float32))
        with pytest.raises(ValueError, match="3 of 4 rows"):
            short.close()
    with np.load(tmp_path / "o" / "a.npz", allow_pickle=False) as loaded:
        np.testing.assert_array_equal(loaded["activation"], data)
    entry = next(e for e in json.loads((tmp_path / "o" / "manifest.json").read_text())["files"] if e["file"] == "a.npz")
    assert entry["arrays"] == {"activation": [7, 3, 5]}
