"""Streaming export: memory stays bounded however many layers are written, and the fast PNG encoder
the output folder uses is exact."""

from __future__ import annotations

import io
import threading
import time
import tracemalloc
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from convscope import Scope
from convscope.adapters.base import CaptureResult, InputSpec, ModelAdapter
from convscope.core.layers import LayerInfo
from convscope.io.output import OutputDir
from convscope.render.picture import Picture, encode_png

MIB = 2**20


class NumpyModel(ModelAdapter):
    """A model whose every layer outputs a fresh numpy array of ``shape`` (numpy memory is traced
    by tracemalloc, so a layer's activation counts until the last reference to it is gone)."""

    framework = "numpy"

    def __init__(self, layers: int, shape: tuple[int, ...]) -> None:
        self.count = layers
        self.shape = shape

    @property
    def model(self) -> Any:
        return self

    def layers(self) -> list[LayerInfo]:
        return [LayerInfo(name=f"conv{i}", kind="conv", type_name="Conv") for i in range(self.count)]

    def input_spec(self) -> InputSpec:
        return InputSpec(channels=1, spatial_dims=len(self.shape) - 2)

    def kernel(self, layer: str) -> Any:
        raise NotImplementedError

    def capture(self, batch: np.ndarray, layers: Sequence[str], *, on_activation: Any = None,
                train_mode: bool = False) -> CaptureResult:
        result = CaptureResult()
        rng = np.random.default_rng(0)
        for name in layers:
            data = rng.standard_normal(self.shape, dtype=np.float32)
            result.shapes[name] = data.shape
            if on_activation is not None:
                on_activation(name, data)
            else:
                result.activations[name] = data
            del data
        return result


def traced_peak_of_export(layers: int, shape: tuple[int, ...], out: Path) -> int:
    scope = Scope(NumpyModel(layers, shape))
    image = np.zeros((1, 1, *shape[2:]), dtype=np.float32)
    tracemalloc.start()
    try:
        scope.save_activations(image, out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_streamed_export_memory_does_not_grow_with_the_number_of_layers(tmp_path: Path) -> None:
    shape = (1, 16, 128, 128)  # 1 MiB per activation
    size = int(np.prod(shape)) * 4
    peak4 = traced_peak_of_export(4, shape, tmp_path / "four")
    peak16 = traced_peak_of_export(16, shape, tmp_path / "sixteen")
    assert len(list((tmp_path / "sixteen").glob("*.png"))) == 16
    # holding every activation would add at least 12 MiB for the 12 extra layers; the bounded queue
    # allows a few activations in flight whatever the layer count (how many depends on timing)
    assert peak16 < peak4 + 8 * size


def test_streamed_volumes_are_never_held_by_queued_jobs(tmp_path: Path) -> None:
    shape = (1, 4, 48, 48, 48)  # 1.7 MiB per volume; a grid only reads three slices
    size = int(np.prod(shape)) * 4
    peak4 = traced_peak_of_export(4, shape, tmp_path / "four")
    peak16 = traced_peak_of_export(16, shape, tmp_path / "sixteen")
    assert len(list((tmp_path / "sixteen").glob("*.png"))) == 16
    assert peak16 < peak4 + size
    assert peak16 < 3 * size


def test_streamed_export_of_a_torch_model_keeps_traced_memory_bounded(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    def model(layers: int) -> Any:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1),
                                   *[torch.nn.Conv2d(16, 16, 3, padding=1) for _ in range(layers - 1)]).eval()

    image = np.random.default_rng(0).standard_normal((1, 1, 96, 96), dtype=np.float32)
    peaks = {}
    for layers in (4, 16):
        scope = Scope(model(layers))
        tracemalloc.start()
        try:
            scope.save_activations(image, tmp_path / str(layers))
            peaks[layers] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(list((tmp_path / "16").glob("*.png"))) == 16
    assert peaks[16] < 1.5 * peaks[4] + 2 * MIB


def test_output_folder_bounds_the_bytes_held_by_queued_jobs(tmp_path: Path) -> None:
    running = []
    most = [0]
    lock = threading.Lock()

    def job() -> Picture:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        time.sleep(0.02)
        with lock:
            running.pop()
        return Picture(np.zeros((2, 2, 3), np.uint8))

    with OutputDir(tmp_path, workers=4, max_pending=8, max_pending_bytes=100) as folder:
        for i in range(6):
            folder.add_rendered(f"big{i}.png", job, nbytes=80)  # two never fit together
    assert most[0] == 1
    assert len(list(tmp_path.glob("big*.png"))) == 6


# -- the PNG encoder -----------------------------------------------------------------------------


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (37, 41), (3000, 701)])
@pytest.mark.parametrize("channels", [0, 3, 4])
def test_png_encoder_round_trips_exactly(shape: tuple[int, int], channels: int) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, shape + ((channels,) if channels else ()), dtype=np.uint8)
    upscaled = np.repeat(np.repeat(pixels, 3, axis=0), 2, axis=1)  # repeated rows use the Up filter
    for image in (pixels, upscaled, np.asfortranarray(pixels), np.zeros_like(pixels)):
        assert np.array_equal(decode(encode_png(image)), image)


