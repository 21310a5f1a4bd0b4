"""ResNet-50 (plain torch, random weights, seed 0), input 1x3x224x224: one PNG grid of all channels
per conv layer (53), three ways in the same run, each in its own process:

  convscope  ``Scope(model).save_activations(x, out)``
  naive      a forward pass per layer, a matplotlib subplot per channel, savefig
  floor      one forward pass, numpy min-max + tiling, Pillow PNG

plus the bare forward pass (import torch + build + one forward) for reference. Prints wall time and
peak memory of each and the ratios. This is task T1 of the suite:

    .venv/bin/python benchmarks/resnet50_grids.py [--repeats N] [--naive-budget S]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import run  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run.main(["--tasks", "T1", "--ways", "bare,floor,convscope,naive", *sys.argv[1:]]))
