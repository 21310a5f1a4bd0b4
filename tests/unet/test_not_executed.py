"""Nothing omitted silently: a selected layer that did not run on this input is listed as
"not executed for this input" by the API, in the manifest and on the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convscope import Scope
from convscope.core.activations import NOT_EXECUTED
from convscope.errors import LayerNotFoundError

torch = pytest.importorskip("torch")

from . import unet_zoo as Z  # noqa: E402

X = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)


def test_api_lists_layers_not_executed_for_this_input() -> None:
    acts = Scope(Z.AuxHeadNet().eval()).activations(X)
    assert list(acts) == ["conv1", "conv2"]
    assert acts.not_executed == ("aux", "unused")
    with pytest.raises(LayerNotFoundError, match=f"'aux' was selected but {NOT_EXECUTED}"):
        acts["aux"]
    assert NOT_EXECUTED in repr(acts)


def test_training_mode_runs_the_training_branch() -> None:
    acts = Scope(Z.AuxHeadNet().eval()).activations(X, train=True)
    assert "aux" in acts and acts.not_executed == ("unused",)


def test_exact_selection_of_a_layer_that_did_not_run_is_not_an_empty_set() -> None:
    acts = Scope(Z.AuxHeadNet().eval()).activations(X, layers=["unused"])
    assert len(acts) == 0 and acts.not_executed == ("unused",)


def test_manifest_and_command_line_list_them(tmp_path, capsys) -> None:
    from convscope.cli.main import main

    np.save(tmp_path / "x.npy", np.moveaxis(X[0], 0, -1))  # (H, W, C): read in the model's layout
    out = tmp_path / "acts"
    code = 0
    try:
        main(["activations", "tests.unet.unet_zoo:AuxHeadNet", str(tmp_path / "x.npy"), "--out", str(out)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    text = capsys.readouterr().out
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["not_executed"] == {"reason": NOT_EXECUTED, "layers": ["aux", "unused"]}
    assert f"2 selected layer(s) {NOT_EXECUTED}: aux, unused" in text
    assert {f["layer"] for f in manifest["files"]} == {"conv1", "conv2"}
