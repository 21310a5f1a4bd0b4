"""The bundled demo models: architecture, shipped weights, and what they learned.

Quality tests use data seeds never used by ``scripts/train_demo.py`` (it trains on seeds
1000-1005 / 1500-1507 and evaluates on 7).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from convscope.demo import DEMO_NAMES, build_demo_model, demo_sample, demo_weights_path, load_demo  # noqa: E402
from convscope.demo.data import CLASS_NAMES, make_segmentation, make_shapes_classification  # noqa: E402
from convscope.demo.models import DemoUNet  # noqa: E402
from convscope.demo.quality import kernel_structure_score, mean_dice  # noqa: E402

TEST_SEED = 20240611  # not used in training


@pytest.fixture(scope="module")
def cnn():
    return load_demo("cnn")


@pytest.fixture(scope="module")
def unet():
    return load_demo("unet")


@pytest.mark.parametrize("size", [64, 96])
def test_unet_output_matches_input_size(size: int) -> None:
    with torch.no_grad():
        out = DemoUNet().eval()(torch.zeros(2, 1, size, size))
    assert tuple(out.shape) == (2, 1, size, size)


def test_unet_has_the_documented_layers() -> None:
    names = dict(DemoUNet().named_modules())
    for name in ("enc1.conv", "enc3.relu2", "pool3", "bottleneck.conv2", "up3", "dec3.bn", "up1", "dec1.conv2", "head"):
        assert name in names, name
    assert names["enc1.relu"].inplace and names["dec2.relu2"].inplace


def test_cnn_stem_is_a_5x5_rgb_conv(cnn) -> None:
    conv = dict(cnn.model.named_modules())["stem.conv"]
    assert tuple(conv.weight.shape[1:]) == (3, 5, 5)


def test_load_demo_returns_float32_eval_models(cnn, unet) -> None:
    for demo in (cnn, unet):
        assert not demo.model.training
        assert all(p.dtype == torch.float32 for p in demo.model.parameters())


def test_load_demo_metadata(cnn, unet) -> None:
    assert (cnn.input_shape, cnn.task, cnn.class_names) == ((1, 3, 64, 64), "classification", CLASS_NAMES)
    assert (unet.input_shape, unet.task) == ((1, 1, 64, 64), "segmentation")


def test_demo_sample_matches_input_shape(cnn, unet) -> None:
    for demo in (cnn, unet):
        x = demo_sample(demo.name, seed=1)
        assert (1, *x.shape) == demo.input_shape and x.dtype == np.float32


def test_load_demo_unknown_name_lists_the_demos() -> None:
    with pytest.raises(ValueError, match=r"unknown demo model 'resnet'.*'cnn', 'unet'"):
        load_demo("resnet")


def test_shipped_weights_total_under_2_mb_and_are_float16() -> None:
    from safetensors.numpy import load as load_np

    total = 0
    for name in DEMO_NAMES:
        blob = demo_weights_path(name).read_bytes()
        total += len(blob)
        dtypes = {str(v.dtype) for v in load_np(blob).values()}
        assert dtypes <= {"float16", "int64"}, dtypes
    assert total < 2 * 1024 * 1024


def test_cnn_accuracy_on_fresh_data(cnn) -> None:
    x, y = make_shapes_classification(256, seed=TEST_SEED)
    with torch.no_grad():
        pred = cnn.model(torch.from_numpy(x)).argmax(1).numpy()
    assert (pred == y).mean() >= 0.95


def test_unet_dice_on_fresh_data(unet) -> None:
    x, m = make_segmentation(128, seed=TEST_SEED)
    with torch.no_grad():
        logits = unet.model(torch.from_numpy(x)).numpy()
    assert mean_dice(logits > 0, m > 0.5) >= 0.85


def test_cnn_stem_kernels_are_more_structured_than_random_init(cnn) -> None:
    # Default-init scores over 200 seeds: mean -0.041, sd 0.024, max +0.038; shipped: +0.65.
    random_scores = []
    for seed in range(5):
        torch.manual_seed(seed)
        random_scores.append(kernel_structure_score(build_demo_model("cnn").stem.conv.weight.detach().numpy()))
    trained = kernel_structure_score(cnn.model.stem.conv.weight.detach().numpy())
    assert trained > max(random_scores) + 0.4
