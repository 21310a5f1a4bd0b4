"""Synthetic demo data: shapes, dtypes, ranges, determinism, labels and masks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convscope.demo.data import CLASS_NAMES, make_segmentation, make_shapes_classification, sample_image


def test_classification_shapes_dtypes_and_range() -> None:
    x, y = make_shapes_classification(10, seed=3)
    assert x.shape == (10, 3, 64, 64) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.shape == (10,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_classification_labels_are_balanced_over_all_classes() -> None:
    _, y = make_shapes_classification(64, seed=1)
    assert np.bincount(y, minlength=len(CLASS_NAMES)).tolist() == [16, 16, 16, 16]


def test_classification_is_deterministic_per_seed() -> None:
    a, la = make_shapes_classification(6, seed=5)
    b, lb = make_shapes_classification(6, seed=5)
    c, _ = make_shapes_classification(6, seed=6)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_classification_honours_size() -> None:
    x, _ = make_shapes_classification(2, size=32, seed=0)
    assert x.shape == (2, 3, 32, 32)


def test_segmentation_shapes_and_binary_masks() -> None:
    x, m = make_segmentation(8, seed=2)
    assert x.shape == (8, 1, 64, 64) and x.dtype == np.float32
    assert m.shape == (8, 1, 64, 64) and m.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(m).tolist()) <= {0.0, 1.0}


def test_segmentation_every_image_has_an_organ() -> None:
    _, m = make_segmentation(32, seed=4)
    assert (m.reshape(32, -1).sum(axis=1) >= 30).all()


def test_segmentation_organs_are_brighter_than_background() -> None:
    x, m = make_segmentation(16, seed=0)
    assert x[m > 0.5].mean() > x[m < 0.5].mean() + 0.3


def test_segmentation_is_deterministic_per_seed() -> None:
    a, ma = make_segmentation(3, seed=9)
    b, mb = make_segmentation(3, seed=9)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)


def test_sample_image_shapes_per_task() -> None:
    assert sample_image("classification", seed=1).shape == (3, 64, 64)
    assert sample_image("segmentation", seed=1).shape == (1, 64, 64)
    assert sample_image("unet").dtype == np.float32


def test_sample_image_unknown_task_names_the_choices() -> None:
    with pytest.raises(ValueError, match="'classification', 'segmentation'"):
        sample_image("detection")


def test_negative_n_is_rejected_with_a_fix() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        make_segmentation(-1)


def test_importing_convscope_demo_does_not_import_torch() -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import sys, convscope.demo, convscope.demo.data, convscope.demo.quality; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
