"""Inputs read in the model's layout: ``.npy`` arrays ``(H, W, C)`` / ``(1, H, W, C)`` decided from the
model's channel count and rank (one decision, :func:`convscope.io.images.input_layout`), and ONNX
models with channels-last inputs (Keras/TF exporters' layout) detected and fed transposed."""

from __future__ import annotations

import contextlib
import json
import io
import warnings

import numpy as np
import pytest

from convscope import Scope
from convscope.core.unet import find_unet
from convscope.io.images import input_layout, prepare_input

torch = pytest.importorskip("torch")
nn = torch.nn

from convscope.adapters.torch_graph import trace_torch  # noqa: E402

from . import unet_zoo as Z  # noqa: E402


# -- the one layout decision ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "channels", "dims", "want"),
    [
        ((1, 256, 256, 3), 3, 2, "channels_last"),  # np.expand_dims(np.random.rand(256, 256, 3), axis=0)
        ((256, 256, 3), 3, 2, "channels_last"),
        ((1, 3, 256, 256), 3, 2, "channels_first"),
        ((3, 64, 64), 3, 2, "channels_first"),
        ((1, 64, 64, 3), 1, 2, "channels_last"),  # RGB for a gray model: converted after the layout
        ((1, 64, 64, 64), 64, 2, "channels_first"),  # both axes hold 64: channels first
        ((16, 16, 16, 2), 2, 3, "channels_last"),  # a 2-channel volume (D, H, W, C)
        ((2, 16, 16, 16), 2, 3, "channels_first"),
        ((16, 16, 16), 1, 3, "none"),
        ((32, 32), 1, 2, "none"),
        ((1, 32, 32, 4), None, 2, "channels_last"),
    ],
)
def test_input_layout_from_the_models_channels_and_rank(shape, channels, dims, want) -> None:
    assert input_layout(shape, channels=channels, spatial_dims=dims) == want


def test_founding_example_npy_is_read_as_three_channels(tmp_path) -> None:
    arr = np.expand_dims(np.random.default_rng(0).random((256, 256, 3)), axis=0)
    np.save(tmp_path / "x.npy", arr)
    np.save(tmp_path / "hwc.npy", arr[0])
    for name in ("x.npy", "hwc.npy"):
        prepared = prepare_input(tmp_path / name, channels=3)
        assert prepared.batch.shape == (1, 3, 256, 256)
        np.testing.assert_allclose(prepared.batch[0, 2], arr[0, :, :, 2].astype(np.float32))
    # the same array in memory is read the same way
    np.testing.assert_array_equal(prepare_input(arr, channels=3).batch, prepare_input(tmp_path / "x.npy", channels=3).batch)


def test_npy_volume_channels_last_for_a_3d_model(tmp_path) -> None:
    model = Z.UNet(3, dims=3, in_ch=2).eval()
    vol = np.random.default_rng(1).random((8, 8, 8, 2), dtype=np.float32)
    np.save(tmp_path / "vol.npy", vol)
    batch = Scope(model).prepare(str(tmp_path / "vol.npy")).batch
    assert batch.shape == (1, 2, 8, 8, 8)
    np.testing.assert_array_equal(batch[0, 1], vol[..., 1])


# -- ONNX models with channels-last inputs ---------------------------------------------------------


class ChannelsLast(nn.Module):
    """Takes ``(N, *spatial, C)`` like a Keras model and runs ``inner`` channels first."""

    def __init__(self, inner: nn.Module, dims: int = 2, rescale: bool = False) -> None:
        super().__init__()
        self.inner, self.dims, self.rescale = inner, dims, rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rescale:  # a Keras Rescaling layer before the transpose: Mul, Sub in ONNX
            x = x * 2.0 - 1.0
        return self.inner(x.permute(0, self.dims + 1, *range(1, self.dims + 1)))


def _export(model: nn.Module, shape: tuple[int, ...], path) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, input_names=["x"])


@pytest.mark.parametrize(("dims", "size", "rescale"), [(2, 16, False), (3, 8, False), (2, 16, True)])
def test_onnx_channels_last_input_is_detected_and_the_unet_found(tmp_path, dims, size, rescale) -> None:
    pytest.importorskip("onnxruntime")
    from convscope.adapters.onnx_adapter import OnnxAdapter

    torch.manual_seed(0)
    inner = Z.UNet(3, dims=dims, in_ch=3).eval()
    wrapped = ChannelsLast(inner, dims, rescale).eval()
    _export(wrapped, (1, *(size,) * dims, 3), tmp_path / "cl.onnx")
    adapter = OnnxAdapter(tmp_path / "cl.onnx")
    assert adapter.channels_last
    spec = adapter.input_spec()
    assert (spec.channels, spec.spatial_dims, spec.spatial_size) == (3, dims, (size,) * dims)
    x = np.random.default_rng(0).random((1, 3, *(size,) * dims), dtype=np.float32)  # convscope: channels first
    ours = Scope(adapter).unet(x)
    theirs = find_unet(trace_torch(inner, x).graph)
    assert [(k.level, k.merge_kind) for k in ours.structure.skips] == [(k.level, k.merge_kind) for k in theirs.skips]
    with torch.no_grad():
        want = wrapped(torch.from_numpy(np.moveaxis(x, 1, -1).copy())).numpy()
    _, output = adapter.run_tensors(x, [])
    np.testing.assert_allclose(output, want, rtol=1e-4, atol=1e-5)
    # a channels-last picture array is read for it as well
    pic = np.moveaxis(x[0], 0, -1)
    np.save(tmp_path / "pic.npy", pic)
    np.testing.assert_array_equal(Scope(adapter).prepare(str(tmp_path / "pic.npy")).batch, x)


def test_onnx_channels_first_input_stays_channels_first(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from convscope.adapters.onnx_adapter import OnnxAdapter

    _export(Z.UNet(3, in_ch=3).eval(), (1, 3, 16, 16), tmp_path / "cf.onnx")
    adapter = OnnxAdapter(tmp_path / "cf.onnx")
    assert not adapter.channels_last and adapter.input_spec().channels == 3


def test_cli_unet_on_a_channels_last_onnx_model_reads_a_png_and_an_npy(tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from convscope.cli.main import main

    torch.manual_seed(0)
    _export(ChannelsLast(Z.UNet(3, in_ch=3).eval()).eval(), (1, 16, 16, 3), tmp_path / "keras_like.onnx")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    np.save(tmp_path / "in.npy", np.expand_dims(rng.random((16, 16, 3)), axis=0))
    for image in ("in.png", "in.npy"):
        out = tmp_path / f"unet-{image}"
        try:
            main(["unet", str(tmp_path / "keras_like.onnx"), str(tmp_path / image), "--out", str(out)])
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr().err
        captured = capsys.readouterr()
        assert "--size" not in captured.err and (out / "unet.json").exists()
        data = json.loads((out / "unet.json").read_text())
        assert len(data["skips"]) == 2 and data["levels"][0]["shape"][0] == 4
