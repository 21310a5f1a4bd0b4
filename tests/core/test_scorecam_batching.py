"""Score-CAM's batching in core.attribution: the throughput-tuned chunk plan and dead-channel scoring."""

from __future__ import annotations

import numpy as np

from convscope.core import attribution as at


def _linear_score(weights: np.ndarray):
    """A 'model' whose score is a fixed linear function of the input; records every batch it saw."""
    seen: list[np.ndarray] = []

    def score(masked: np.ndarray, sample: np.ndarray) -> np.ndarray:
        seen.append(masked.copy())
        return (masked.reshape(len(sample), -1) * weights.reshape(1, -1)).sum(axis=1) + sample

    return score, seen


def _reference(acts: np.ndarray, batch: np.ndarray, weights: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Score-CAM written out channel by channel (one 'forward pass' per mask)."""
    n, c = acts.shape[:2]
    out = np.zeros((n, *acts.shape[2:]), dtype=np.float64)
    for i in range(n):
        scores = []
        for k in range(c):
            a = acts[i, k]
            span = a.max() - a.min()
            mask = (a - a.min()) / span if span > 0 else np.zeros_like(a)
            up = at.resize_linear(mask[None].astype(np.float32), batch.shape[2:])[0]
            scores.append(float((batch[i] * up * weights).sum() + i))
        diff = np.array(scores) - baseline[i]
        w = np.exp(diff - diff.max())
        w /= w.sum()
        out[i] = np.tensordot(w, acts[i], axes=1)
    return out


def test_batch_tuner_doubles_while_faster_then_keeps_the_best_size() -> None:
    plan = at.BatchTuner(64, start=4)
    sizes = []
    for per_input in (1.0, 0.5, 0.3, 0.31):  # 4 -> 8 -> 16 -> 32 is no better than 16: back to 16
        sizes.append(plan.size)
        plan.record(plan.size, per_input * plan.size)
    assert sizes == [4, 8, 16, 32]
    assert plan.size == 16
    plan.record(16, 0.01)  # settled: later timings change nothing
    assert plan.size == 16 and plan.passes == 5


def test_batch_tuner_never_exceeds_its_cap_and_fixed_uses_the_cap() -> None:
    plan = at.BatchTuner(6, start=4)
    plan.record(4, 4.0)
    assert plan.size == 6
    plan.record(6, 0.1)
    assert plan.size == 6
    assert at.BatchTuner(12, fixed=True).size == 12
    assert at.BatchTuner(3, start=8).size == 3


def test_a_short_last_pass_does_not_steer_the_plan() -> None:
    plan = at.BatchTuner(64, start=8)
    plan.record(3, 100.0)  # a remainder pass, slow per input: ignored
    assert plan.size == 8


def test_scorecam_is_the_same_for_every_chunking_and_equals_the_per_mask_formula() -> None:
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((2, 7, 4, 5)).astype(np.float32)
    batch = rng.standard_normal((2, 3, 8, 10)).astype(np.float32)
    weights = rng.standard_normal((3, 8, 10)).astype(np.float32)
    baseline = np.array([0.5, -0.25])
    want = _reference(acts, batch, weights, baseline)
    for chunk in (1, 3, 14, at.BatchTuner(14, start=2)):
        score, _ = _linear_score(weights)
        got = at.scorecam(acts, batch, score, baseline, chunk=chunk)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_dead_channels_are_scored_once_per_sample_with_their_exact_score() -> None:
    rng = np.random.default_rng(1)
    acts = rng.standard_normal((2, 6, 4, 4)).astype(np.float32)
    acts[0, [1, 4]] = 0.0       # dead after a ReLU
    acts[1, 2] = 3.5            # constant, not zero: its min-max mask is zero too
    batch = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    weights = rng.standard_normal((1, 8, 8)).astype(np.float32)
    baseline = np.zeros(2)
    score, seen = _linear_score(weights)
    got = at.scorecam(acts, batch, score, baseline, chunk=64)
    np.testing.assert_allclose(got, _reference(acts, batch, weights, baseline), rtol=1e-5, atol=1e-6)
    inputs = sum(b.shape[0] for b in seen)
    assert inputs == 2 + (12 - 3)  # one zero input per sample with a dead channel, then the 9 live masks
    assert not seen[0].any()  # the zero inputs come first, as one pass


def test_progress_counts_every_masked_input_once() -> None:
    rng = np.random.default_rng(2)
    acts = rng.standard_normal((1, 9, 3, 3)).astype(np.float32)
    acts[0, 0] = 0.0
    done: list[int] = []
    score, _ = _linear_score(np.ones((1, 6, 6), dtype=np.float32))
    at.scorecam(acts, rng.standard_normal((1, 1, 6, 6)).astype(np.float32), score, np.zeros(1), chunk=4,
                progress=done.append)
    assert sum(done) == 9
