"""convscope benchmark suite (``make bench``): every task three ways, one table.

    .venv/bin/python benchmarks/run.py                 # all tasks, 5 repeats, the naive way once in full
    .venv/bin/python benchmarks/run.py --quick         # 1 repeat, naive way capped at 20 s and extrapolated
    .venv/bin/python benchmarks/run.py --tasks T1,T3 --repeats 3 --naive-budget 60

Ways (each run in a fresh subprocess, so imports, start-up and memory count; wall time is the
whole process, from spawn to exit; peak memory is the child's peak RSS from ``wait4``):
  convscope  the Python API (``Scope(model).save_activations`` / ``save_kernels``)
  cli        ``python -m convscope activations ...`` (T1 only)
  naive      the founding document's way: a forward pass per layer, a matplotlib subplot per
             channel, savefig (run once; with --naive-budget extrapolated, and marked so)
  floor      one forward pass, numpy min-max + tiling, Pillow PNG (level 1), the same picture
             sizes as convscope; single-threaded
  floor1x    the floor at one pixel per value (no upscaling) (T1, T2)
  bare       import torch + build the model + one forward pass (reference; T3: no forward pass)
  bare1t     bare with torch on one thread (convscope's streamed forward pass on 2 cores uses
             n - min(render threads, n // 2) torch threads, i.e. 1 of 2)

Tasks (random weights, seed 0, models in benchmarks/models.py):
  T1 ResNet-50, 1x3x224x224: one PNG grid of all channels per conv layer (53 layers)
  T2 2D U-Net (5 levels, 32..512), 1x1x256x256: the same (+ the U-Net flow figure when available)
  T3 all kernels of T1's model
  T4 3D U-Net (16..256), 1x1x96x96x96: all conv activations as slices, streaming
  T5 ``convscope serve`` on T1's model: layer-grid request latency (see serve_bench.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
for _entry in (str(ROOT / "src"), str(ROOT)):
    if _entry not in sys.path:
        sys.path.insert(0, _entry)

TASKS: dict[str, dict] = {
    "T1": {"title": "ResNet-50 activations, 1x3x224x224, a grid per conv layer",
           "ways": ["bare", "bare1t", "floor1x", "floor", "convscope", "cli", "naive"]},
    "T2": {"title": "2D U-Net (32..512) activations, 1x1x256x256, a grid per conv layer",
           "ways": ["bare", "bare1t", "floor1x", "floor", "convscope", "naive"]},
    "T3": {"title": "ResNet-50 kernels, a grid per conv layer",
           "ways": ["bare", "floor", "convscope", "naive"],
           # one subplot per 3x3 kernel is ~1.3 million subplots: always measured on a budget
           "naive_budget": 60.0},
    "T4": {"title": "3D U-Net (16..256) activations, 1x1x96^3, slices, streaming",
           "ways": ["bare", "bare1t", "floor", "convscope", "naive"]},
    "T5": {"title": "convscope serve on ResNet-50: layer-grid request latency", "ways": []},
}
TARGET_FLOOR = 1.5  # T1-T3: convscope within 1.5x of the floor


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(ROOT / "src"), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def spawn(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; wall seconds (spawn to exit) and the child's peak RSS (MiB) from ``wait4``."""
    with open(log, "wb") as handle:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{tail}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024.0}


def way_command(task: str, way: str, out: Path, result: Path, size: str, budget: float | None) -> list[str]:
    if way == "cli":
        spec = "benchmarks.models:resnet50"
        cmd = [PY, "-m", "convscope", "activations", spec, str(out.parent / "input.npy"), "-o", str(out)]
        if size == "tiny":
            cmd += ["--kwargs", json.dumps({"width": 4})]
        return cmd
    cmd = [PY, str(ROOT / "benchmarks" / "worker.py"), task, way, "--out", str(out), "--result", str(result), "--size", size]
    if budget is not None and way == "naive":
        cmd += ["--budget", str(budget)]
    return cmd


def run_once(task: str, way: str, base: Path, size: str, budget: float | None) -> dict:
    out = base / task / way
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result = base / task / f"{way}.json"
    result.unlink(missing_ok=True)
    measured = spawn(way_command(task, way, out, result, size, budget), base / task / f"{way}.log")
    info = json.loads(result.read_text()) if result.exists() else {}
    if way == "cli":
        files = [p for p in out.rglob("*") if p.is_file()]
        info = {"files": sum(1 for p in files if p.suffix == ".png"), "bytes": sum(p.stat().st_size for p in files)}
    if info.get("extrapolated"):
        measured["measured_wall_s"] = measured["wall_s"]
        measured["wall_s"] += info["extrapolated_s"]
    return {**measured, **info}


