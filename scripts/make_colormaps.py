"""Generate ``src/convscope/render/colormaps.npz``: bundled 256-entry RGB lookup tables.

Run once (needs matplotlib, which convscope itself never imports at import time)::

    python scripts/make_colormaps.py

Each entry of the archive is a ``(256, 3)`` ``uint8`` array named after the matplotlib colormap.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convscope.render.colormap import BUNDLED_COLORMAPS as NAMES  # noqa: E402  (one list of names)

TARGET = Path(__file__).resolve().parents[1] / "src" / "convscope" / "render" / "colormaps.npz"


def build_luts() -> dict[str, np.ndarray]:
    """Sample every colormap in :data:`NAMES` at 256 points; returns name -> ``(256, 3)`` uint8."""
    import matplotlib

    positions = np.linspace(0.0, 1.0, 256)
    luts: dict[str, np.ndarray] = {}
    for name in NAMES:
        rgba = matplotlib.colormaps[name].resampled(256)(positions)
        luts[name] = np.clip(np.round(rgba[:, :3] * 255.0), 0, 255).astype(np.uint8)
    return luts


def main() -> None:
    luts = build_luts()
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(TARGET, **luts)
    print(f"wrote {len(luts)} colormaps to {TARGET}")


if __name__ == "__main__":
    main()
