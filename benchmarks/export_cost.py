"""Cost of ``convscope activations`` over the bare forward pass as the input grows (issue 9).

ResNet-50 (random weights, seed 0), one 1x3xSxS input, every conv layer. Each way runs in its own
process, timed from spawn to exit:

  bare       import torch, build the model, one forward pass
  cli        ``python -m convscope activations benchmarks.models:resnet50 input.npy -o OUT``
  cli-full   the same with ``--full-resolution`` (no grid cap)
  cli-svg    the same with ``--format png,svg``

    .venv/bin/python benchmarks/export_cost.py [--sizes 224,448,896] [--ways bare,cli] [--repeats 1]

Prints wall and CPU seconds, the cli/bare ratios and the bytes written. ``--src DIR`` runs another checkout's
source (e.g. the previous release) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BARE = (
    "import sys, numpy as np, torch\n"
    "from benchmarks.models import resnet50\n"
    "torch.manual_seed(0)\n"
    "m = resnet50().eval()\n"
    "x = torch.from_numpy(np.load(sys.argv[1]))\n"
    "with torch.no_grad():\n"
    "    m(x)\n"
)


def _run(cmd: list[str], src: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, from ``wait4``: steadier on a loaded machine)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), str(ROOT)]), KERAS_BACKEND="torch")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="224,448,896")
    parser.add_argument("--ways", default="bare,cli")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "export_cost")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        data = args.out / f"input{size}.npy"
        np.save(data, np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32))
        result: dict[str, float | int] = {"size": size}
        ways = args.ways.split(",")
        commands = {}
        for way in ways:
            out = args.out / f"{way}{size}"
            if way == "bare":
                cmd = [sys.executable, "-c", BARE, str(data)]
            else:
                cmd = [sys.executable, "-m", "convscope", "activations", "benchmarks.models:resnet50", str(data),
                       "-o", str(out)]
                cmd += {"cli": [], "cli-full": ["--full-resolution"], "cli-svg": ["--format", "png,svg"]}[way]
            commands[way] = (cmd, out)
        times: dict[str, list[float]] = {way: [] for way in ways}
        cpus: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeats):  # the ways alternate, so a drift in the machine's speed hits all alike
            for way in ways:
                cmd, out = commands[way]
                if out.exists():
                    for p in out.rglob("*"):
                        if p.is_file():
                            p.unlink()
                wall, cpu = _run(cmd, args.src)
                times[way].append(wall)
                cpus[way].append(cpu)
        for way in ways:
            result[f"{way}_s"] = round(statistics.median(times[way]), 2)
            result[f"{way}_cpu_s"] = round(statistics.median(cpus[way]), 2)
            if way != "bare":
                out = commands[way][1]
                result[f"{way}_mb"] = round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6, 1)
        for way in ways:
            if way != "bare" and "bare_s" in result:
                # the median of the ratios of runs made one after the other (steadier than a ratio of medians)
                result[f"{way}/bare"] = round(statistics.median(w / b for w, b in zip(times[way], times["bare"])), 2)
                result[f"{way}/bare_cpu"] = round(statistics.median(c / b for c, b in zip(cpus[way], cpus["bare"])), 2)
        rows.append(result)
        print(json.dumps(result), flush=True)
    (args.out / "results.json").write_text(json.dumps({"load": os.getloadavg(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
