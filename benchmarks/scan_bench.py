"""Dataset-scan benchmark: ``convscope scan`` pass 1 vs a bare batched inference loop.

Both ways read the same generated 224x224 PNG files with the same decoding (convscope's dataset
iterator, ``--workers`` threads ahead of the model) and the same batch size, through the same
ResNet-50 (``benchmarks.models:resnet50``, random weights from a fixed seed). The scan captures
every convolution (53 layers) and keeps k=16 examples per channel. Each way runs in its own
process, so its peak RSS is its own.

    python -m benchmarks.scan_bench                       # 1000 images; memory 1000 vs 4000
    python -m benchmarks.scan_bench --images 64 --memory 64,256   # the reduced run

Prints a JSON summary: images/s of both ways, their ratio, and the scan's peak RSS per dataset size.
The bare loop also runs with one torch thread less, for reference (the scan runs one batch per
torch thread at once, each forward pass on one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, count: int, size: int = 224, seed: int = 0) -> Path:
    """``count`` smooth random RGB PNGs (decoding cost like photos, not like noise)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.png")))
    rng = np.random.default_rng(seed + have)
    for i in range(have, count):
        coarse = rng.integers(0, 256, size=(size // 16, size // 16, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        noise = rng.integers(0, 24, size=(size, size, 3), dtype=np.uint8)
        pixels = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:05d}.png", compress_level=6)
    return folder


def _list(folder: Path, count: int) -> Path:
    listing = folder.parent / f"{folder.name}-{count}.txt"
    names = sorted(p.name for p in folder.glob("*.png"))[:count]
    listing.write_text("\n".join(f"{folder.name}/{n}" for n in names) + "\n")
    return listing


def way(kind: str, data: str, batch_size: int, workers: int, threads: int) -> dict:
    """Run one way in this process; returns timing and peak RSS."""
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT))
    import convscope as cs
    from convscope.io.dataset import chunk_files, iter_batches, list_files
    from convscope.scan.engine import _prepare_kwargs

    from benchmarks.models import resnet50

    torch.manual_seed(0)
    model = resnet50().eval()
    scope = cs.Scope(model)
    files = list_files(data)
    start = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    if kind == "bare":
        chunks = chunk_files(files, batch_size)
        with torch.no_grad():
            for batch in iter_batches(chunks, prepare=_prepare_kwargs(scope, None, None), workers=workers):
                model(torch.from_numpy(batch.batch))
        images = len(files)
    else:
        result = scope.scan(data, top_k=16, batch_size=batch_size, workers=workers, crops=False)
        images = result.images
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0  # all threads: decoding, forward, statistics
    peak = usage.ru_maxrss / 1024  # KiB on Linux -> MiB
    return {"way": kind, "images": images, "seconds": seconds, "images_per_s": images / seconds,
            "cpu_s_per_image": cpu / max(images, 1), "peak_rss_mib": peak}


def _spawn(kind: str, data: Path, args: argparse.Namespace, threads: int | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    cmd = [sys.executable, "-m", "benchmarks.scan_bench", "--way", kind, "--data", str(data),
           "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--threads", str(threads or args.threads)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images for the throughput comparison")
    parser.add_argument("--memory", default="1000,4000", help="dataset sizes whose scan peak RSS is compared")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the 2-core target)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per way (alternating); the best of each counts")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/convscope-scan-bench"))
    parser.add_argument("--way", choices=["bare", "scan"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.way:
        print(json.dumps(way(args.way, args.data, args.batch_size, args.workers, args.threads)))
        return 0
    sizes = [int(v) for v in args.memory.split(",") if v.strip()]
    images = args.folder / "images"
    make_images(images, max([args.images, *sizes]))
    data = _list(images, args.images)
    # alternate the ways and keep each way's best run: on a shared machine the load changes between runs
    # singles: the bare loop on one torch thread less, for reference
    bares, scans, singles = [], [], []
    for _ in range(max(1, args.repeat)):
        bares.append(_spawn("bare", data, args))
        scans.append(_spawn("scan", data, args))
        if args.threads > 1:
            singles.append(_spawn("bare", data, args, threads=max(1, args.threads - 1)))
    bare = max(bares, key=lambda r: r["images_per_s"])
    scan = max(scans, key=lambda r: r["images_per_s"])
    single = max(singles, key=lambda r: r["images_per_s"]) if singles else None
    memory = {}
    for n in sizes:
        run = scan if n == args.images else _spawn("scan", _list(images, n), args)
        memory[str(n)] = run["peak_rss_mib"]
    summary = {
        "model": "ResNet-50 (benchmarks.models), all 53 convolutions, k=16",
        "images": args.images,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "torch_threads": args.threads,
        "bare_images_per_s": round(bare["images_per_s"], 3),
        "scan_images_per_s": round(scan["images_per_s"], 3),
        "throughput_ratio": round(scan["images_per_s"] / bare["images_per_s"], 3),
        "bare_one_thread_less_images_per_s": round(single["images_per_s"], 3) if single else None,
        "scan_vs_bare_one_thread_less": round(scan["images_per_s"] / single["images_per_s"], 3) if single else None,
        "runs_images_per_s": {"bare": [round(r["images_per_s"], 3) for r in bares],
                              "scan": [round(r["images_per_s"], 3) for r in scans]},
        "runs_cpu_s_per_image": {"bare": [round(r["cpu_s_per_image"], 3) for r in bares],
                                 "scan": [round(r["cpu_s_per_image"], 3) for r in scans]},
        "bare_peak_rss_mib": round(bare["peak_rss_mib"], 1),
        "scan_peak_rss_mib_by_images": {k: round(v, 1) for k, v in memory.items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
