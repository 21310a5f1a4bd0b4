"""CAM benchmark: every gradient CAM at every U-Net level vs a bare forward+backward; Score-CAM batched vs one pass per mask.

    python benchmarks/cam_bench.py            # T2 U-Net (32..512), 1x1x256x256
    python benchmarks/cam_bench.py --size tiny

1. **Gradient CAMs**: ``scope.cam`` with all five gradient methods (gradcam, gradcam++, hirescam,
   xgradcam, layercam) at every U-Net level (each encoder output, the bottleneck, each decoder
   output and both branches of every skip merge), including host copies, the numpy maps,
   resampling to the input and normalisation, vs a bare ``model(x)`` + ``torch.autograd.grad`` of
   the same target score with respect to the input. Median of ``--repeat`` runs, wall time.
2. **Score-CAM**: one layer, masked inputs batched to the memory budget vs one forward pass per mask.

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


def gradient_cams(size: str, repeat: int) -> dict:
    model = build("unet2d", size)
    shape = input_shape("unet2d", size)
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    scope = cs.Scope(model)
    flow = scope.unet(x)
    roles = flow.cam_roles()
    layers = list(dict.fromkeys(flow.graph.node(nid).name for _, nid in roles if flow.graph.node(nid).module_type))
    target = cs.targets.segmentation(cls=1, region=(0, 0, shape[-1] // 2, shape[-2] // 2))
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    w = torch.from_numpy(target.cotangent(out))

    def bare() -> None:
        inp = torch.from_numpy(x).clone().requires_grad_(True)
        torch.autograd.grad((model(inp) * w).sum(), [inp])

    def cams() -> None:
        compute_cams(scope.adapter, x, layers, target, list(GRADIENT_METHODS), post=PostProcess(), progress=False)

    bare()
    cams()  # warm-up
    t_bare = _median_time(bare, repeat)
    t_cam = _median_time(cams, repeat)
    return {
        "model": f"unet2d ({size})",
        "input": list(shape),
        "levels_layers": len(layers),
        "maps": len(layers) * len(GRADIENT_METHODS),
        "bare_forward_backward_s": round(t_bare, 4),
        "all_gradient_cams_s": round(t_cam, 4),
        "ratio": round(t_cam / t_bare, 3),
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
    channels = scope.activations(x, [layer])[layer].data.shape[1]
    return {
        "model": "demo:unet",
        "layer": layer,
        "masks": int(channels),
        "batched_s": round(batched, 4),
        "one_pass_per_mask_s": round(single, 4),
        "speedup": round(single / batched, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=["full", "tiny"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = {"gradient_cams": gradient_cams(args.size, args.repeat), "scorecam": scorecam(args.repeat),
              "torch_threads": torch.get_num_threads()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
