"""CAM benchmark: every gradient CAM at every U-Net level vs a bare forward+backward; Score-CAM batched vs one pass per mask.

    python benchmarks/cam_bench.py            # T2 U-Net (32..512), 1x1x256x256
    python benchmarks/cam_bench.py --size tiny

1. **Gradient CAMs**: ``scope.cam`` with all five gradient methods (gradcam, gradcam++, hirescam,
   xgradcam, layercam) at every U-Net level (each encoder output, the bottleneck, each decoder
   output and both branches of every skip merge), including host copies, the numpy maps,
   resampling to the input and normalisation, vs a bare ``model(x)`` + ``torch.autograd.grad`` of
   the same target score with respect to the input. Median of ``--repeat`` runs, wall time.
   Repeats alternate between the two (same machine load); wall and process CPU time are reported.
2. **Score-CAM**: one layer, masked inputs batched to the memory budget vs one forward pass per mask.
3. ``--memory3d``: peak resident memory (``ru_maxrss``) of a fresh process doing the bare
   forward+backward vs all gradient CAMs at every level, on the 3D U-Net (16..256) at 96^3.

Prints one JSON object (the ratios are what the README reports).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.models import build, input_shape  # noqa: E402

import convscope as cs  # noqa: E402
from convscope.cam import compute_cams  # noqa: E402
from convscope.core.attribution import GRADIENT_METHODS, PostProcess  # noqa: E402


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved(fns: dict, repeat: int) -> dict:
    """Median wall and CPU seconds of each function, the runs alternating between them."""
    wall: dict = {k: [] for k in fns}
    cpu: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[key].append(time.perf_counter() - w0)
            cpu[key].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def _level_layers(name: str) -> list[str]:
    """The layers of every U-Net level (as ``flow.cam`` uses them), found on the tiny model (same names)."""
    model = build(name, "tiny")
    flow = cs.Scope(model).unet(np.random.default_rng(0).random(input_shape(name, "tiny")).astype(np.float32))
    return list(dict.fromkeys(flow.graph.node(n).name for _, n in flow.cam_roles() if flow.graph.node(n).module_type))


def _setup(name: str, size: str, layers: list[str] | None = None):
    model = build(name, size)
    shape = input_shape(name, size)
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    scope = cs.Scope(model)
    layers = layers or _level_layers(name)
    mask = np.zeros(shape[2:], dtype=bool)
    mask[tuple(slice(0, s // 2) for s in shape[2:])] = True
    target = cs.targets.segmentation(cls=1, mask=mask)
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    w = torch.from_numpy(target.cotangent(out))

    def bare() -> None:
        inp = torch.from_numpy(x).clone().requires_grad_(True)
        torch.autograd.grad((model(inp) * w).sum(), [inp])

    def cams() -> None:
        compute_cams(scope.adapter, x, layers, target, list(GRADIENT_METHODS), post=PostProcess(), progress=False)

    return shape, layers, bare, cams


def gradient_cams(size: str, repeat: int) -> dict:
    shape, layers, bare, cams = _setup("unet2d", size)
    bare()
    cams()  # warm-up
    t = _interleaved({"bare": bare, "cams": cams}, repeat)
    return {
        "model": f"unet2d ({size})",
        "input": list(shape),
        "levels_layers": len(layers),
        "maps": len(layers) * len(GRADIENT_METHODS),
        "bare_forward_backward_s": round(t["bare"][0], 4),
        "all_gradient_cams_s": round(t["cams"][0], 4),
        "ratio_wall": round(t["cams"][0] / t["bare"][0], 3),
        "bare_cpu_s": round(t["bare"][1], 4),
        "cams_cpu_s": round(t["cams"][1], 4),
        "ratio_cpu": round(t["cams"][1] / t["bare"][1], 3),
    }


def _peak_child(mode: str, size: str, layers: list[str]) -> None:
    import resource

    _, _, bare, cams = _setup("unet3d", size, layers)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (bare if mode == "bare" else cams)()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "peak_kib": peak, "before_kib": base}))


def memory3d(size: str) -> dict:
    import subprocess

    out = {}
    layers = json.dumps(_level_layers("unet3d"))
    for mode in ("bare", "cams"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--size", size, "--layers", layers],
                              capture_output=True, text=True, check=True)
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "model": f"unet3d ({size})",
        "bare_peak_mib": round(out["bare"]["peak_kib"] / 1024, 1),
        "cams_peak_mib": round(out["cams"]["peak_kib"] / 1024, 1),
        "ratio": round(out["cams"]["peak_kib"] / out["bare"]["peak_kib"], 3),
        "note": "peak RSS of the whole process (Python, torch and the model included)",
    }


def scorecam(repeat: int) -> dict:
    scope = cs.load("demo:unet")
    x = scope.prepare(scope.sample()).batch
    layer = "enc3.conv2"
    target = cs.targets.segmentation(cls=0, predicted=True, reduce="mean")

    def run(budget: float) -> None:
        compute_cams(scope.adapter, x, [layer], target, ["scorecam"], progress=False, scorecam_budget_mb=budget,
                     echo=lambda _t: None)

    run(256)
    batched = _median_time(lambda: run(256), repeat)
    single = _median_time(lambda: run(1e-6), repeat)  # budget below one input: one forward pass per mask
    channels = int(scope.activations(x, [layer])[layer].data.shape[1])
    # the ceiling batching can reach on this machine: the bare model, one batch of `channels` inputs vs
    # that many single forward passes (no convscope in the loop)
    model = scope.adapter.model
    many = torch.from_numpy(np.repeat(x, channels, axis=0))
    one = torch.from_numpy(x)
    with torch.no_grad():
        bare_batch = _median_time(lambda: model(many), repeat)
        bare_single = _median_time(lambda: [model(one) for _ in range(channels)], repeat)
    return {
        "model": "demo:unet",
        "layer": layer,
        "masks": channels,
        "batched_s": round(batched, 4),
        "one_pass_per_mask_s": round(single, 4),
        "speedup": round(single / batched, 2),
        "bare_model_batch_vs_singles": round(bare_single / bare_batch, 2),
        "note": "bare_model_batch_vs_singles: the same model run bare, one batch of all masks vs one pass per "
                "mask: what batching alone can gain on this machine",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=["full", "tiny"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory3d", action="store_true", help="also measure peak memory on the 3D U-Net")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--child", choices=["bare", "cams"], help=argparse.SUPPRESS)
    parser.add_argument("--layers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        _peak_child(args.child, args.size, json.loads(args.layers))
        return
    result = {"gradient_cams": gradient_cams(args.size, args.repeat), "scorecam": scorecam(args.repeat),
              "torch_threads": torch.get_num_threads()}
    if args.memory3d:
        result["memory3d"] = memory3d(args.size)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
