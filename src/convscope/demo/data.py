"""Seeded synthetic data for the bundled demo models (numpy only, no framework import).

Two tasks, both generated in code so the demo models can be trained, tested and shown without
downloading anything:

* **classification** -- RGB images of one coloured filled shape (:data:`CLASS_NAMES`) at a random
  position, size, colour and (triangle, cross) rotation, on a coloured gradient background with
  low-frequency blotches and pixel noise.
* **segmentation** -- grayscale "scan" images: a dim textured body outline, one to three bright
  "organ" ellipses (the targets) of random size and orientation, and bright distractors that are
  *not* targets (thin lines and small dots), plus noise. The mask marks the organs only.

Every generator is a pure function of ``(n, size, seed)``: the same call returns the same arrays.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConvscopeError

__all__ = [
    "CLASS_NAMES",
    "TASKS",
    "make_shapes_classification",
    "make_segmentation",
    "sample_image",
]

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""Label ``i`` of :func:`make_shapes_classification` is ``CLASS_NAMES[i]``."""

TASKS: tuple[str, ...] = ("classification", "segmentation")
"""Task names accepted by :func:`sample_image`."""

_CHUNK = 256  # images generated per vectorised step (bounds temporary memory to a few tens of MB)


def _check_n_size(n: int, size: int, min_size: int) -> None:
    if int(n) != n or n < 0:
        raise ConvscopeError(f"n must be a non-negative integer, got {n!r}; pass e.g. n=256")
    if int(size) != size or size < min_size:
        raise ConvscopeError(f"size must be an integer >= {min_size}, got {size!r}; pass e.g. size=64")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)``, each ``(1, size, size)`` float32."""
    c = np.arange(size, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return yy[None], xx[None]


def _upsample_matrix(coarse: int, size: int) -> np.ndarray:
    """``(size, coarse)`` float32 linear-interpolation matrix (``M @ v`` resamples a coarse signal)."""
    pos = (np.arange(size, dtype=np.float64) + 0.5) * coarse / size - 0.5
    pos = np.clip(pos, 0.0, coarse - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, coarse - 1)
    frac = pos - lo
    m = np.zeros((size, coarse), dtype=np.float64)
    m[np.arange(size), lo] += 1.0 - frac
    m[np.arange(size), hi] += frac
    return m.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], coarse: int, size: int) -> np.ndarray:
    """Smooth random fields: uniform noise on a ``coarse`` grid, bilinearly upsampled.

    Returns:
        ``(*shape, size, size)`` float32 with values in ``[-1, 1]``.
    """
    g = rng.uniform(-1.0, 1.0, size=(*shape, coarse, coarse)).astype(np.float32)
    m = _upsample_matrix(coarse, size)
    return np.einsum("hi,...ij,wj->...hw", m, g, m, optimize=True).astype(np.float32)


def _alpha(signed_distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(signed_distance + 0.5, 0.0, 1.0)


# --------------------------------------------------------------------------- classification


def _shape_signed_distance(
    labels: np.ndarray, cy: np.ndarray, cx: np.ndarray, r: np.ndarray, theta: np.ndarray, size: int
) -> np.ndarray:
    """Signed distance in pixels (positive inside) of each image's shape; ``(m, size, size)`` float32."""
    yy, xx = _grid(size)
    dy = yy - cy[:, None, None]
    dx = xx - cx[:, None, None]
    rr = r[:, None, None]
    out = np.empty((len(labels), size, size), dtype=np.float32)

    sel = labels == 0  # circle, radius r
    if sel.any():
        out[sel] = rr[sel] - np.sqrt(dx[sel] ** 2 + dy[sel] ** 2)
    sel = labels == 1  # axis-aligned square, half side 0.9 r
    if sel.any():
        out[sel] = 0.9 * rr[sel] - np.maximum(np.abs(dx[sel]), np.abs(dy[sel]))
    sel = labels == 2  # equilateral triangle, circumradius 1.25 r -> inradius 0.625 r
    if sel.any():
        t = theta[sel][:, None, None]
        sd = None
        for k in range(3):
            a = t + k * (2.0 * np.pi / 3.0)
            d = 0.625 * rr[sel] - (dx[sel] * np.cos(a) + dy[sel] * np.sin(a))
            sd = d if sd is None else np.minimum(sd, d)
        out[sel] = sd
    sel = labels == 3  # cross (plus sign) with arms of half length 1.15 r, half width 0.36 r
    if sel.any():
        t = theta[sel][:, None, None]
        u = np.abs(dx[sel] * np.cos(t) + dy[sel] * np.sin(t))
        v = np.abs(-dx[sel] * np.sin(t) + dy[sel] * np.cos(t))
        arm_l, arm_w = 1.15 * rr[sel], 0.36 * rr[sel]
        out[sel] = np.maximum(np.minimum(arm_w - u, arm_l - v), np.minimum(arm_w - v, arm_l - u))
    return out


