"""The Grad-CAM family in numpy: one N-D implementation per method (1, 2 or 3 spatial axes).

Every method maps a layer's activations ``A`` and (for gradient methods) the gradient ``G = dS/dA``
of the objective score ``S``, both ``(N, C, *spatial)`` float32, to a *signed* map
``raw`` ``(N, *spatial)`` float32, "as the method defines it, before ReLU, resampling or
normalisation". Sums and means over "space" are over all spatial axes of the layer.

=============  =======================================================================================
``gradcam``    ``w_c = mean_space G_c``; ``raw = sum_c w_c A_c`` (Selvaraju et al. 2017)
``gradcam++``  ``alpha = G^2 / (2 G^2 + sum_space(A) G^3)`` (0 where the denominator is 0),
               ``w_c = sum_space alpha relu(G_c)``; ``raw = sum_c w_c A_c`` (Chattopadhyay et al.
               2018, Eq. 19, the closed form for ``exp(S)``)
``hirescam``   ``raw = sum_c G_c A_c`` (element-wise; Draelos & Carin 2020)
``xgradcam``   ``w_c = sum_space(G_c A_c) / sum_space(A_c)`` (0 where ``sum A_c`` is 0);
               ``raw = sum_c w_c A_c`` (Fu et al. 2020)
``layercam``   ``raw = sum_c relu(G_c) A_c`` (Jiang et al. 2021)
``eigencam``   the projection of the channel-centred ``(positions x C)`` activation matrix on its top
               right singular vector (Muhammad & Yeasin 2020); computed from the ``C x C`` Gram
               matrix (float64), never a full SVD; sign chosen so the map correlates positively with
               the channel-mean activation. No gradient.
``scorecam``   ``w = softmax_c(S(x * M_c) - S(x))`` with ``M_c`` the channel min-max normalised at
               the layer's resolution, upsampled linearly to the input; ``raw = sum_c w_c A_c``
               (Wang et al. 2020; torchcam's convention). Forward passes only.
``inputxgrad`` ``raw = sum_channels x * dS/dx`` at the input
``saliency``   ``raw = max_channels |dS/dx|`` at the input (Simonyan et al. 2014)
=============  =======================================================================================

Post-processing (:class:`PostProcess`, all stated in manifests): optional ReLU (default on),
linear resampling to the input size (bilinear/trilinear, ``align_corners=False``, same formula as
``torch.nn.functional.interpolate``; never cubic, so a non-negative map stays non-negative), then
normalisation (default: divide by the maximum, per image; ``"minmax"``, ``"none"``; scope ``"image"``
or ``"shared"`` across all maps of one call / all U-Net levels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConvscopeError

__all__ = [
    "GRADIENT_METHODS",
    "INPUT_METHODS",
    "FORWARD_METHODS",
    "METHODS",
    "PostProcess",
    "gradient_cam",
    "gradient_cams",
    "gradcam",
    "gradcam_pp",
    "hirescam",
    "xgradcam",
    "layercam",
    "eigencam",
    "input_x_gradient",
    "saliency",
    "scorecam",
    "scorecam_passes",
    "resize_linear",
    "postprocess",
    "map_notes",
    "check_methods",
]

GRADIENT_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam")
"""Methods from one forward + one backward pass at a layer."""
INPUT_METHODS: tuple[str, ...] = ("inputxgrad", "saliency")
"""Methods at the input (the same backward pass, gradient w.r.t. the input batch)."""
FORWARD_METHODS: tuple[str, ...] = ("eigencam", "scorecam")
"""Methods without gradients (they work on ONNX models too)."""
METHODS: tuple[str, ...] = GRADIENT_METHODS + FORWARD_METHODS + INPUT_METHODS

_ALIASES = {
    "grad-cam": "gradcam", "gradcampp": "gradcam++", "grad-cam++": "gradcam++", "gradcamplusplus": "gradcam++",
    "hires-cam": "hirescam", "xgrad-cam": "xgradcam", "layer-cam": "layercam", "eigen-cam": "eigencam",
    "score-cam": "scorecam", "input_x_gradient": "inputxgrad", "inputxgradient": "inputxgrad",
    "input-x-gradient": "inputxgrad", "ixg": "inputxgrad",
}


def check_methods(methods: str | Sequence[str]) -> list[str]:
    """Canonical method names (aliases like ``"grad-cam"`` accepted); unknown names raise with close matches."""
    from ..errors import close_matches

    items = [methods] if isinstance(methods, str) else list(methods)
    if not items:
        raise ConvscopeError(f"give at least one method: {', '.join(METHODS)}")
    out = []
    for item in items:
        key = str(item).strip().lower()
        key = _ALIASES.get(key, key)
        if key not in METHODS:
            near = close_matches(key, METHODS)
            raise ConvscopeError(
                f"unknown CAM method {item!r}; choose from {', '.join(METHODS)}"
                + (f" (did you mean {', '.join(near)}?)" if near else "")
            )
        if key not in out:
            out.append(key)
    return out


def _check_pair(acts: np.ndarray, grads: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    a = np.asarray(acts, dtype=np.float32)
    if a.ndim < 3:
        raise ConvscopeError(
            f"CAM needs a spatial layer output (N, C, *spatial); this layer gives shape {a.shape}: "
            "choose a convolution (or other spatial) layer"
        )
    if grads is None:
        return a, None
    g = np.asarray(grads, dtype=np.float32)
    if g.shape != a.shape:
        raise ConvscopeError(f"gradient shape {g.shape} differs from the activation shape {a.shape}")
    return a, g


def _space(a: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, a.ndim))


def _weighted(weights: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """``sum_c w[n, c] A[n, c]`` -> ``(N, *spatial)`` float32 (one float32 BLAS product per sample)."""
    n, c = acts.shape[:2]
    flat = acts.reshape(n, c, -1)
    w = np.asarray(weights, dtype=np.float32)
    out = np.empty((n, flat.shape[2]), dtype=np.float32)
    for i in range(n):
        np.dot(w[i], flat[i], out=out[i])
    return out.reshape((n, *acts.shape[2:]))


def gradient_cams(methods: Sequence[str], acts: np.ndarray, grads: np.ndarray) -> dict[str, np.ndarray]:
    """The gradient methods of one layer, ``(N, C, *S)`` x2 -> ``{method: (N, *S) float32}``.

    The one implementation of every gradient method (the single-method functions call it). Several
    methods of a layer share the work, and nothing of the activation's size is allocated: element-wise
    sums are ``einsum`` contractions, Grad-CAM++ and LayerCAM loop over channels with reused buffers
    (temporaries the size of a layer cost more in page faults than the arithmetic). Channel weights are
    accumulated in float64. Grad-CAM++'s Eq. 19 weights use the exact simplification
    ``alpha relu(G) = relu(G) / (2 + sum(A) G)`` (``G^2`` cancels where ``alpha`` is defined; 0 where the
    denominator ``G^2 (2 + sum(A) G)`` is 0).
    """
    a, g = _check_pair(acts, grads)
    assert g is not None
    for m in methods:
        if m not in GRADIENT_METHODS:
            raise ConvscopeError(f"{m!r} is not a gradient CAM method; use one of {', '.join(GRADIENT_METHODS)}")
    n, c = a.shape[:2]
    spatial = a.shape[2:]
    fa = a.reshape(n, c, -1)
    fg = g.reshape(n, c, -1)
    p = fa.shape[2]
    out: dict[str, np.ndarray] = {}
    weights: dict[str, np.ndarray] = {}
    if "gradcam" in methods:
        weights["gradcam"] = fg.sum(axis=2, dtype=np.float64) / max(p, 1)
    if "xgradcam" in methods:
        num = np.einsum("ncp,ncp->nc", fa, fg).astype(np.float64)
        den = fa.sum(axis=2, dtype=np.float64)
        weights["xgradcam"] = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
    if "hirescam" in methods:
        out["hirescam"] = np.einsum("ncp,ncp->np", fa, fg)
    if "gradcam++" in methods or "layercam" in methods:
        buf = np.empty(p, dtype=np.float32)
        den_buf = np.empty(p, dtype=np.float32)
        ok = np.empty(p, dtype=bool)
        w_pp = np.zeros((n, c), dtype=np.float64)
        lcam = np.zeros((n, p), dtype=np.float32)
        a_sum = fa.sum(axis=2, dtype=np.float64).astype(np.float32)
        for i in range(n):
            for k in range(c):
                np.maximum(fg[i, k], np.float32(0.0), out=buf)  # relu(G)
                if "layercam" in methods:
                    lcam[i] += buf * fa[i, k]
                if "gradcam++" in methods:
                    np.multiply(fg[i, k], a_sum[i, k], out=den_buf)
                    den_buf += np.float32(2.0)
                    np.not_equal(den_buf, 0, out=ok)
                    np.divide(buf, den_buf, out=buf, where=ok)
                    buf[~ok] = 0.0
                    w_pp[i, k] = buf.sum(dtype=np.float64)
        if "gradcam++" in methods:
            weights["gradcam++"] = w_pp
        if "layercam" in methods:
            out["layercam"] = lcam
    for name, w in weights.items():
        w32 = w.astype(np.float32)
        maps = np.empty((n, p), dtype=np.float32)
        for i in range(n):
            np.dot(w32[i], fa[i], out=maps[i])
        out[name] = maps
    return {m: np.ascontiguousarray(out[m].reshape((n, *spatial)), dtype=np.float32) for m in methods}


def gradient_cam(method: str, acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """One of :data:`GRADIENT_METHODS`: ``(N, C, *S) x2 -> (N, *S)`` (see :func:`gradient_cams`)."""
    return gradient_cams([method], acts, grads)[method]


def gradcam(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM: channel weights = spatial mean of the gradient. ``(N, C, *S) x2 -> (N, *S)``."""
    return gradient_cam("gradcam", acts, grads)


