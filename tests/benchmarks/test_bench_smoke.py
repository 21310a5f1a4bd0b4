"""Smoke test of the benchmark suite (benchmarks/): every task and way once, at a tiny size, so the
scripts cannot rot. Timings are not checked: the benchmark is not a test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from benchmarks import run, worker  # noqa: E402
from benchmarks.serve_bench import server_available  # noqa: E402

WAYS = {
    "T1": ["bare", "bare1t", "floor1x", "floor", "convscope", "naive"],
    "T2": ["floor", "convscope", "naive"],
    "T3": ["bare", "floor", "convscope", "naive"],
    "T4": ["floor", "convscope", "naive"],
}


@pytest.mark.parametrize("task", sorted(WAYS))
def test_every_way_of_a_task_runs_at_tiny_size(task: str, tmp_path: Path) -> None:
    results = {}
    for way in WAYS[task]:
        results[way] = worker.run_way(task, way, tmp_path / way, size="tiny", budget=0.0)
    for way, result in results.items():
        assert result["task"] == task and result["way"] == way
        if way.startswith("bare"):
            assert result["files"] == 0
        elif way == "naive":
            assert result["layers_done"] >= 1
            assert result["extrapolated"] == (result["layers_done"] < result["layers_total"])
        else:
            assert result["files"] >= 1, way
    # convscope and the floor draw one grid per convolution
    assert results["convscope"]["files"] >= results["floor"]["files"]
    assert (tmp_path / "convscope" / "manifest.json").exists()


def test_runner_prints_one_table_with_ratios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--tasks", "T1", "--ways", "floor,convscope", "--repeats", "1", "--size", "tiny",
                     "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "convscope/floor" in text and "T1:" in text
    data = json.loads((tmp_path / "results.json").read_text())
    ways = data["results"][0]["ways"]
    assert set(ways) == {"floor", "convscope"}
    assert all(w["wall_s"] > 0 and w["peak_mib"] > 0 for w in ways.values())
    # the activations path imports no web framework, templates or pyplot
    assert ways["convscope"]["heavy_modules"] == []


def test_naive_extrapolation_is_labelled() -> None:
    from benchmarks.naive import run_layers

    items = [(f"l{i}", 10 * (i + 1)) for i in range(6)]
    done = []
    result = run_layers(items, lambda name: done.append(name) or 0, budget_s=0.0)
    assert result["layers_done"] == 3 and result["extrapolated"]
    assert result["subplots_total"] == sum(s for _, s in items)


@pytest.mark.skipif(not server_available(), reason="convscope.server is not there yet")
def test_serve_benchmark_runs_at_tiny_size(tmp_path: Path) -> None:
    import argparse

    from benchmarks.serve_bench import run_serve_bench

    summary = run_serve_bench(argparse.Namespace(size="tiny"), tmp_path)
    phases = summary["serve"]["phases"]
    assert [p["clients"] for p in phases] == [1, 2]
    assert all(p["cached"]["n"] > 0 and p["cached"]["p95_ms"] > 0 for p in phases)


def test_the_activations_cost_benchmark_pairs_its_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import export_cost

    assert export_cost.main(["--sizes", "32", "--ways", "bare,cli", "--repeats", "2", "--out", str(tmp_path)]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["size"] == 32 and row["bare_s"] > 0 and row["cli_s"] > 0
    assert row["cli/bare"] > 0 and row["cli/bare_cpu"] > 0  # medians of the paired ratios
    assert (tmp_path / "cli32" / "manifest.json").is_file()  # the CLI way really wrote its grids
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"][0]["size"] == 32
