"""Synthetic 3D scans for the bundled 3D demo U-Net (numpy only; nibabel only to write NIfTI).

A scan is ``(X, Y, Z)`` float32 in canonical RAS+ layout (x towards the patient's Right, y
Anterior, z Superior) with anisotropic voxels (:data:`VOLUME_SPACING` mm): a mid-gray "body"
ellipsoid, a bright "organ" ellipsoid always on the patient's **left** (low x), and distractors
the model must ignore (a small bright sphere anywhere and a thin bright rod along z). The label
map marks the organ. Seeded: the same seed gives the same scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["VOLUME_SHAPE", "VOLUME_SPACING", "make_volumes", "sample_volume", "write_demo_nifti"]

VOLUME_SHAPE = (32, 32, 16)
VOLUME_SPACING = (1.5, 1.5, 3.0)


def _ellipsoid(grid: tuple[np.ndarray, ...], centre: np.ndarray, radii_mm: np.ndarray) -> np.ndarray:
    d = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii_mm))
    return d


def _one(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    shape = VOLUME_SHAPE
    sp = np.asarray(VOLUME_SPACING)
    extent = np.asarray(shape) * sp
    grid = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, sp)], indexing="ij")
    body = _ellipsoid(grid, extent / 2, extent * np.array([0.46, 0.44, 0.6]))
    vol = np.where(body <= 1.0, 0.3, 0.05).astype(np.float32)
    centre = np.array([rng.uniform(0.22, 0.38), rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65)]) * extent
    radii = rng.uniform([5.0, 6.0, 8.0], [8.0, 9.0, 13.0])
    organ = _ellipsoid(grid, centre, radii) <= 1.0
    vol[organ] = rng.uniform(0.7, 0.9)
    dot = np.array([rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)]) * extent
    vol[_ellipsoid(grid, dot, np.array([2.5, 2.5, 3.5])) <= 1.0] = 0.85
    rx, ry = rng.integers(4, shape[0] - 4), rng.integers(4, shape[1] - 4)
    vol[rx, ry, 2:-2] = 0.9
    vol[organ & (vol < 0.7)] = 0.75  # the organ stays bright where a distractor crosses it
    vol += rng.normal(0.0, 0.04, size=shape).astype(np.float32)
    return np.clip(vol, 0.0, 1.0).astype(np.float32), organ.astype(np.float32)


def make_volumes(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scans and organ masks: ``(n, 1, X, Y, Z)`` float32 each (values in [0, 1]; mask 0/1)."""
    rng = np.random.default_rng(seed)
    pairs = [_one(rng) for _ in range(n)]
    return np.stack([p[0] for p in pairs])[:, None], np.stack([p[1] for p in pairs])[:, None]


def sample_volume(seed: int = 0) -> np.ndarray:
    """One scan ``(1, X, Y, Z)`` float32 (the demo model's input without the batch axis)."""
    return make_volumes(1, seed=seed)[0][0]


def write_demo_nifti(folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``scan.nii.gz`` and ``organ.nii.gz`` (a label map) into ``folder``; returns both paths.

    Stored as a scanner would (LPS orientation, float32 scan, uint8 labels, an origin in mm), so
    reading them exercises the reorientation to RAS+.
    """
    import nibabel as nib

    x, m = make_volumes(1, seed=seed)
    ras = np.diag([*VOLUME_SPACING, 1.0])
    ras[:3, 3] = (-24.0, -30.0, -20.0)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS storage: x and y reversed
    flip[0, 3] = VOLUME_SHAPE[0] - 1
    flip[1, 3] = VOLUME_SHAPE[1] - 1
    affine = ras @ flip
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    scan, labels = out / "scan.nii.gz", out / "organ.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(x[0, 0, ::-1, ::-1]), affine), str(scan))
    nib.save(nib.Nifti1Image(np.ascontiguousarray(m[0, 0, ::-1, ::-1]).astype(np.uint8), affine), str(labels))
    return scan, labels
