"""One way of one benchmark task, run in its own process by ``run.py`` (so imports, start-up and
peak memory are measured honestly), or in-process by the smoke test.

    python benchmarks/worker.py TASK WAY --out DIR --result FILE [--size full|tiny] [--budget S]

Only the standard library is imported at module level: each way imports what it uses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for entry in (str(ROOT / "src"), str(ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

TASK_MODEL = {"T1": "resnet50", "T2": "unet2d", "T3": "resnet50", "T4": "unet3d", "T5": "resnet50"}
HEAVY_MODULES = ("matplotlib", "matplotlib.pyplot", "jinja2", "fastapi", "uvicorn", "starlette", "typer", "rich", "scipy")


def make_input(task: str, size: str):
    import numpy as np

    from benchmarks.models import input_shape

    return np.random.default_rng(0).standard_normal(input_shape(TASK_MODEL[task], size), dtype=np.float32)


def _conv_modules(model):
    import torch

    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]


# --------------------------------------------------------------------------------------------
# ways
# --------------------------------------------------------------------------------------------


def way_bare(task: str, size: str, out: Path, clock: dict, **_: object) -> dict:
    """import torch, build the model, one forward pass (T3: no forward pass; kernels need none)."""
    import torch

    from benchmarks.models import build

    clock["import"] = time.perf_counter()
    model = build(TASK_MODEL[task], size)
    x = torch.from_numpy(make_input(task, size))
    clock["build"] = time.perf_counter()
    if task != "T3":
        with torch.no_grad():
            model(x)
    return {}


def way_bare1t(task: str, size: str, out: Path, clock: dict, **kw: object) -> dict:
    """``bare`` with torch limited to one intra-op thread (how convscope runs a streamed forward
    pass on 2 cores, leaving the other core to rendering)."""
    import torch

    torch.set_num_threads(1)
    return way_bare(task, size, out, clock, **kw)


def way_convscope(task: str, size: str, out: Path, clock: dict, **_: object) -> dict:
    """The Python API: ``Scope(model).save_activations(x, out)`` / ``save_kernels(out)``."""
    import torch  # noqa: F401  (the model's framework; counted in the import phase like the others)

    import convscope
    from benchmarks.models import build

    clock["import"] = time.perf_counter()
    model = build(TASK_MODEL[task], size)
    x = make_input(task, size)
    clock["build"] = time.perf_counter()
    scope = convscope.Scope(model)
    info: dict = {}
    if task == "T3":
        scope.save_kernels(out)
    else:
        scope.save_activations(x, out)
    if task == "T2":
        info["unet_flow"] = _unet_flow(scope, x, out)
    return info


def _unet_flow(scope, x, out: Path) -> str:
    """``scope.unet(x).figure()`` saved as ``unet_flow.png``; "missing" while convscope.unet_flow does not exist."""
    import importlib.util

    if importlib.util.find_spec("convscope.unet_flow") is None:
        return "missing"
    t0 = time.perf_counter()
    figure = scope.unet(x).figure()
    target = out / "unet_flow.png"
    if hasattr(figure, "save"):
        figure.save(target)
    elif hasattr(figure, "to_png"):
        target.write_bytes(figure.to_png())
    else:  # a matplotlib figure
        figure.savefig(target)
    return f"{time.perf_counter() - t0:.3f}s"


def way_floor(task: str, size: str, out: Path, clock: dict, upscale: bool = True, **_: object) -> dict:
    """One forward pass with hooks, numpy min-max + LUT + tiling, Pillow PNG (level 1), one thread.

    T4 renders inside the hook (nothing held); T1/T2 keep the activations and render after the pass;
    T3 reads the weights.
    """
    import torch

    from benchmarks import floor
    from benchmarks.models import build

    clock["import"] = time.perf_counter()
    model = build(TASK_MODEL[task], size)
    x = torch.from_numpy(make_input(task, size))
    clock["build"] = time.perf_counter()
    convs = _conv_modules(model)
    if task == "T3":
        for name, module in convs:
            floor.save_png(floor.kernel_grid(module.weight.detach().numpy()), out / f"{name}.png")
        return {}
    captured: dict = {}
    stream = task == "T4"

    def hook(name):
        def fn(_m, _i, output):
            if stream:
                floor.save_png(floor.activation_grid(output[0].numpy(), upscale), out / f"{name}.png")
            else:
                captured[name] = output[0].clone().numpy()

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in convs]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for name, maps in captured.items():
        floor.save_png(floor.activation_grid(maps, upscale), out / f"{name}.png")
    return {}


def way_floor1x(task: str, size: str, out: Path, clock: dict, **kw: object) -> dict:
    """The floor without upscaling: one pixel per value (the smallest possible PNGs)."""
    return way_floor(task, size, out, clock, upscale=False)


def way_naive(task: str, size: str, out: Path, clock: dict, budget: float | None = None, **_: object) -> dict:
    """A separate forward pass per layer + a matplotlib subplot per channel + savefig."""
    import torch

    from benchmarks import naive
    from benchmarks.models import build

    naive._pyplot()
    clock["import"] = time.perf_counter()
    model = build(TASK_MODEL[task], size)
    x = torch.from_numpy(make_input(task, size))
    clock["build"] = time.perf_counter()
    convs = dict(_conv_modules(model))
    if task == "T3":
        items = []
        for name, m in convs.items():
            o, i, *k = m.weight.shape
            items.append((name, 1 if all(s == 1 for s in k) else o * i))

        def do_layer(name: str) -> int:
            return naive.kernel_figure(convs[name].weight.detach().numpy(), out / f"{name}.png")
    else:
        items = [(name, int(m.out_channels)) for name, m in convs.items()]

        def do_layer(name: str) -> int:
            store = {}
            handle = convs[name].register_forward_hook(lambda _m, _i, o: store.__setitem__("a", o[0].clone()))
            with torch.no_grad():
                model(x)
            handle.remove()
            return naive.activation_figure(store["a"].numpy(), out / f"{name}.png")

    return naive.run_layers(items, do_layer, budget)


WAYS = {
    "bare": way_bare,
    "bare1t": way_bare1t,
    "convscope": way_convscope,
    "floor": way_floor,
    "floor1x": way_floor1x,
    "naive": way_naive,
}


def run_way(task: str, way: str, out: Path, size: str = "full", budget: float | None = None) -> dict:
    """Run one way in this process; returns phase times and what was written."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clock: dict = {}
    info = WAYS[way](task, size, out, clock, budget=budget)
    end = time.perf_counter()
    files = [p for p in out.rglob("*") if p.is_file()]
    return {
        "task": task,
        "way": way,
        "import_s": clock.get("import", start) - start,
        "build_s": clock.get("build", start) - clock.get("import", start),
        "work_s": end - clock.get("build", start),
        "files": sum(1 for p in files if p.suffix == ".png"),
        "bytes": sum(p.stat().st_size for p in files),
        "heavy_modules": [m for m in HEAVY_MODULES if m in sys.modules],
        **info,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASK_MODEL))
    parser.add_argument("way", choices=sorted(WAYS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--result", type=Path)
    parser.add_argument("--size", default="full", choices=("full", "tiny"))
    parser.add_argument("--budget", type=float, default=None, help="naive way: seconds before extrapolating")
    args = parser.parse_args(argv)
    result = run_way(args.task, args.way, args.out, args.size, args.budget)
    text = json.dumps(result)
    if args.result:
        args.result.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
