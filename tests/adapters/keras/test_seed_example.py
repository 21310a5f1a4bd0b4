"""examples/seed_keras.py (the founding document's three examples) runs and writes its pictures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("keras")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "seed_keras.py"


def test_seed_example_writes_kernels_activations_and_unet(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("seed_keras", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("kernels_enc1_conv1.png", "activations_enc2_conv2.png", "unet/flow.png", "unet/level-0.png",
                 "unet/level-1.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    anatomy = json.loads((tmp_path / "unet" / "unet.json").read_text())
    assert [(s["from"], s["to"]) for s in anatomy["skips"]] == [("enc1_conv2", "skip1"), ("enc2_conv2", "skip2")]
    assert "2 skips" in capsys.readouterr().out