def test_png_encoder_writes_a_valid_zlib_stream_at_every_level() -> None:
    image = np.repeat(np.random.default_rng(2).integers(0, 256, (20, 9, 3), dtype=np.uint8), 4, axis=0)
    for level in range(10):
        data = encode_png(image, level)
        start = data.index(b"IDAT")
        length = int.from_bytes(data[start - 4 : start], "big")
        raw = zlib.decompress(data[start + 4 : start + 4 + length])  # checks the Adler-32 too
        assert len(raw) == image.shape[0] * (image.shape[1] * 3 + 1)
        assert np.array_equal(decode(data), image)


@pytest.mark.parametrize("backend", ["isal", "zlib"])
def test_png_encoder_round_trips_with_either_deflate(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from convscope.render import picture

    if backend == "isal":
        pytest.importorskip("isal")
        assert picture._isal_zlib() is not None
    else:
        monkeypatch.setattr(picture, "_isal_zlib", lambda: None)
    rng = np.random.default_rng(3)
    image = np.repeat(rng.integers(0, 256, (300, 257, 3), dtype=np.uint8), 2, axis=0)
    for level in (1, 2, 3, 6):
        data = encode_png(image, level)
        assert np.array_equal(decode(data), image)
    kind = type(picture._compressor(1)).__module__
    assert ("isal" in kind) == (backend == "isal")


def test_png_encoder_refuses_what_png_cannot_hold() -> None:
    with pytest.raises(TypeError, match="uint8"):
        encode_png(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(TypeError, match="shape"):
        encode_png(np.zeros((2, 2, 5), np.uint8))


# -- a CPU forward pass and the rendering threads take turns -------------------------------------


def _timeline_job(events: list[str], name: str, lock: threading.Lock) -> Any:
    def job() -> Picture:
        with lock:
            events.append(f"start {name}")
        time.sleep(0.01)
        return Picture(np.zeros((2, 2, 3), np.uint8))

    return job


def test_interleaved_jobs_wait_while_the_producer_runs(tmp_path: Path) -> None:
    events: list[str] = []
    lock = threading.Lock()
    with OutputDir(tmp_path, workers=2, max_pending_bytes=1000, interleave=True) as folder:
        for i in range(3):
            folder.add_rendered(f"a{i}.png", _timeline_job(events, f"a{i}", lock), nbytes=100)
        time.sleep(0.1)  # the producer's own work: nothing may start meanwhile
        with lock:
            events.append("producer done")
        folder.run_queued()
    assert events[0] == "producer done"
    assert sorted(events[1:]) == ["start a0", "start a1", "start a2"]
    assert sorted(p.name for p in tmp_path.glob("a*.png")) == ["a0.png", "a1.png", "a2.png"]


def test_a_full_interleaved_queue_is_drained_before_the_producer_goes_on(tmp_path: Path) -> None:
    events: list[str] = []
    lock = threading.Lock()
    with OutputDir(tmp_path, workers=2, max_pending_bytes=250, interleave=True) as folder:
        for i in range(5):
            folder.add_rendered(f"b{i}.png", _timeline_job(events, f"b{i}", lock), nbytes=100)
            with lock:
                events.append(f"queued b{i}")
    # two fit (200 <= 250); the third waits until both are drawn, and so on
    assert events.index("start b0") < events.index("queued b2")
    assert events.index("start b1") < events.index("queued b2")
    assert events.index("queued b2") < events.index("start b2")
    assert events.index("start b2") < events.index("queued b4") < events.index("start b4")
    assert len(list(tmp_path.glob("b*.png"))) == 5


def test_an_interleaved_run_that_fails_leaves_nothing_and_does_not_hang(tmp_path: Path) -> None:
    events: list[str] = []
    lock = threading.Lock()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with OutputDir(tmp_path / "out", workers=2, max_pending_bytes=10_000, interleave=True) as folder:
            for i in range(4):
                folder.add_rendered(f"c{i}.png", _timeline_job(events, f"c{i}", lock), nbytes=100)
            raise KeyboardInterrupt
    assert time.perf_counter() - started < 5
    assert events == []  # jobs that waited for their turn never drew
    assert not (tmp_path / "out").exists()


def test_activations_take_turns_with_a_cpu_forward_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``write_activations`` interleaves on a CPU torch model, and its files equal those of drawing
    beside the forward pass (an adapter that does not say where it computes)."""
    torch = pytest.importorskip("torch")
    import convscope as cs
    from convscope import export
    from convscope.io import output

    model = torch.nn.Sequential(*[torch.nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1) for i in range(4)]).eval()
    image = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32)
    modes: list[bool] = []
    original = output.OutputDir.__init__

    def recording(self: Any, *args: Any, **kwargs: Any) -> None:
        modes.append(bool(kwargs.get("interleave")))
        original(self, *args, **kwargs)

    monkeypatch.setattr(output.OutputDir, "__init__", recording)
    scope = cs.Scope(model)
    scope.save_activations(image, tmp_path / "turns")
    monkeypatch.setattr(export, "_forward_on_cpu", lambda scope: False)
    scope.save_activations(image, tmp_path / "beside")
    assert modes == [True, False]
    for png in sorted((tmp_path / "beside").glob("*.png")):
        assert (tmp_path / "turns" / png.name).read_bytes() == png.read_bytes()
    assert len(list((tmp_path / "turns").glob("*.png"))) == 4


def test_a_drawing_error_in_the_forward_pass_surfaces_as_itself() -> None:
    from convscope.export import _drawn_now

    def broken() -> Any:
        raise ZeroDivisionError("drawing failed")

    job = _drawn_now(broken)
    with pytest.raises(ZeroDivisionError, match="drawing failed"):
        job()
