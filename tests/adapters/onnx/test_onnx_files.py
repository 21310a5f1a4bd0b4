""".onnx files: external data is read only from inside the model's folder; broken files give one line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import convscope
from convscope.adapters.onnx import files as onnx_files
from convscope.adapters.onnx_adapter import OnnxAdapter, read_onnx_model
from convscope.errors import ModelLoadError

WEIGHT = np.arange(3 * 2 * 3 * 3, dtype=np.float32).reshape(3, 2, 3, 3) / 10
BIAS = np.array([0.5, -1.0, 2.0], np.float32)


def conv_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["y"], name="conv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(WEIGHT, "W"), numpy_helper.from_array(BIAS, "B")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save_with_external_data(folder: Path, locations: dict[str, str] | None = None) -> Path:
    """Save conv_model with W and B in ``folder/data.bin``, then point tensors at ``locations``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(conv_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="data.bin", size_threshold=0)
    if locations:
        proto = onnx.load_model(str(path), load_external_data=False)
        for tensor in proto.graph.initializer:
            if tensor.name in locations:
                for entry in tensor.external_data:
                    if entry.key == "location":
                        entry.value = locations[tensor.name]
        path.write_bytes(proto.SerializeToString())
    return path


def test_external_data_next_to_the_model_is_read(tmp_path):
    adapter = OnnxAdapter(save_with_external_data(tmp_path / "m"))
    bank = adapter.kernel("conv")
    np.testing.assert_array_equal(bank.weights, WEIGHT)
    np.testing.assert_array_equal(bank.bias, BIAS)


def test_external_data_in_a_subfolder_is_read(tmp_path):
    path = save_with_external_data(tmp_path / "m")
    (tmp_path / "m" / "weights").mkdir()
    os.replace(tmp_path / "m" / "data.bin", tmp_path / "m" / "weights" / "data.bin")
    save_with_external_data(tmp_path / "unused")  # nothing shared
    proto = onnx.load_model(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "weights/data.bin"
    path.write_bytes(proto.SerializeToString())
    np.testing.assert_array_equal(OnnxAdapter(path).kernel("conv").weights, WEIGHT)


def test_parent_traversal_location_is_refused(tmp_path):
    save_with_external_data(tmp_path / "outside")
    path = save_with_external_data(tmp_path / "m", {"W": "../outside/data.bin"})
    with pytest.raises(ModelLoadError, match=r"'\.\.'"):
        read_onnx_model(path)


def test_absolute_location_is_refused(tmp_path):
    outside = save_with_external_data(tmp_path / "outside").parent / "data.bin"
    path = save_with_external_data(tmp_path / "m", {"W": str(outside.resolve())})
    with pytest.raises(ModelLoadError, match="absolute path"):
        read_onnx_model(path)


def test_symlinked_data_file_is_refused(tmp_path):
    outside = save_with_external_data(tmp_path / "outside").parent / "data.bin"
    path = save_with_external_data(tmp_path / "m")
    (tmp_path / "m" / "data.bin").unlink()
    (tmp_path / "m" / "data.bin").symlink_to(outside)
    with pytest.raises(ModelLoadError, match="symbolic link"):
        read_onnx_model(path)


def test_symlinked_parent_folder_is_refused(tmp_path):
    outside_dir = save_with_external_data(tmp_path / "outside").parent
    path = save_with_external_data(tmp_path / "m", {"W": "sub/data.bin", "B": "sub/data.bin"})
    (tmp_path / "m" / "sub").symlink_to(outside_dir, target_is_directory=True)
    with pytest.raises(ModelLoadError, match="symbolic link"):
        read_onnx_model(path)


def test_hard_linked_data_file_is_refused(tmp_path):
    outside = save_with_external_data(tmp_path / "outside").parent / "data.bin"
    path = save_with_external_data(tmp_path / "m", {"W": "linked.bin", "B": "linked.bin"})
    os.link(outside, tmp_path / "m" / "linked.bin")
    with pytest.raises(ModelLoadError, match="hard links"):
        read_onnx_model(path)


def test_no_byte_is_read_when_any_location_is_refused(tmp_path, monkeypatch):
    save_with_external_data(tmp_path / "outside")
    path = save_with_external_data(tmp_path / "m", {"B": "../outside/data.bin"})  # W stays valid
    reads = []
    monkeypatch.setattr(onnx_files, "_read_external", lambda *args: reads.append(args) or b"")
    with pytest.raises(ModelLoadError):
        read_onnx_model(path)
    assert reads == []


def test_missing_external_data_file_says_so(tmp_path):
    path = save_with_external_data(tmp_path / "m")
    (tmp_path / "m" / "data.bin").unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        read_onnx_model(path)


def test_truncated_external_data_file_says_so(tmp_path):
    path = save_with_external_data(tmp_path / "m")
    data = tmp_path / "m" / "data.bin"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(ModelLoadError, match="beyond the end"):
        read_onnx_model(path)


def test_model_proto_with_external_references_asks_for_the_path(tmp_path):
    proto = onnx.load_model(str(save_with_external_data(tmp_path / "m")), load_external_data=False)
    with pytest.raises(ModelLoadError, match="give convscope the .onnx path"):
        OnnxAdapter(proto)


# -------------------------------------------------------------------------------------------------
# broken and mislabelled files
# -------------------------------------------------------------------------------------------------


def valid_bytes() -> bytes:
    return conv_model().SerializeToString()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: valid_bytes()[: len(valid_bytes()) // 2], "not a valid ONNX model"),
        (lambda: bytes(range(256)) * 4, "not"),
        (lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "looks like a PNG image"),
        (lambda: b"hello, this is not a model\n", "not"),
    ],
    ids=["truncated", "garbage", "png", "text"],
)
def test_broken_onnx_file_gives_one_line(tmp_path, content, message):
    path = tmp_path / "model.onnx"
    path.write_bytes(content())
    with pytest.raises(ModelLoadError, match=message) as info:
        convscope.load(path)
    assert "\n" not in str(info.value) and "model.onnx" in str(info.value)


def test_empty_onnx_file_gives_one_line(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        convscope.load(path)


def test_pytorch_file_named_onnx_suggests_the_right_extension(tmp_path):
    import torch

    path = tmp_path / "weights.onnx"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ModelLoadError, match=r"rename it to weights\.pt"):
        convscope.load(path)
