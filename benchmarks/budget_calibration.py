"""Calibration of the memory estimate (convscope.core.budget) against measured peaks. Run by hand:

    PYTHONPATH=$PWD/src:$PWD KERAS_BACKEND=torch python benchmarks/budget_calibration.py [--only NAME ...]

Each case runs in a FRESH process (so one case's high-water mark cannot hide another's): imports, the
model and a warm-up pass on a tiny input first, then ``ru_maxrss`` is read (the baseline), the input
is made and the command's work runs (``scope.activations``, ``scope.unet``, ``scope.cam``); the
measured extra peak is ``ru_maxrss`` after minus the baseline. The estimate is the one the command's
memory check makes, from the shape probe (the tighter of its two ways; the free metadata bound is
larger), computed after the measurement. Prints one table row per case (markdown) and writes
``benchmarks/out/budget_calibration.json``; the table is in docs/wave2/budget.md. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# name -> (model spec, model kwargs, input shape (N, C, *spatial), command, options)
CASES: dict[str, tuple[str, dict[str, Any], tuple[int, ...], str, dict[str, Any]]] = {}


def _add(model: str, label: str, kwargs: dict[str, Any], shape: tuple[int, ...], commands: list[str]) -> None:
    for command in commands:
        CASES[f"{label}-{'x'.join(map(str, shape))}-{command}"] = (model, kwargs, shape, command, {})


_ZOO = "tests.unet.unet_zoo:UNet"
_ALL = ["activations", "unet", "gradcam", "scorecam"]
_add("demo:unet", "demo-unet", {}, (1, 1, 256, 256), _ALL)
_add("demo:unet", "demo-unet", {}, (1, 1, 512, 512), ["activations", "unet", "gradcam"])
_add(_ZOO, "unet2d-l3b8", {"dims": 2, "levels": 3, "base": 8}, (1, 1, 256, 256), _ALL)
_add(_ZOO, "unet2d-l3b8", {"dims": 2, "levels": 3, "base": 8}, (8, 1, 256, 256), ["activations", "unet", "gradcam"])
_add(_ZOO, "unet2d-l4b16", {"dims": 2, "levels": 4, "base": 16}, (1, 1, 384, 384), ["activations", "unet", "gradcam"])
_add(_ZOO, "unet3d-l3b4", {"dims": 3, "levels": 3, "base": 4}, (1, 1, 48, 48, 48), _ALL)
_add(_ZOO, "unet3d-l3b8", {"dims": 3, "levels": 3, "base": 8}, (1, 1, 64, 64, 64), ["activations", "unet", "gradcam"])
_add("benchmarks.models:resnet50", "resnet50-w8", {"width": 8}, (1, 3, 128, 128), ["activations", "gradcam", "scorecam"])
_add("benchmarks.models:resnet50", "resnet50-w16", {"width": 16}, (2, 3, 224, 224), ["activations", "gradcam"])


def _maxrss() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def run_case(name: str) -> dict[str, Any]:
    """One case in this process: the measured extra peak and the estimate (bytes)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import convscope as cs
    from convscope.cam import DEFAULT_SCORECAM_BUDGET_MB, _chunk_size
    from convscope.core.budget import estimate_capture, probe_sizes

    model, kwargs, shape, command, _ = CASES[name]
    scope = cs.load(model, kwargs=kwargs or None)
    tiny = (1, shape[1], *([32] * (len(shape) - 2)))
    scope.activations(np.zeros(tiny, np.float32))  # warm-up: lazy kernels, thread pools
    scope.cam(np.zeros(tiny, np.float32), method="gradcam", progress=False)
    scope._probe_cache.clear()
    base = _maxrss()
    batch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if command == "activations":
        result = scope.activations(batch)
        del result
    elif command == "unet":
        flow = scope.unet(batch)
        del flow
    else:
        cams = scope.cam(batch, method=command, progress=False)
        del cams
    peak = _maxrss() - base
    # the estimate the command's check makes (shape probe; see Scope.check_memory / Scope.plan_cam)
    layers = scope._cam_layers(None) if command in ("gradcam", "scorecam") else None
    bshape, chosen, channels, _, _ = scope._budget_inputs(batch, layers, None, None)
    sizes = probe_sizes(scope._probe_shapes, bshape, scope.adapter.input_spec().spatial_size)
    assert sizes is not None
    mode = {"activations": "hold", "unet": "gradients", "gradcam": "gradients", "scorecam": "hold"}[command]
    masked = 0
    if command == "scorecam":  # as Scope.plan_cam: at most the chunk, at most one per sample and channel
        cap = _chunk_size(np.broadcast_to(np.float32(0), (1, *bshape[1:])), DEFAULT_SCORECAM_BUDGET_MB)
        masked = min(cap, bshape[0] * max(channels.get(n) or cap for n in chosen))
    est = estimate_capture(bshape, sizes, chosen, mode=mode, method="probe", masked=masked,
                           workspace=scope._workspace(bshape))
    forward_only = estimate_capture(bshape, sizes, chosen, mode="hold", method="probe")
    return {"case": name, "measured": peak, "estimate": est.total, "parts": dict(est.parts),
            "hold_estimate": forward_only.total, "ratio": est.total / max(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--only", nargs="*", help="substrings of case names to run")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", KERAS_BACKEND="torch", OMP_NUM_THREADS="1")
    rows = []
    print("| case | measured extra peak | estimate | estimate / measured | forward-only estimate |")
    print("|---|---:|---:|---:|---:|")
    for name in CASES:
        if args.only and not any(s in name for s in args.only):
            continue
        done = subprocess.run([sys.executable, __file__, "--case", name], env=env, capture_output=True, text=True,
                              check=False, cwd=ROOT)
        if done.returncode != 0:
            print(f"| {name} | failed: {done.stderr.strip().splitlines()[-1:]} |", flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        mib = 2**20
        print(f"| {name} | {row['measured'] / mib:.0f} MiB | {row['estimate'] / mib:.0f} MiB | {row['ratio']:.2f} | "
              f"{row['hold_estimate'] / mib:.0f} MiB |", flush=True)
    out = ROOT / "benchmarks" / "out" / "budget_calibration.json"  # ignored by git
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
