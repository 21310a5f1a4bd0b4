"""One progress bar per command, total known from the start, ending at 100% (issue 9)."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch.nn as nn

import convscope as cs
from convscope import progress as progress_mod
from convscope.progress import Progress


class _Deep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(7)])

    def forward(self, x):
        return self.layers(x)


class _Err:
    def __init__(self, capsys):
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def stderr(monkeypatch, capsys):
    monkeypatch.setattr(progress_mod, "DELAY", 0.0)
    return _Err(capsys)


def _states(text: str) -> list[str]:
    return [part for part in re.split(r"[\r\n]", text) if "convscope" in part]


def test_activations_show_one_bar_that_ends_at_100_percent(stderr, tmp_path):
    scope = cs.Scope(_Deep())
    scope.save_activations(np.zeros((3, 16, 16), np.float32), tmp_path / "a", progress=True)
    states = _states(stderr.getvalue())
    assert states, stderr.getvalue()
    assert {s.split(":")[0].strip() for s in states} == {"convscope activations"}  # one bar, one label
    assert all("/7" in s for s in states)  # its total (7 layers x 1 sample) known from the first draw
    assert "100%" in states[-1] and "7/7" in states[-1]


def test_kernels_bar(stderr, tmp_path):
    cs.Scope(_Deep()).save_kernels(tmp_path / "k", progress=True)
    states = _states(stderr.getvalue())
    assert states and all("/7" in s for s in states) and "7/7" in states[-1]


def test_report_bar_has_its_total_from_the_start(stderr, tmp_path):
    scope = cs.Scope(_Deep())
    scope.report([np.zeros((3, 16, 16), np.float32)], tmp_path / "r", progress=True, unet=False)
    states = _states(stderr.getvalue())
    totals = {re.search(r"/(\d+)", s).group(1) for s in states if re.search(r"/(\d+)", s)}
    assert len(totals) == 1, states  # never a total that grows
    assert "100%" in states[-1]


def test_no_bar_when_stderr_is_not_a_terminal(stderr, tmp_path):
    cs.Scope(_Deep()).save_activations(np.zeros((3, 16, 16), np.float32), tmp_path / "a")
    assert stderr.getvalue() == ""


def test_jupyter_without_widgets_gets_no_bar(monkeypatch, stderr):
    monkeypatch.setattr(progress_mod, "in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails
    bar = Progress(5, "convscope test", enabled=True)
    assert not bar.shown
    bar.finish()
    assert stderr.getvalue() == ""


def test_progress_counts_clamp_and_finish():
    bar = Progress(3, "x", enabled=False)
    bar.advance(2)
    bar.advance(5)
    assert bar.done == 3
    with Progress(4, "x", enabled=False) as other:
        other.advance()
    assert other.done == 4  # a completed block ends at 100%
