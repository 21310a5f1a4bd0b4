"""A scan knows its model: the weights digest it records refuses a resume, a merge, a report or a
viewer with other weights or another model's layers, in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import convscope as cs  # noqa: E402
from convscope.scan.result import ScanError, ScanResult  # noqa: E402

from .nets import TinyNet, TinyNetRetrained, TinySeg  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "convscope")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"im{i}.png")
    return root


def _scan(model: torch.nn.Module, images: Path, **kwargs) -> ScanResult:
    return cs.Scope(model.eval()).scan(images, top_k=2, batch_size=3, crops=False, **kwargs)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    return subprocess.run([CLI, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_scan_records_its_weights_digest_and_framework(images, tmp_path):
    model = TinyNet()
    result = _scan(model, images)
    assert result.state.config["weights"] == cs.Scope(model).weights_digest()
    assert result.state.config["framework"] == "torch"
    result.save(tmp_path / "s")
    assert ScanResult.load(tmp_path / "s").state.config["weights"] == result.state.config["weights"]


def test_merging_shards_of_other_weights_or_other_preparation_is_refused(images, tmp_path):
    files = sorted(images.glob("*.png"))
    (tmp_path / "a.txt").write_text("\n".join(str(f) for f in files[:3]))
    (tmp_path / "b.txt").write_text("\n".join(str(f) for f in files[3:]))
    first = _scan(TinyNet(), tmp_path / "a.txt")
    same = _scan(TinyNet(), tmp_path / "b.txt", edges_from=first)
    assert first.merge(same).images == 6  # the same model in two processes merges
    retrained = _scan(TinyNetRetrained(), tmp_path / "b.txt")  # (--edges-from the first shard is refused too)
    with pytest.raises(ScanError, match="different models"):
        first.merge(retrained)
    other_norm = _scan(TinyNet(), tmp_path / "b.txt", edges_from=first, normalize="imagenet")
    with pytest.raises(ScanError, match="different --normalize"):
        first.merge(other_norm)


def test_edges_from_a_scan_of_other_weights_are_refused(images):
    first = _scan(TinyNet(), images)
    with pytest.raises(ScanError, match="other weights"):
        _scan(TinyNetRetrained(), images, edges_from=first)
    assert _scan(TinyNet(), images, edges_from=first).images == 6


def test_resuming_with_retrained_weights_is_refused(images, tmp_path):
    partial = _scan(TinyNet(), images)
    partial.state.done = {0}
    partial.state.save(tmp_path / "checkpoint.npz")
    with pytest.raises(ScanError, match="other weights"):
        _scan(TinyNetRetrained(), images, checkpoint=tmp_path, resume=True)
    resumed = _scan(TinyNet(), images, checkpoint=tmp_path, resume=True)  # the same weights go on
    assert resumed.images == 6


def test_check_model_compares_layers_then_weights(images, tmp_path):
    result = _scan(TinyNet(), images)
    result.check_model(cs.Scope(TinyNet()))
    with pytest.raises(ScanError, match="other weights"):
        result.check_model(cs.Scope(TinyNetRetrained()))
    with pytest.raises(ScanError, match=r"1 of its layers \(conv2\) are not in TinySeg"):
        result.check_model(cs.Scope(TinySeg()))
    # a scan written before digests were recorded is checked by its layers alone
    del result.state.config["weights"]
    result.check_model(cs.Scope(TinyNetRetrained()))
    # a digest from another framework (the model exported) is not compared
    result.state.config.update(weights="blake2b-128:" + "0" * 32, framework="onnx")
    result.check_model(cs.Scope(TinyNet()))


def test_report_and_serve_refuse_a_scan_of_other_weights_in_one_line(images, tmp_path):
    scan_dir = tmp_path / "scan"
    made = _cli("scan", "tests.scan.nets:TinyNet", str(images), "-o", str(scan_dir), "--top-k", "2", "--no-cards",
                "--receptive-field", "none")
    assert made.returncode == 0, made.stderr
    image = str(sorted(images.glob("*.png"))[0])
    for argv in (["report", "tests.scan.nets:TinyNetRetrained", image, "--scan", str(scan_dir), "-o", str(tmp_path / "r")],
                 ["serve", "tests.scan.nets:TinyNetRetrained", "--scan", str(scan_dir), "--port", "0"]):
        proc = _cli(*argv)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "other weights than tests.scan.nets:TinyNetRetrained" in lines[0] and "convscope scan" in lines[0]
    assert not (tmp_path / "r").exists()  # refused before anything was written
    ok = _cli("report", "tests.scan.nets:TinyNet", image, "--scan", str(scan_dir), "-o", str(tmp_path / "r2"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "r2" / "atlas.html").is_file()


def test_a_file_that_is_not_a_scan_gets_one_line_without_unsafe_advice(images, tmp_path):
    bogus = tmp_path / "scan.npz"
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bogus.write_bytes((tmp_path / "objects.npy").read_bytes())
    (tmp_path / "empty.npz").write_bytes(b"")
    image = str(sorted(images.glob("*.png"))[0])
    for target in (bogus, tmp_path / "empty.npz"):
        proc = _cli("report", "tests.scan.nets:TinyNet", image, "--scan", str(target), "-o", str(tmp_path / "r"))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "not a readable scan state" in lines[0]
        assert "pickle" not in lines[0] and "unsafe" not in lines[0]


def test_a_model_whose_weights_cannot_be_read_still_scans_without_a_digest(images):
    class Stubborn(TinyNet):
        def state_dict(self, *args, **kwargs):  # a custom state_dict that fails
            raise RuntimeError("not today")

    model = Stubborn().eval()
    assert cs.Scope(model).weights_digest() is None
    result = _scan(model, images)
    assert result.images == 6 and result.state.config["weights"] is None
    result.check_model(cs.Scope(TinyNetRetrained()))  # nothing to compare but the layers


def test_a_module_called_twice_is_scanned_and_checked_under_its_k_names(images):
    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(1)
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.act = torch.nn.ReLU()
            self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.conv2(self.act(self.conv(x))))

    scope = cs.Scope(Twice().eval())
    result = scope.scan(images, kind="all", top_k=2, batch_size=3, crops=False)
    assert {"act", "act#1"} <= set(result.layers)
    result.check_model(scope)  # act#1 is the second call of act, not a layer of another model


def test_the_cli_summary_says_how_to_look_at_the_scan(images, tmp_path):
    done = _cli("scan", "tests.scan.nets:TinyNet", str(images), "-o", str(tmp_path / "s"), "--no-cards",
                "--receptive-field", "none")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("scanned 6 images (0 skipped) through 2 layers")
    assert lines[1].strip().startswith(f"see it: convscope serve tests.scan.nets:TinyNet --scan {tmp_path / 's'}")