def gradcam_pp(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM++, the paper's closed form (Eq. 19): see the module docstring."""
    return gradient_cam("gradcam++", acts, grads)


def hirescam(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """HiResCAM: element-wise gradient x activation summed over channels."""
    return gradient_cam("hirescam", acts, grads)


def xgradcam(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """XGrad-CAM: ``w_c = sum(G_c A_c) / sum(A_c)`` (0 where a channel sums to 0)."""
    return gradient_cam("xgradcam", acts, grads)


def layercam(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """LayerCAM: ``sum_c relu(G_c) A_c`` element-wise."""
    return gradient_cam("layercam", acts, grads)


def _top_right_singular_vector(m: np.ndarray) -> np.ndarray:
    """Top right singular vector ``v`` (``(C,)``) of ``m`` ``(P, C)``, from the ``C x C`` Gram matrix.

    ``m.T @ m`` costs ``P C^2`` flops and ``C^2`` memory; its top eigenvector is the top right
    singular vector of ``m``. Never forms the ``P x P`` left factor a full SVD would. Above 256
    channels only the top eigenpair is computed (Lanczos, ``scipy.sparse.linalg.eigsh``).
    """
    gram = m.T @ m
    if gram.shape[0] > 256:  # many channels: Lanczos for the top eigenpair only (scipy), when available
        try:
            from scipy.sparse.linalg import eigsh

            _, vec = eigsh(gram, k=1, which="LA", tol=1e-10)
            return vec[:, 0]
        except ImportError:  # pragma: no cover - scipy is optional
            pass
    _, vecs = np.linalg.eigh(gram)
    return vecs[:, -1]


def eigencam(acts: np.ndarray) -> np.ndarray:
    """Eigen-CAM: per sample, project the channel-centred activations on the top singular direction.

    ``(N, C, *S) -> (N, *S)``. The sign (arbitrary in any SVD) is chosen so that the map correlates
    positively with the channel-mean activation (ties: positive sum).
    """
    a, _ = _check_pair(acts)
    n, c = a.shape[:2]
    out = np.zeros((n, int(np.prod(a.shape[2:]))), dtype=np.float32)
    for i in range(n):
        m = a[i].reshape(c, -1).T.astype(np.float64)  # (P, C)
        m -= m.mean(axis=0, keepdims=True)
        if not np.any(m):
            continue
        v = _top_right_singular_vector(m)
        proj = m @ v
        ref = a[i].reshape(c, -1).mean(axis=0, dtype=np.float64)
        ref = ref - ref.mean()
        corr = float(proj @ ref)
        if corr < 0 or (corr == 0 and proj.sum() < 0):
            proj = -proj
        out[i] = proj.astype(np.float32)
    return out.reshape((n, *a.shape[2:]))


def input_x_gradient(batch: np.ndarray, input_gradient: np.ndarray) -> np.ndarray:
    """``sum_channels x * dS/dx`` -> ``(N, *S)`` at the input resolution."""
    x, g = _check_pair(batch, input_gradient)
    assert g is not None
    return (x.astype(np.float64) * g).sum(axis=1).astype(np.float32)


def saliency(input_gradient: np.ndarray) -> np.ndarray:
    """``max_channels |dS/dx|`` -> ``(N, *S)`` (non-negative by definition)."""
    g, _ = _check_pair(input_gradient)
    return np.abs(g).max(axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Score-CAM (forward passes only)
# ------------------------------------------------------------------------------------------------


def scorecam_passes(acts_shapes: Sequence[tuple[int, ...]]) -> int:
    """Forward passes Score-CAM needs: one masked input per sample and channel of every layer (+1 clean)."""
    return 1 + sum(int(s[0]) * int(s[1]) for s in acts_shapes)


def _minmax_channels(a: np.ndarray) -> np.ndarray:
    axes = _space(a)
    lo = a.min(axis=axes, keepdims=True)
    hi = a.max(axis=axes, keepdims=True)
    span = hi - lo
    return np.divide(a - lo, span, out=np.zeros_like(a), where=span > 0).astype(np.float32)


class BatchTuner:
    """Masked inputs per forward pass for Score-CAM: tuned for throughput, never above ``cap``.

    On a CPU a bigger batch is not always faster per input (the activations of a big batch leave
    the caches: the demo U-Net ran 32 masked inputs 1.7x faster as two batches of 16 than as one of
    32), so the plan starts at ``min(cap, start)`` and doubles while the time per input of the last
    pass improves by at least ``gain``, then keeps the best size. Every pass does useful work (no
    trial runs); ``cap`` comes from the memory budget. ``fixed=True`` always uses ``cap``.
    """

    def __init__(self, cap: int, *, start: int = 8, gain: float = 0.1, fixed: bool = False) -> None:
        self.cap = max(1, int(cap))
        self.size = self.cap if fixed else min(self.cap, max(1, int(start)))
        self._gain = float(gain)
        self._settled = fixed or self.size >= self.cap
        self._best: tuple[float, int] | None = None
        self.passes = 0
        self.largest = 0
        """The most masked inputs one pass has held so far."""

    def record(self, inputs: int, seconds: float) -> None:
        """One forward pass of ``inputs`` masked inputs took ``seconds``: pick the next size."""
        self.passes += 1
        self.largest = max(self.largest, int(inputs))
        if self._settled or inputs < self.size:  # a short last pass says nothing about the size
            return
        per = seconds / max(inputs, 1)
        if self._best is None or per < self._best[0] * (1.0 - self._gain):
            self._best = (per, self.size)
            if self.size >= self.cap:
                self._settled = True
            else:
                self.size = min(self.cap, self.size * 2)
        else:  # no better than the best: go back to it and stay
            self.size = self._best[1]
            self._settled = True


def scorecam(
    acts: np.ndarray,
    batch: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    baseline: np.ndarray,
    *,
    chunk: int | BatchTuner = 32,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Score-CAM map of one layer. ``acts`` ``(N, C, *S)``, ``batch`` ``(N, Cin, *In)``.

    Args:
        score: ``score(masked_inputs, sample_index)`` -> ``(B,)`` objective score of each masked input
            (one forward pass of the batch ``masked_inputs``); ``sample_index[b]`` is the sample
            whose frozen target applies.
        baseline: ``(N,)`` the clean scores.
        chunk: masked inputs per forward pass (an int, or a :class:`BatchTuner` sized to a memory
            budget and tuned for throughput).
        progress: called with the number of masked inputs done after each pass.

    A channel that is constant over the map (a dead channel) has an all-zero mask: its masked input
    is all zeros, the same for every such channel of a sample, so it is scored once per sample
    (exactly the score each of them would get).

    Returns:
        ``(N, *S)`` float32 ``sum_c softmax_c(score_c - baseline) A_c``.
    """
    import time

    a, _ = _check_pair(acts)
    x = np.asarray(batch, dtype=np.float32)
    n, c = a.shape[:2]
    in_size = tuple(x.shape[2:])
    flat = a.reshape(n * c, -1)
    constant = flat.min(axis=1) == flat.max(axis=1)  # minmax scaling gives these an all-zero mask
    masks = _minmax_channels(a).reshape(n * c, *a.shape[2:])
    sample = np.repeat(np.arange(n), c)
    scores = np.zeros(n * c, dtype=np.float64)
    plan = chunk if isinstance(chunk, BatchTuner) else BatchTuner(int(chunk), fixed=True)
    live = np.flatnonzero(~constant)
    dead_samples = np.unique(sample[constant])
    if dead_samples.size:  # one all-zero input per sample with a dead channel
        zero_scores = np.asarray(score(np.zeros((dead_samples.size, *x.shape[1:]), dtype=np.float32), dead_samples),
                                 dtype=np.float64).reshape(-1)
        plan.passes += 1
        plan.largest = max(plan.largest, int(dead_samples.size))
        lookup = dict(zip(dead_samples.tolist(), zero_scores.tolist()))
        scores[constant] = [lookup[int(k)] for k in sample[constant]]
        if progress is not None:
            progress(int(constant.sum()))
    start = 0
    while start < live.size:
        rows = live[start : start + plan.size]
        began = time.perf_counter()
        up = resize_linear(masks[rows], in_size)  # (B, *In)
        masked = x[sample[rows]] * up[:, None]
        scores[rows] = np.asarray(score(masked, sample[rows]), dtype=np.float64).reshape(-1)
        plan.record(rows.size, time.perf_counter() - began)
        start += rows.size
        if progress is not None:
            progress(int(rows.size))
    diff = scores.reshape(n, c) - np.asarray(baseline, dtype=np.float64).reshape(n, 1)
    diff -= diff.max(axis=1, keepdims=True)
    weights = np.exp(diff)
    weights /= weights.sum(axis=1, keepdims=True)
    return _weighted(weights, a)


# ------------------------------------------------------------------------------------------------
# resampling and post-processing
# ------------------------------------------------------------------------------------------------


def _axis_linear(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights of 1-D linear resampling, ``align_corners=False`` (torch's formula)."""
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).astype(np.float32)
    return i0, i1, lam


def resize_linear(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Linear (bilinear / trilinear) resampling of ``(N, *S)`` maps to ``(N, *size)``, ``align_corners=False``.

    Separable, one axis at a time; the same sample positions and weights as
    ``torch.nn.functional.interpolate(mode="linear"|"bilinear"|"trilinear", align_corners=False)``
    (agreement within float32 rounding). Output values stay within the input's range (no overshoot).
    """
    out = np.asarray(maps, dtype=np.float32)
    size = tuple(int(s) for s in size)
    if out.ndim != len(size) + 1:
        raise ConvscopeError(f"cannot resize maps of shape {out.shape} to spatial size {size}")
    for axis, n_out in enumerate(size, start=1):
        n_in = out.shape[axis]
        if n_in == n_out:
            continue
        i0, i1, lam = _axis_linear(n_in, n_out)
        shape = [1] * out.ndim
        shape[axis] = n_out
        w1 = lam.reshape(shape)
        lo = np.take(out, i0, axis=axis)
        hi = np.take(out, i1, axis=axis)
        out = lo * (np.float32(1.0) - w1) + hi * w1
    return np.ascontiguousarray(out, dtype=np.float32)


@dataclass(frozen=True)
class PostProcess:
    """What happens to ``raw`` before it becomes ``data`` (stamped into every manifest).

    Attributes:
        relu: clamp negatives to 0 first (default True: CAMs show evidence *for* the target).
        normalize: ``"max"`` (divide by the maximum: 0 stays 0, the default), ``"minmax"``
            (``(v - min) / (max - min)``), or ``"none"`` (keep the method's units).
        scope: ``"image"`` (one scale per image and map, the default) or ``"shared"`` (one scale per
            image across every map of the call: all layers and methods, all U-Net levels).
        resample: always ``"linear"`` (bilinear in 2D, trilinear in 3D, ``align_corners=False``).
    """

    relu: bool = True
    normalize: Literal["max", "minmax", "none"] = "max"
    scope: Literal["image", "shared"] = "image"
    resample: str = "linear"

    def __post_init__(self) -> None:
        if self.normalize not in ("max", "minmax", "none"):
            raise ConvscopeError(f"normalize must be 'max', 'minmax' or 'none', got {self.normalize!r}")
        if self.scope not in ("image", "shared"):
            raise ConvscopeError(f"normalisation scope must be 'image' or 'shared', got {self.scope!r}")
        if self.resample != "linear":
            raise ConvscopeError("only linear resampling (bilinear/trilinear, align_corners=False) is offered")

    def describe(self) -> dict[str, Any]:
        dims = {1: "linear", 2: "bilinear", 3: "trilinear"}
        return {
            "relu": self.relu,
            "resample": "linear (" + "/".join(dims.values()) + "), align_corners=False",
            "normalize": self.normalize,
            "normalize_scope": {"image": "per image", "shared": "per image, shared across all maps of the call"}[
                self.scope
            ],
        }


def postprocess(
    raws: Sequence[np.ndarray], size: Sequence[int], post: PostProcess
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """ReLU, resample and normalise several ``(N, *S_i)`` maps to ``(N, *size)``.

    Returns:
        ``(data, scales)``: the maps ``(N, *size)`` float32 and per map the ``(N, 2)`` ``[lo, hi]``
        each image was mapped from (``data = (v - lo) / (hi - lo)``; ``[0, 1]`` rows for
        ``normalize="none"`` mean "unchanged"). A map whose range is empty stays as it is (zeros are
        not stretched into noise).
    """
    resized = []
    for raw in raws:
        r = np.asarray(raw, dtype=np.float32)
        if post.relu:
            r = np.maximum(r, np.float32(0.0))
        resized.append(resize_linear(r, size))
    if not resized:
        return [], []
    n = resized[0].shape[0]
    flat = [m.reshape(n, -1) for m in resized]
    if post.normalize == "none":
        ident = np.tile(np.array([[0.0, 1.0]], dtype=np.float32), (n, 1))
        return resized, [ident.copy() for _ in resized]
    if post.scope == "shared":
        hi_all = np.max(np.stack([f.max(axis=1) for f in flat]), axis=0)
        lo_all = np.min(np.stack([f.min(axis=1) for f in flat]), axis=0)
        bounds = [(lo_all, hi_all)] * len(flat)
    else:
        bounds = [(f.min(axis=1), f.max(axis=1)) for f in flat]
    data, scales = [], []
    for m, (lo, hi) in zip(resized, bounds):
        lo = lo.astype(np.float32)
        hi = hi.astype(np.float32)
        if post.normalize == "max":
            lo = np.zeros_like(hi)
            hi = np.where(hi > 0, hi, np.float32(0.0))
        span = hi - lo
        shape = (n,) + (1,) * (m.ndim - 1)
        safe = np.where(span > 0, span, np.float32(1.0)).reshape(shape)
        out = np.where(span.reshape(shape) > 0, (m - lo.reshape(shape)) / safe, m)
        data.append(out.astype(np.float32))
        scales.append(np.stack([lo, hi], axis=1).astype(np.float32))
    return data, scales


def map_notes(raw: np.ndarray, *, grads: np.ndarray | None = None, relu: bool = True) -> list[str]:
    """Plain-language reasons a map is empty, per sample (``"sample 0: ..."``); empty list if all is well."""
    notes = []
    r = np.asarray(raw)
    for i in range(r.shape[0]):
        if grads is not None and not np.any(grads[i]):
            notes.append(f"sample {i}: gradient is zero at this layer: the target does not depend on it")
            continue
        finite = r[i][np.isfinite(r[i])]
        if finite.size == 0:
            notes.append(f"sample {i}: the map has no finite value")
        elif not np.any(finite):
            notes.append(f"sample {i}: the map is zero everywhere")
        elif relu and finite.max() <= 0:
            notes.append(
                f"sample {i}: every value is <= 0 (min {finite.min():.3g}): after ReLU the map is zero; the evidence "
                "at this layer is against the target (see .raw, or relu=False)"
            )
    return notes

