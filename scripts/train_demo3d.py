#!/usr/bin/env python
"""Train the bundled 3D demo U-Net (``demo:unet3d``) and write its float16 safetensors weights.

Deterministic (seeded numpy + torch, one thread) and CPU-only. Every step trains on freshly
generated synthetic volumes (:mod:`convscope.demo.volume`, seed ``TRAIN_SEED_BASE + step``); the
held-out Dice uses ``EVAL_SEED`` and the float16 weights exactly as shipped.

Usage:
    PYTHONPATH=src python scripts/train_demo3d.py            # -> src/convscope/demo/weights/unet3d.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from convscope.demo.models3d import DemoUNet3D  # noqa: E402
from convscope.demo.volume import make_volumes  # noqa: E402

TRAIN_SEED_BASE = 3000
EVAL_SEED = 77
TORCH_SEED = 0


def dice(pred: torch.Tensor, target: torch.Tensor) -> float:
    inter = (pred & target).sum().item()
    return 2.0 * inter / max(1, pred.sum().item() + target.sum().item())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--out", type=Path, default=REPO / "src" / "convscope" / "demo" / "weights" / "unet3d.safetensors")
    args = parser.parse_args()
    torch.manual_seed(TORCH_SEED)
    torch.set_num_threads(1)
    model = DemoUNet3D()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=args.steps, pct_start=0.15)
    start = time.time()
    model.train()
    for step in range(args.steps):
        x, m = (torch.from_numpy(a) for a in make_volumes(args.batch, seed=TRAIN_SEED_BASE + step))
        logits = model(x)
        prob = torch.sigmoid(logits)
        soft_dice = 1 - (2 * (prob * m).sum() + 1) / (prob.sum() + m.sum() + 1)
        loss = F.binary_cross_entropy_with_logits(logits, m, pos_weight=torch.tensor(4.0)) + soft_dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - start:.0f}s)", flush=True)
    state = {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out))
    shipped = DemoUNet3D()
    shipped.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    shipped.eval()
    x, m = (torch.from_numpy(a) for a in make_volumes(32, seed=EVAL_SEED))
    with torch.no_grad():
        pred = shipped(x) > 0
    print(f"held-out Dice (float16 weights, seed {EVAL_SEED}): {dice(pred, m > 0.5):.3f}; "
          f"{args.out.stat().st_size} bytes; {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
