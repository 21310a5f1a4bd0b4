"""The static report of a classifier: the top-5 predictions and the Grad-CAM of the top-1 class per input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import convscope as cs
from tests.report.nets import rgb_image


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 9)).eval()


@pytest.fixture(scope="module")
def classifier_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, cs.Scope, list[np.ndarray]]:
    scope = cs.Scope(_classifier())
    images = [rgb_image(0), rgb_image(1)]
    index = scope.report(images, tmp_path_factory.mktemp("cls-report"), progress=False)
    return Path(index), scope, images


def test_report_lists_top5_and_the_top1_cam_per_input(classifier_report: tuple[Path, cs.Scope, list[np.ndarray]]) -> None:
    index, scope, images = classifier_report
    folder = index.parent
    data = json.loads((folder / "report.json").read_text())
    predictions = data["predictions"]
    assert len(predictions) == 2
    for view, image in zip(predictions, images):
        logits = scope.activations(image).output[0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)[:5]
        assert [row["index"] for row in view["top"]] == order.tolist() and view["softmax"] is True
        np.testing.assert_allclose([row["probability"] for row in view["top"]], probs[order], atol=1e-5)
        assert view["cam_class"] == int(order[0]) and view["cam_layer"] == "2" and view["cam_method"] == "gradcam"
        # the picture is the library's own overlay of the top-1 CAM
        expected = scope.cam(image, target=cs.targets.classification(cls=int(order[0]))).overlay().pixels
        got = np.asarray(Image.open(folder / view["cam_rel"]).convert("RGB"))
        np.testing.assert_array_equal(got, expected)
    html = index.read_text()
    assert 'id="predictions"' in html and 'href="#predictions"' in html
    assert len(re.findall(r'<img src="cam/[^"]+\.png"', html)) == 2
    assert html.count(f"class {predictions[0]['top'][0]['index']}: ") >= 1


def test_unet_report_has_no_classifier_section(tmp_path: Path) -> None:
    from tests.report.nets import small_unet, unet_image

    index = cs.Scope(small_unet()).report([unet_image(0)], tmp_path / "r", progress=False, top=4)
    assert 'id="predictions"' not in Path(index).read_text()
    assert "predictions" not in json.loads((Path(index).parent / "report.json").read_text()) or \
        json.loads((Path(index).parent / "report.json").read_text())["predictions"] == []
