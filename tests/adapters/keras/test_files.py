"""Loading .keras / .h5 files: safe mode by default, explicit trust for code, one clear line per failure."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import convscope  # noqa: E402
from convscope.adapters.keras_adapter import load_keras_file  # noqa: E402
from convscope.errors import ModelLoadError, UntrustedFileError  # noqa: E402

from .models import image, to_numpy  # noqa: E402


def plain_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="c2")(x))


def lambda_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 1, name="c1")(inputs)
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0, name="double")(x))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keras_files")
    model = plain_model()
    paths = {"keras": folder / "model.keras", "h5": folder / "model.h5", "weights": folder / "model.weights.h5",
             "lambda": folder / "lambda.keras"}
    model.save(paths["keras"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(paths["h5"])
    model.save_weights(paths["weights"])
    lambda_model().save(paths["lambda"])
    return paths


def assert_one_clean_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    exc = error.value
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)  # no chained traceback
    return message


def test_keras_file_loads_in_safe_mode(files):
    scope = convscope.load(files["keras"])
    assert scope.adapter.framework == "keras"
    assert scope.input_shape == (1, 3, 8, 8)
    assert scope.loaded.info["trusted"] is False
    np.testing.assert_array_equal(
        scope.kernels("c1").weights, to_numpy(plain_model().get_layer("c1").kernel).transpose(3, 2, 0, 1)
    )


def test_loaded_keras_file_gives_activations(files):
    acts = convscope.load(files["keras"]).activations(image(), ["c1", "c2"])
    assert acts["c1"].shape == (1, 4, 8, 8) and acts["c2"].shape == (1, 2, 8, 8)


def test_lambda_layer_is_refused_without_trust(files):
    with pytest.raises(UntrustedFileError) as error:
        convscope.load(files["lambda"])
    message = assert_one_clean_line(error)
    assert "Lambda" in message and "--trust" in message and "trust=True" in message


def test_lambda_layer_loads_with_explicit_trust(files):
    scope = convscope.load(files["lambda"], trust=True)
    acts = scope.activations(image(), ["c1", "double"])
    np.testing.assert_allclose(acts["double"].data, 2.0 * acts["c1"].data, rtol=1e-6)


def test_h5_full_model_is_refused_without_trust(files):
    with pytest.raises(UntrustedFileError) as error:
        convscope.load(files["h5"])
    message = assert_one_clean_line(error)
    assert "--trust" in message and ".keras" in message


def test_h5_full_model_loads_with_trust(files):
    scope = convscope.load(files["h5"], trust=True)
    assert scope.input_shape == (1, 3, 8, 8)
    assert scope.kernels("c2").shape == (2, 4, 1, 1)


def test_h5_weights_only_file_says_to_build_the_model(files):
    with pytest.raises(ModelLoadError) as error:
        load_keras_file(files["weights"], True)
    assert "load_weights" in assert_one_clean_line(error)


def test_truncated_keras_file(files, tmp_path):
    data = files["keras"].read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as error:
        convscope.load(path)
    assert "truncated" in assert_one_clean_line(error)


def test_corrupt_keras_file(files, tmp_path):
    data = bytearray(files["keras"].read_bytes())
    start = len(data) // 3
    data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    path = tmp_path / "bad.keras"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError) as error:
        convscope.load(path)
    assert "corrupt" in assert_one_clean_line(error)


def test_truncated_h5_file(files, tmp_path):
    data = files["h5"].read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as error:
        convscope.load(path, trust=True)
    assert "truncated or corrupt" in assert_one_clean_line(error)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.keras"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError) as error:
        load_keras_file(path, False)
    assert "empty" in assert_one_clean_line(error)
    with pytest.raises(ModelLoadError, match="empty"):
        convscope.load(path)


def test_text_file_named_keras(tmp_path):
    path = tmp_path / "notes.keras"
    path.write_text("not a model")
    with pytest.raises(ModelLoadError) as error:
        convscope.load(path)
    assert "not a .keras archive" in assert_one_clean_line(error)


def test_zip_without_keras_config(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelLoadError) as error:
        convscope.load(path)
    assert "config.json" in assert_one_clean_line(error)


def test_keras_archive_with_h5_extension_says_rename(files, tmp_path):
    path = tmp_path / "really_keras.h5"
    path.write_bytes(files["keras"].read_bytes())
    with pytest.raises(ModelLoadError) as error:
        convscope.load(path, trust=True)
    assert "rename it to really_keras.keras" in assert_one_clean_line(error)


def test_h5_file_with_keras_extension_is_not_loaded_behind_the_trust_check(files, tmp_path):
    path = tmp_path / "really_h5.keras"
    path.write_bytes(files["h5"].read_bytes())
    with pytest.raises(ModelLoadError) as error:
        convscope.load(path)
    assert not isinstance(error.value, UntrustedFileError) or "--trust" in str(error.value)
    assert "HDF5" in assert_one_clean_line(error)


def test_unknown_extension(files, tmp_path):
    path = tmp_path / "model.kears"
    path.write_bytes(files["keras"].read_bytes())
    with pytest.raises(ModelLoadError, match="unknown model file type"):
        convscope.load(path)
    with pytest.raises(ModelLoadError) as error:
        load_keras_file(path, False)
    assert ".keras" in assert_one_clean_line(error)