def _classification_chunk(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    m = len(labels)
    yy, xx = _grid(size)

    # Background: gradient between two colours along a random direction + blotches + noise.
    c0 = rng.uniform(0.0, 1.0, (m, 3)).astype(np.float32)
    c1 = np.clip(c0 + rng.uniform(-0.35, 0.35, (m, 3)), 0.0, 1.0).astype(np.float32)
    phi = rng.uniform(0.0, 2.0 * np.pi, m).astype(np.float32)
    proj = (xx - size / 2) * np.cos(phi)[:, None, None] + (yy - size / 2) * np.sin(phi)[:, None, None]
    t = np.clip(proj / (size * 0.75) + 0.5, 0.0, 1.0)[:, None]  # (m, 1, H, W)
    img = c0[:, :, None, None] * (1.0 - t) + c1[:, :, None, None] * t
    img += 0.07 * _smooth_noise(rng, (m, 3), 4, size)

    # Shape colour: far enough from the background colours to be visible (rejection sampling).
    bg_mean = 0.5 * (c0 + c1)
    colour = rng.uniform(0.0, 1.0, (m, 3)).astype(np.float32)
    for _ in range(64):
        bad = (
            (np.linalg.norm(colour - bg_mean, axis=1) < 0.45)
            | (np.linalg.norm(colour - c0, axis=1) < 0.3)
            | (np.linalg.norm(colour - c1, axis=1) < 0.3)
        )
        if not bad.any():
            break
        colour[bad] = rng.uniform(0.0, 1.0, (int(bad.sum()), 3))
    still_bad = np.linalg.norm(colour - bg_mean, axis=1) < 0.45
    colour[still_bad] = np.where(bg_mean[still_bad] > 0.5, 0.0, 1.0)  # fall back to max contrast

    # Shape geometry; 1.25 r bounds every shape's extent from its centre.
    r = rng.uniform(0.14, 0.30, m).astype(np.float32) * size
    margin = 1.25 * r + 1.0
    cy = rng.uniform(margin, size - margin).astype(np.float32)
    cx = rng.uniform(margin, size - margin).astype(np.float32)
    theta = rng.uniform(0.0, 2.0 * np.pi, m).astype(np.float32)
    alpha = _alpha(_shape_signed_distance(labels, cy, cx, r, theta, size))[:, None]

    img = img * (1.0 - alpha) + colour[:, :, None, None] * alpha
    sigma = rng.uniform(0.01, 0.05, (m, 1, 1, 1)).astype(np.float32)
    img += sigma * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def make_shapes_classification(n: int, *, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate coloured-shape classification images.

    Each image holds one filled shape -- circle, axis-aligned square, triangle or cross (plus
    sign), the latter two at a random rotation -- of random size, position and colour on a
    coloured gradient background with soft blotches and pixel noise. Classes are balanced
    (``n // 4`` each, the remainder spread over the first classes) and shuffled.

    Args:
        n: number of images.
        size: image height and width in pixels (>= 16).
        seed: random seed; the same ``(n, size, seed)`` always gives the same arrays.

    Returns:
        ``(images, labels)``: images ``(n, 3, size, size)`` float32 RGB in ``[0, 1]``,
        C-contiguous; labels ``(n,)`` int64 indices into :data:`CLASS_NAMES`.

    Raises:
        ConvscopeError: ``n`` negative or ``size`` < 16.
    """
    _check_n_size(n, size, 16)
    rng = np.random.default_rng([seed, 1])
    labels = rng.permutation(np.arange(n, dtype=np.int64) % len(CLASS_NAMES))
    images = np.empty((n, 3, size, size), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        images[start:stop] = _classification_chunk(rng, labels[start:stop], size)
    return images, labels


# --------------------------------------------------------------------------- segmentation


def _segmentation_chunk(rng: np.random.Generator, m: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = _grid(size)
    yy4, xx4 = yy[None], xx[None]  # (1, 1, H, W) for (m, K, H, W) broadcasting
    s = size / 64.0  # pixel-sized parameters are specified for 64 x 64 and scaled

    # Body: a large dim ellipse with a soft edge, filled with smooth texture; darker outside.
    by = rng.uniform(0.45, 0.55, m) * size
    bx = rng.uniform(0.45, 0.55, m) * size
    ba = rng.uniform(0.40, 0.50, m) * size
    bb = rng.uniform(0.34, 0.46, m) * size
    q = np.sqrt(((xx - bx[:, None, None]) / ba[:, None, None]) ** 2 + ((yy - by[:, None, None]) / bb[:, None, None]) ** 2)
    body = np.clip((1.0 - q) * 8.0 + 0.5, 0.0, 1.0)
    tissue = (
        rng.uniform(0.22, 0.38, (m, 1, 1))
        + 0.08 * _smooth_noise(rng, (m,), 5, size)
        + 0.04 * _smooth_noise(rng, (m,), 12, size)
    )
    img: np.ndarray = (0.04 + (tissue - 0.04) * body).astype(np.float32)

    # Distractors (not targets): thin bright lines and small bright dots.
    n_lines, n_dots = 3, 5
    p0 = rng.uniform(0.1, 0.9, (m, n_lines, 2)) * size
    ang = rng.uniform(0.0, 2.0 * np.pi, (m, n_lines))
    length = rng.uniform(0.25, 0.7, (m, n_lines)) * size
    p1 = p0 + length[..., None] * np.stack([np.sin(ang), np.cos(ang)], axis=-1)
    d = p1 - p0
    ty = (yy4 - p0[..., 0, None, None]) * d[..., 0, None, None]
    tx = (xx4 - p0[..., 1, None, None]) * d[..., 1, None, None]
    tt = np.clip((ty + tx) / (d[..., 0] ** 2 + d[..., 1] ** 2)[..., None, None], 0.0, 1.0)
    dist = np.sqrt(
        (yy4 - p0[..., 0, None, None] - tt * d[..., 0, None, None]) ** 2
        + (xx4 - p0[..., 1, None, None] - tt * d[..., 1, None, None]) ** 2
    )
    width = rng.uniform(0.5, 0.9, (m, n_lines, 1, 1)) * s
    active = rng.uniform(size=(m, n_lines, 1, 1)) < 0.55
    level = rng.uniform(0.5, 0.9, (m, n_lines, 1, 1))
    a = _alpha(width - dist) * active
    for k in range(n_lines):
        img = img * (1.0 - a[:, k]) + level[:, k] * a[:, k]

    dc = rng.uniform(0.08, 0.92, (m, n_dots, 2)) * size
    dr = rng.uniform(0.8, 2.0, (m, n_dots, 1, 1)) * s
    dist = np.sqrt((yy4 - dc[..., 0, None, None]) ** 2 + (xx4 - dc[..., 1, None, None]) ** 2)
    active = rng.uniform(size=(m, n_dots, 1, 1)) < 0.6
    level = rng.uniform(0.55, 0.95, (m, n_dots, 1, 1))
    a = _alpha(dr - dist) * active
    for k in range(n_dots):
        img = img * (1.0 - a[:, k]) + level[:, k] * a[:, k]

    # Organs (targets): 1-3 bright textured ellipses of random size and orientation.
    n_org = 3
    count = rng.integers(1, n_org + 1, m)
    active = np.arange(n_org)[None, :] < count[:, None]  # (m, K)
    oc = rng.uniform(0.22, 0.78, (m, n_org, 2)) * size
    oa = rng.uniform(0.09, 0.20, (m, n_org)) * size
    ob = np.maximum(oa * rng.uniform(0.5, 1.0, (m, n_org)), 0.065 * size)
    oth = rng.uniform(0.0, np.pi, (m, n_org))
    dy = yy4 - oc[..., 0, None, None]
    dx = xx4 - oc[..., 1, None, None]
    c, sn = np.cos(oth)[..., None, None], np.sin(oth)[..., None, None]
    u = dx * c + dy * sn
    v = -dx * sn + dy * c
    a2, b2 = (oa**2)[..., None, None], (ob**2)[..., None, None]
    f = u**2 / a2 + v**2 / b2 - 1.0  # implicit ellipse, < 0 inside
    grad = 2.0 * np.sqrt(u**2 / a2**2 + v**2 / b2**2) + 1e-6
    alpha = _alpha(-f / grad) * active[..., None, None]
    inside = (f <= 0.0) & active[..., None, None]
    level = rng.uniform(0.62, 0.9, (m, n_org, 1, 1))
    texture = 1.0 + 0.06 * _smooth_noise(rng, (m, n_org), 8, size)
    for k in range(n_org):
        img = img * (1.0 - alpha[:, k]) + (level[:, k] * texture[:, k]) * alpha[:, k]
    mask = inside.any(axis=1)

    sigma = rng.uniform(0.02, 0.05, (m, 1, 1))
    img = img + sigma * rng.standard_normal(img.shape)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    return img[:, None], mask[:, None].astype(np.float32)


def make_segmentation(n: int, *, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate a medical-looking binary segmentation task.

    Each grayscale image shows a dim, smoothly textured body outline on a dark background, one to
    three bright textured "organ" ellipses of random size (semi-axes about 4-13 px at 64 px) and
    orientation -- the targets -- and bright distractors that are not targets: thin lines (about
    1-2 px wide) and small dots (radius 1-2 px). Gaussian noise is added last. Organs may overlap
    each other and cover distractors; the mask is the union of the organ interiors.

    Args:
        n: number of images.
        size: image height and width in pixels (>= 16); pixel-sized parameters scale with it.
        seed: random seed; the same ``(n, size, seed)`` always gives the same arrays.

    Returns:
        ``(images, masks)``: images ``(n, 1, size, size)`` float32 in ``[0, 1]``; masks
        ``(n, 1, size, size)`` float32 with values exactly 0.0 or 1.0 (1 = organ). Both C-contiguous.

    Raises:
        ConvscopeError: ``n`` negative or ``size`` < 16.
    """
    _check_n_size(n, size, 16)
    rng = np.random.default_rng([seed, 2])
    images = np.empty((n, 1, size, size), dtype=np.float32)
    masks = np.empty((n, 1, size, size), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        images[start:stop], masks[start:stop] = _segmentation_chunk(rng, stop - start, size)
    return images, masks


# --------------------------------------------------------------------------- single samples

_TASK_ALIASES = {"classification": "classification", "cnn": "classification", "segmentation": "segmentation", "unet": "segmentation"}


def sample_image(task: str, seed: int = 0, *, size: int = 64) -> np.ndarray:
    """One example input of a demo task.

    Args:
        task: ``"classification"`` (alias ``"cnn"``) or ``"segmentation"`` (alias ``"unet"``).
        seed: random seed of the generator.
        size: height and width in pixels.

    Returns:
        ``(C, size, size)`` float32 in ``[0, 1]``: ``C`` = 3 (RGB) for classification, 1 for
        segmentation.

    Raises:
        ConvscopeError: unknown task.
    """
    key = _TASK_ALIASES.get(str(task).lower())
    if key is None:
        raise ConvscopeError(f"unknown demo task {task!r}; use one of {', '.join(repr(t) for t in TASKS)}")
    if key == "classification":
        images, _ = make_shapes_classification(1, size=size, seed=seed)
    else:
        images, _ = make_segmentation(1, size=size, seed=seed)
    return np.ascontiguousarray(images[0])