def largest_activation_mib(manifest: Path) -> float | None:
    """Largest float32 activation among the layers in ``manifest.json`` (MiB)."""
    if not manifest.exists():
        return None
    sizes = []
    for entry in json.loads(manifest.read_text()).get("files", []):
        shape = entry.get("shape")
        if entry.get("kind") == "activations" and shape:
            count = 1
            for s in shape:
                count *= int(s)
            sizes.append(count * 4 / 2**20)
    return max(sizes) if sizes else None


def run_task(task: str, args: argparse.Namespace, base: Path) -> dict:
    spec = TASKS[task]
    if task == "T5":
        from benchmarks.serve_bench import run_serve_bench  # noqa: PLC0415

        return run_serve_bench(args, base)
    (base / task).mkdir(parents=True, exist_ok=True)
    if "cli" in spec["ways"]:
        import numpy as np  # noqa: PLC0415

        from benchmarks.worker import make_input  # noqa: PLC0415

        np.save(base / task / "input.npy", make_input(task, args.size))
    ways = [w for w in spec["ways"] if args.ways is None or w in args.ways]
    runs: dict[str, list[dict]] = {w: [] for w in ways}
    for rep in range(args.repeats):
        for way in ways:
            if way == "naive" and (rep > 0 or args.naive_budget == 0):
                continue
            budget = None
            if way == "naive":
                budget = args.naive_budget if args.naive_budget is not None else spec.get("naive_budget")
            runs[way].append(run_once(task, way, base, args.size, budget))
            last = runs[way][-1]
            note = " (extrapolated)" if last.get("extrapolated") else ""
            print(f"  {task} {way:<9} run {rep + 1}: {last['wall_s']:7.2f} s{note}  peak {last['peak_mib']:7.0f} MiB",
                  flush=True)
    summary: dict = {"task": task, "title": spec["title"], "ways": {}}
    for way, items in runs.items():
        if not items:
            continue
        walls = [r["wall_s"] for r in items]
        summary["ways"][way] = {
            "wall_s": statistics.median(walls),
            "wall_min_s": min(walls),
            "wall_max_s": max(walls),
            "runs": len(items),
            "cpu_s": statistics.median(r["cpu_s"] for r in items),
            "peak_mib": statistics.median(r["peak_mib"] for r in items),
            "files": items[-1].get("files"),
            "out_mib": (items[-1].get("bytes") or 0) / 2**20,
            "phases": {k: statistics.median(r[k] for r in items) for k in ("import_s", "build_s", "work_s") if k in items[-1]},
            "extrapolated": bool(items[-1].get("extrapolated")),
            "naive": {k: items[-1][k] for k in ("layers_done", "layers_total", "subplots_done", "subplots_total",
                                                 "measured_s", "extrapolated_s") if k in items[-1]},
            "heavy_modules": items[-1].get("heavy_modules", []),
            "unet_flow": items[-1].get("unet_flow"),
        }
    if task == "T4":
        summary["largest_activation_mib"] = largest_activation_mib(base / task / "convscope" / "manifest.json")
    return summary


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def ratio(ways: dict, a: str, b: str) -> float | None:
    if a in ways and b in ways and ways[b]["wall_s"] > 0:
        return ways[a]["wall_s"] / ways[b]["wall_s"]
    return None


