"""Start-up cost of the ``convscope`` CLI before the forward pass (issue 9), in separate processes.

    .venv/bin/python benchmarks/startup.py [--repeats 5] [--src DIR]

Measures, each in a fresh process (median of ``--repeats``):

  version   ``convscope --version``: interpreter + the CLI's own imports + the parser, no torch
  parse     a usage error (``convscope kernels demo:cnn --bogus``): the same plus parsing every option
  torch     ``python -c "import torch"``: what any torch program pays, bare or not
  imports   ``-X importtime`` of ``convscope.cli.main``: self time by top-level package (ms)

``--src`` runs another checkout's ``src`` (e.g. the previous commit) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(ROOT)])
    env.setdefault("KERAS_BACKEND", "torch")
    return env


def _time(argv: list[str], env: dict[str, str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _importtime(env: dict[str, str]) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import convscope.cli.main"],
                            env=env, capture_output=True, text=True, check=False)
    by_package: collections.Counter[str] = collections.Counter()
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            by_package[match.group(2).split(".")[0]] += int(match.group(1))
    return {name: us / 1000 for name, us in by_package.most_common(8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    args = parser.parse_args()
    env = _env(args.src)
    py = sys.executable
    cli = [py, "-c", "import sys; from convscope.cli.main import main; main(sys.argv[1:])"]
    rows = {
        "version": _time([*cli, "--version"], env, args.repeats),
        "parse": _time([*cli, "kernels", "demo:cnn", "--bogus"], env, args.repeats),
        "torch": _time([py, "-c", "import torch"], env, args.repeats),
    }
    print(f"convscope start-up ({args.src}), median of {args.repeats}:")
    for name, seconds in rows.items():
        print(f"  {name:8s} {seconds:6.3f} s")
    print("  imports of convscope.cli.main, self ms by package:",
          ", ".join(f"{k} {v:.0f}" for k, v in _importtime(env).items()))


if __name__ == "__main__":
    main()
