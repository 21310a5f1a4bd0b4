#!/usr/bin/env python
"""Train the bundled demo models and write their float16 safetensors weights.

Deterministic (seeded numpy + torch, deterministic algorithms, fixed thread count) and CPU-only.
Each epoch trains on *freshly generated* synthetic data (a new seed per epoch), so there is no
fixed training set to overfit; the held-out evaluation uses a seed never used for training, and
evaluates the float16 weights exactly as shipped (reloaded and cast back to float32).

Usage:
    PYTHONPATH=src python scripts/train_demo.py                # both models -> src/convscope/demo/weights
    PYTHONPATH=src python scripts/train_demo.py --only cnn --out /tmp/w

Seeds: training data uses seeds ``TRAIN_SEED_BASE + epoch`` (classification) and
``TRAIN_SEED_BASE + 500 + epoch`` (segmentation); held-out evaluation uses ``EVAL_SEED``. The
tests in ``tests/demo`` use other seeds again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
try:  # allow running from a checkout without installing
    import convscope  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from convscope.demo import build_demo_model  # noqa: E402
from convscope.demo.data import make_segmentation, make_shapes_classification  # noqa: E402
from convscope.demo.quality import kernel_structure_score, mean_dice  # noqa: E402

TRAIN_SEED_BASE = 1000
EVAL_SEED = 7
TORCH_SEED = 0
DEFAULT_OUT = REPO / "src" / "convscope" / "demo" / "weights"


def _batches(n: int, batch: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(batch))


def _schedule(opt: torch.optim.Optimizer, total_steps: int, peak_lr: float) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak_lr, total_steps=total_steps, pct_start=0.15)


def to_float16_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict with floating tensors as contiguous float16 (integer buffers unchanged)."""
    return {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write float16 safetensors atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(to_float16_state(model), tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; shipped package data must be world-readable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def as_shipped(name: str, model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with float16-rounded weights cast back to float32, in eval mode."""
    shipped = build_demo_model(name)
    shipped.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in to_float16_state(model).items()})
    return shipped.eval()


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])


def train_cnn(epochs: int, n_per_epoch: int, batch: int, lr: float, wd: float, stem_wd: float) -> torch.nn.Module:
    torch.manual_seed(TORCH_SEED)
    gen = torch.Generator().manual_seed(TORCH_SEED)
    model = build_demo_model("cnn")
    print(f"[cnn] params {sum(p.numel() for p in model.parameters())}, stem score at init "
          f"{kernel_structure_score(model.stem.conv.weight.detach().numpy()):+.3f}")
    # The stem conv is followed by BatchNorm, so its scale is irrelevant to the function; a
    # stronger (Adam-coupled L2) decay there removes the i.i.d. initialisation noise that the data
    # gradient does not maintain, leaving the learned (smooth) filter structure.
    stem_w = model.stem.conv.weight
    rest = [p for p in model.parameters() if p is not stem_w]
    opt = torch.optim.Adam([{"params": [stem_w], "weight_decay": stem_wd}, {"params": rest, "weight_decay": wd}], lr=lr)
    steps = epochs * ((n_per_epoch + batch - 1) // batch)
    sched = _schedule(opt, steps, lr)
    xv, yv = make_shapes_classification(1024, seed=EVAL_SEED)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        x, y = make_shapes_classification(n_per_epoch, seed=TRAIN_SEED_BASE + epoch)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        model.train()
        total = 0.0
        for idx in _batches(n_per_epoch, batch, gen):
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        acc = float((predict(model, xv).argmax(1) == yv).mean())
        score = kernel_structure_score(model.stem.conv.weight.detach().numpy())
        print(f"[cnn] epoch {epoch + 1}/{epochs} loss {total / n_per_epoch:.4f} val acc {acc:.4f} "
              f"stem score {score:+.3f} ({time.perf_counter() - t0:.1f}s)", flush=True)
    return model


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits plus soft Dice loss (per image, averaged)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = (2.0 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)
    return bce + (1.0 - dice).mean()


def train_unet(epochs: int, n_per_epoch: int, batch: int, lr: float, wd: float) -> torch.nn.Module:
    torch.manual_seed(TORCH_SEED)
    gen = torch.Generator().manual_seed(TORCH_SEED)
    model = build_demo_model("unet")
    print(f"[unet] params {sum(p.numel() for p in model.parameters())}")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    steps = epochs * ((n_per_epoch + batch - 1) // batch)
    sched = _schedule(opt, steps, lr)
    xv, mv = make_segmentation(512, seed=EVAL_SEED)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        x, m = make_segmentation(n_per_epoch, seed=TRAIN_SEED_BASE + 500 + epoch)
        xt, mt = torch.from_numpy(x), torch.from_numpy(m)
        model.train()
        total = 0.0
        for idx in _batches(n_per_epoch, batch, gen):
            loss = seg_loss(model(xt[idx]), mt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        dice = mean_dice(predict(model, xv) > 0, mv > 0.5)
        print(f"[unet] epoch {epoch + 1}/{epochs} loss {total / n_per_epoch:.4f} val dice {dice:.4f} "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for cnn.safetensors / unet.safetensors")
    ap.add_argument("--only", choices=("cnn", "unet"), help="train just one model")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--cnn-epochs", type=int, default=6)
    ap.add_argument("--cnn-n", type=int, default=6144, help="fresh training images per CNN epoch")
    ap.add_argument("--stem-wd", type=float, default=0.2, help="L2 weight decay of stem.conv (default 0.2)")
    ap.add_argument("--unet-epochs", type=int, default=8)
    ap.add_argument("--unet-n", type=int, default=2048, help="fresh training images per U-Net epoch")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    results: dict[str, dict[str, float]] = {}
    t_all = time.perf_counter()

    if args.only in (None, "cnn"):
        t0 = time.perf_counter()
        model = train_cnn(args.cnn_epochs, args.cnn_n, batch=64, lr=3e-3, wd=1e-4, stem_wd=args.stem_wd)
        secs = time.perf_counter() - t0
        shipped = as_shipped("cnn", model)
        xh, yh = make_shapes_classification(1024, seed=EVAL_SEED)
        acc = float((predict(shipped, xh).argmax(1) == yh).mean())
        score = kernel_structure_score(shipped.stem.conv.weight.detach().numpy())
        results["cnn"] = {"heldout_accuracy": acc, "stem_structure_score": score, "train_seconds": secs}
        save_weights(model, args.out / "cnn.safetensors", {
            "convscope_demo": "cnn", "dtype": "float16", "heldout_accuracy": f"{acc:.4f}",
            "stem_structure_score": f"{score:.4f}", "trained_by": "scripts/train_demo.py",
        })
        print(f"[cnn] shipped float16: held-out accuracy {acc:.4f}, stem structure score {score:+.3f}, {secs:.0f}s")

    if args.only in (None, "unet"):
        t0 = time.perf_counter()
        model = train_unet(args.unet_epochs, args.unet_n, batch=32, lr=3e-3, wd=1e-4)
        secs = time.perf_counter() - t0
        shipped = as_shipped("unet", model)
        xh, mh = make_segmentation(512, seed=EVAL_SEED)
        dice = mean_dice(predict(shipped, xh) > 0, mh > 0.5)
        results["unet"] = {"heldout_dice": dice, "train_seconds": secs}
        save_weights(model, args.out / "unet.safetensors", {
            "convscope_demo": "unet", "dtype": "float16", "heldout_dice": f"{dice:.4f}",
            "trained_by": "scripts/train_demo.py",
        })
        print(f"[unet] shipped float16: held-out mean Dice {dice:.4f}, {secs:.0f}s")

    for name in results:
        p = args.out / f"{name}.safetensors"
        print(f"{p}: {p.stat().st_size / 1024:.1f} KiB")
    print(json.dumps(results, indent=2))
    print(f"total {time.perf_counter() - t_all:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
