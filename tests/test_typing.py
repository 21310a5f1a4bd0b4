"""The public API's static types, checked with mypy the way a user's code sees them.

``make test`` type-checks the package itself (``mypy --config-file pyproject.toml``); these tests check
that what ``Scope`` returns has a concrete type (not ``Any``) at the call sites users write, including
the one-vs-many overloads, and that the check can fail.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is in the [test] extra")

ROOT = Path(__file__).resolve().parents[1]

USAGE = """
from __future__ import annotations

from pathlib import Path

import numpy as np
from typing_extensions import assert_type

import convscope as cs
from convscope.cam import CamResult, CamSet
from convscope.core.activations import Activation, ActivationSet
from convscope.core.kernels import KernelBank
from convscope.scan.result import ScanResult
from convscope.unet_flow import UNetFlow


def usage(image: np.ndarray) -> None:
    scope = cs.load("demo:unet")
    assert_type(scope, cs.Scope)
    assert_type(scope.kernels(), dict[str, KernelBank])
    assert_type(scope.kernels(["enc1.conv", "enc2.conv"]), dict[str, KernelBank])
    assert_type(scope.kernels("enc1.conv"), KernelBank | dict[str, KernelBank])
    acts = scope.activations(image)
    assert_type(acts, ActivationSet)
    assert_type(acts["enc1.conv"], Activation)
    assert_type(acts.input_display, np.ndarray | None)
    assert_type(scope.unet(image), UNetFlow)
    assert_type(scope.cam(image), CamResult | CamSet)
    assert_type(scope.cam(image, as_set=True), CamSet)
    assert_type(scope.scan(["data/"]), ScanResult)
    assert_type(scope.save_kernels("out"), Path)
    assert_type(scope.save_activations(image, "out"), Path)
    assert_type(scope.report([image], "out"), Path)
    assert_type(scope.select("enc*"), list[str])
"""


def _errors_in(tmp_path: Path, source: str) -> list[str]:
    """mypy's error lines for ``source`` (a user's file), with the project's settings and cache."""
    path = tmp_path / "usage.py"
    path.write_text(textwrap.dedent(source))
    stdout, stderr, _ = mypy_api.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"),
        "--no-error-summary", str(path),
    ])
    assert "error: " not in stderr, stderr
    # only the user's file: the package's own errors are `make test`'s mypy run
    return [line for line in stdout.splitlines() if line.startswith(str(path)) and ": error:" in line]


def test_scope_methods_have_concrete_return_types(tmp_path):
    assert _errors_in(tmp_path, USAGE) == []


def test_a_wrong_type_is_reported(tmp_path):
    # the control: the check above can fail (a list of names is many banks, never one)
    wrong = USAGE + "\n    assert_type(scope.kernels(['enc1.conv']), KernelBank)\n"
    errors = _errors_in(tmp_path, wrong)
    assert len(errors) == 1, errors
    assert '"dict[str, KernelBank]", not "KernelBank"' in errors[0] and "[assert-type]" in errors[0]
