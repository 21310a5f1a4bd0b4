from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from convscope.errors import ImageInputError
from convscope.io.images import parse_normalize, parse_size, prepare_input, to_display_image


def test_png_rgb_file_becomes_nchw_float_in_unit_range(tmp_path):
    pixels = np.zeros((10, 12, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    Image.fromarray(pixels).save(tmp_path / "red.png")
    prepared = prepare_input(tmp_path / "red.png", channels=3)
    assert prepared.batch.shape == (1, 3, 10, 12) and prepared.batch.dtype == np.float32
    assert prepared.batch[0, 0].min() == 1.0 and prepared.batch[0, 1].max() == 0.0
    assert prepared.display.shape == (1, 10, 12, 3)


def test_rgb_image_to_grayscale_model_uses_luma(tmp_path):
    pixels = np.full((4, 4, 3), (255, 0, 0), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "red.png")
    prepared = prepare_input(tmp_path / "red.png", channels=1)
    assert prepared.batch.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(prepared.batch, 0.299, atol=1e-6)


def test_gray_image_to_rgb_model_is_repeated():
    prepared = prepare_input(np.full((5, 5), 0.25, dtype=np.float32), channels=3)
    assert prepared.batch.shape == (1, 3, 5, 5)
    np.testing.assert_array_equal(prepared.batch[0, 0], prepared.batch[0, 2])


def test_rgba_drops_alpha():
    prepared = prepare_input(np.zeros((6, 6, 4), dtype=np.uint8), channels=3)
    assert prepared.batch.shape == (1, 3, 6, 6)


def test_channel_mismatch_error_names_both_counts():
    with pytest.raises(ImageInputError, match="takes 3 channels but the image has 2"):
        prepare_input(np.zeros((2, 8, 8), dtype=np.float32), channels=3)


def test_npy_file_and_batch(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 1, 8, 8), dtype=np.float32))
    prepared = prepare_input(tmp_path / "x.npy", channels=1)
    assert prepared.batch.shape == (2, 1, 8, 8)


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageInputError, match="cannot read obj.npy"):
        prepare_input(tmp_path / "obj.npy", channels=1)


def test_resize_to_size():
    prepared = prepare_input(np.random.rand(20, 30).astype(np.float32), channels=1, size="10x15")
    assert prepared.batch.shape == (1, 1, 10, 15)


def test_expected_size_mismatch_suggests_size_flag():
    with pytest.raises(ImageInputError, match="pass --size 32x32"):
        prepare_input(np.zeros((16, 16), dtype=np.float32), channels=1, expected_size=(32, 32))


def test_imagenet_normalisation():
    prepared = prepare_input(np.full((3, 2, 2), 0.485, dtype=np.float32), channels=3, normalize="imagenet")
    np.testing.assert_allclose(prepared.batch[0, 0], 0.0, atol=1e-6)


def test_custom_normalisation_per_channel():
    assert parse_normalize("0.5,0.25", 3)[0].tolist() == [0.5, 0.5, 0.5]
    mean, std = parse_normalize("0.1:0.2:0.3,1:2:3", 3)
    assert std.tolist() == [1, 2, 3]
    with pytest.raises(ImageInputError, match="MEAN,STD"):
        parse_normalize("half", 3)


def test_parse_size_forms():
    assert parse_size(64) == (64, 64)
    assert parse_size("64x96") == (64, 96)
    assert parse_size("8x16x16") == (8, 16, 16)
    with pytest.raises(ImageInputError):
        parse_size("big")


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ImageInputError, match="not found"):
        prepare_input(tmp_path / "nope.png", channels=1)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageInputError, match="cannot read broken.png"):
        prepare_input(tmp_path / "broken.png", channels=1)


def test_volume_input_for_3d_models():
    prepared = prepare_input(np.random.rand(8, 16, 16).astype(np.float32), channels=1, spatial_dims=3)
    assert prepared.batch.shape == (1, 1, 8, 16, 16)
    assert prepared.display.shape == (1, 16, 16, 3)


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    prepared = prepare_input(torch.ones(1, 3, 4, 4, dtype=torch.bfloat16), channels=3)
    assert prepared.batch.dtype == np.float32 and prepared.batch.shape == (1, 3, 4, 4)


def test_pil_image_input_and_display():
    img = Image.fromarray(np.full((4, 5), 128, dtype=np.uint8))
    assert prepare_input(img, channels=1).batch.shape == (1, 1, 4, 5)
    assert to_display_image(img).shape == (4, 5, 3)


def test_channels_last_batch_is_recognised_from_the_model_channel_count():
    batch = np.random.default_rng(0).random((2, 16, 12, 3)).astype(np.float32)  # Keras-style NHWC
    prepared = prepare_input(batch, channels=3)
    assert prepared.batch.shape == (2, 3, 16, 12)
    np.testing.assert_array_equal(prepared.batch[1, 2], batch[1, :, :, 2])


def test_channels_first_batch_stays_channels_first():
    batch = np.zeros((2, 3, 16, 3), dtype=np.float32)  # ambiguous last axis, but axis 1 matches
    assert prepare_input(batch, channels=3).batch.shape == (2, 3, 16, 3)