def fmt_s(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def targets(summary: dict) -> list[str]:
    ways = summary.get("ways", {})
    task = summary["task"]
    lines = []
    if task in ("T1", "T2", "T3"):
        r = ratio(ways, "convscope", "floor")
        if r is not None:
            lines.append(f"convscope/floor = {r:.2f} (target <= {TARGET_FLOOR}: {'met' if r <= TARGET_FLOOR else 'MISSED'}"
                         f"{'; below the floor' if r < 1 else ''})")
        r = ratio(ways, "convscope", "bare")
        r1 = ratio(ways, "convscope", "bare1t")
        if r is not None:
            lines.append(f"convscope/bare = {r:.2f}" + (f", convscope/bare1t = {r1:.2f}" if r1 is not None else "")
                         + " (the end goal is 1.0)")
        r = ratio(ways, "convscope", "naive")
        if r is not None:
            lines.append(f"convscope/naive = {r:.4f} ({1 / r:.0f}x faster)")
    if task == "T4" and "convscope" in ways and "bare" in ways:
        largest = summary.get("largest_activation_mib")
        if largest:
            limit = ways["bare"]["peak_mib"] + 2 * largest
            peak = ways["convscope"]["peak_mib"]
            lines.append(f"peak {peak:.0f} MiB vs forward alone {ways['bare']['peak_mib']:.0f} MiB + 2 x {largest:.0f} MiB "
                         f"= {limit:.0f} MiB ({'met' if peak <= limit else 'MISSED'}; "
                         f"convscope adds {peak - ways['bare']['peak_mib']:.0f} MiB = {(peak - ways['bare']['peak_mib']) / largest:.2f}"
                         f" x the largest activation)")
    return lines


def table(results: list[dict], meta: dict) -> str:
    head = (f"{'task':<4} {'way':<10} {'wall s':>9} {'min..max':>13} {'runs':>4} {'CPU s':>7} {'peak MiB':>9} {'PNGs':>5} {'out MiB':>8}"
            f" {'import+build':>12} {'work s':>8}  {'convscope/way':>13}")
    lines = [f"convscope benchmarks  {meta['when']}  {meta['machine']}",
             f"load average before: {meta['load_before']}  after: {meta['load_after']}  "
             f"(wall = median over repeats, whole process incl. start-up; CPU = user+sys of the process)", "", head, "-" * len(head)]
    for summary in results:
        ways = summary.get("ways", {})
        lines.append(f"{summary['task']}: {summary['title']}")
        if summary.get("note"):
            lines.append(f"     {summary['note']}")
        for way, w in ways.items():
            wall = fmt_s(w["wall_s"]) + ("*" if w.get("extrapolated") else "")
            spread = f"{fmt_s(w['wall_min_s'])}..{fmt_s(w['wall_max_s'])}" if w["runs"] > 1 else ""
            ph = w.get("phases", {})
            startup = f"{ph.get('import_s', 0) + ph.get('build_s', 0):.2f}" if ph else ""
            work = f"{ph['work_s']:.2f}" if "work_s" in ph else ""
            r = ratio(ways, "convscope", way)
            rel = "" if r is None or way == "convscope" else f"{r:.3f}"
            files = "" if w.get("files") is None else str(w["files"])
            cpu = "" if w.get("extrapolated") else f"{w['cpu_s']:.2f}"
            lines.append(f"{'':<4} {way:<10} {wall:>9} {spread:>13} {w['runs']:>4} {cpu:>7} {w['peak_mib']:>9.0f} {files:>5}"
                         f" {w['out_mib']:>8.1f} {startup:>12} {work:>8}  {rel:>13}")
            if w.get("extrapolated"):
                n = w["naive"]
                lines.append(f"{'':<16}* extrapolated: ran {n['layers_done']}/{n['layers_total']} layers "
                             f"({n['subplots_done']}/{n['subplots_total']} subplots) in {n['measured_s']:.0f} s, "
                             f"fitted time = a + b * subplots for the rest (+{fmt_s(n['extrapolated_s'])}"
                             f"{'' if n['extrapolated_s'] >= 3600 else ' s'})")
            if way == "convscope" and w.get("unet_flow"):
                lines.append(f"{'':<16}U-Net flow figure: {w['unet_flow']}")
            if way == "convscope" and w.get("heavy_modules"):
                lines.append(f"{'':<16}imported: {', '.join(w['heavy_modules'])}")
        for line in targets(summary):
            lines.append(f"     {line}")
        for line in summary.get("lines", []):
            lines.append(f"     {line}")
        lines.append("")
    return "\n".join(lines)


def machine() -> str:
    try:
        import torch  # noqa: PLC0415

        threads = f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        threads = ""
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}{threads}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="T1,T2,T3,T4,T5", help="comma-separated, e.g. T1,T3")
    parser.add_argument("--ways", default=None, help="only these ways, e.g. convscope,floor")
    parser.add_argument("--repeats", type=int, default=None, help="runs per way (median reported); default 5, --quick 1")
    parser.add_argument("--naive-budget", type=float, default=None,
                        help="seconds of naive work before extrapolating (default: in full, T3 60 s; 0 skips it)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, naive way capped at 20 s (extrapolated)")
    parser.add_argument("--size", default="full", choices=("full", "tiny"), help="tiny: the smoke-test models")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here (default OUT/results.json)")
    args = parser.parse_args(argv)
    args.tasks = [t.strip().upper() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    args.ways = None if args.ways is None else [w.strip() for w in args.ways.split(",")]
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.quick and args.naive_budget is None:
        args.naive_budget = 20.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = args.out
    base.mkdir(parents=True, exist_ok=True)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()), "repeats": args.repeats, "size": args.size}
    results = []
    for task in args.tasks:
        print(f"{task}: {TASKS[task]['title']}", flush=True)
        results.append(run_task(task, args, base))
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = table(results, meta)
    print()
    print(text)
    target = args.json or base / "results.json"
    target.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    (base / "results.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
