"""Mergeable per-channel statistics: exact merges in any order, ties, duplicate detection."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from convscope.core.stats import DuplicateImagesError, LayerStats, check_disjoint, histogram_edges


def _data(n: int = 30, c: int = 5, hw: tuple[int, int] = (6, 7), seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    acts = np.maximum(rng.normal(0.2, 1.0, size=(n, c, *hw)), 0).astype(np.float32)
    acts[:, 3] = 0.0  # a dead channel
    acts[:, 4] = np.abs(acts[:, 4]) + 1.0  # always on
    if n > 9:
        acts[5, 1] = acts[9, 1] = 7.5  # an exact tie on the max, broken by image id
    ids = [f"img{i:03d}.png@{i:04x}" for i in range(n)]
    return acts, ids


def _scan(acts: np.ndarray, ids: list[str], batch: int, edges: np.ndarray, k: int = 4, score: str = "max") -> LayerStats:
    state = None
    for start in range(0, len(ids), batch):
        part = LayerStats.from_batch(acts[start:start + batch], ids[start:start + batch], k=k, score=score, edges=edges)
        state = part if state is None else state.merge(part)
    assert state is not None
    return state


@pytest.mark.usefixtures("histogram_backend")
def test_single_batch_matches_numpy():
    acts, ids = _data()
    state = LayerStats.from_batch(acts, ids, k=4)
    per = acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1).astype(np.float64)
    np.testing.assert_allclose(state.mean, per.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(state.m2 / per.shape[1], per.var(axis=1), rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(state.min, per.min(axis=1))
    np.testing.assert_array_equal(state.max, per.max(axis=1))
    np.testing.assert_array_equal(state.zeros, (per == 0).sum(axis=1))
    np.testing.assert_array_equal(state.positive, (per > 0).sum(axis=1))
    for c in range(acts.shape[1]):
        counts, _ = np.histogram(per[c], bins=state.edges)
        np.testing.assert_array_equal(state.hist[c, 1:-1], counts)
    assert state.hist.sum(axis=1).tolist() == [per.shape[1]] * acts.shape[1]
    # top-k by spatial max, ties broken by image id ascending
    tops = state.examples(1)
    assert tops[0].score == pytest.approx(7.5) and tops[0].image_id == ids[5] and tops[1].image_id == ids[9]
    assert tops[0].position == tuple(int(v) for v in np.unravel_index(np.argmax(acts[5, 1]), acts.shape[2:]))
    scores = acts.reshape(acts.shape[0], acts.shape[1], -1).max(axis=2)
    expect = sorted(range(len(ids)), key=lambda i: (-scores[i, 0], ids[i]))[:4]
    assert [e.image_id for e in state.examples(0)] == [ids[i] for i in expect]
    low = sorted(range(len(ids)), key=lambda i: (scores[i, 0], ids[i]))[:4]
    assert [e.image_id for e in state.examples(0, bottom=True)] == [ids[i] for i in low]
    assert state.dead_channels() == [3]
    assert state.always_on_channels() == [4]


@pytest.mark.parametrize("score", ["max", "mean"])
def test_three_shards_merge_exactly_in_any_order(score):
    acts, ids = _data(n=36)
    edges = histogram_edges(acts[:8])
    whole = _scan(acts, ids, 8, edges, score=score)
    shards = [_scan(acts[a:b], ids[a:b], 8, edges, score=score) for a, b in ((0, 12), (12, 20), (20, 36))]
    for order in itertools.permutations(range(3)):
        merged = shards[order[0]].copy()
        for i in order[1:]:
            merged.merge(shards[i].copy())
        for name in ("count", "min", "max", "zeros", "positive", "hist", "top_score", "top_id", "top_pos",
                     "bottom_score", "bottom_id", "bottom_pos"):
            np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name), err_msg=name)
        np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-6)
        np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-6)


def test_batch_size_does_not_change_exact_fields():
    acts, ids = _data(n=20)
    edges = histogram_edges(acts[:4])
    a, b = _scan(acts, ids, 3, edges), _scan(acts, ids, 20, edges)
    assert a.equal(b, rtol=1e-6)


def test_round_trip_arrays():
    acts, ids = _data()
    state = LayerStats.from_batch(acts, ids, k=3)
    again = LayerStats.from_arrays({k: v.copy() for k, v in state.to_arrays().items()})
    assert again.equal(state)
    assert again.spatial == state.spatial and again.score == "max" and again.k == 3


def test_fewer_images_than_k_leaves_empty_slots():
    acts, ids = _data(n=2)
    state = LayerStats.from_batch(acts, ids, k=5)
    assert len(state.examples(0)) == 2
    other, _ = _data(n=1, seed=3)
    merged = state.copy().merge(LayerStats.from_batch(other, ["zzz@1"], k=5, edges=state.edges))
    assert len(merged.examples(0)) == 3 and int(merged.count[0]) == 3 * 42


def _brute_force_order(acts: np.ndarray, ids: list[str], c: int, *, descending: bool) -> list[str]:
    """Image ids of channel ``c`` by the documented total order: score (max), then id ascending."""
    scores = acts[:, c].reshape(len(ids), -1).max(axis=1).astype(np.float64)
    keyed = sorted(zip(ids, scores), key=lambda t: ((-t[1] if descending else t[1]), t[0]))
    return [i for i, _ in keyed]


def test_a_top_k_larger_than_the_data_keeps_one_slot_per_image():
    acts, ids = _data(n=30)
    edges = histogram_edges(acts.reshape(30, 5, -1)[:7], 64)
    state = _scan(acts, ids, 7, edges, k=1000)
    assert state.k == 1000
    for name in ("top_score", "top_id", "top_pos", "bottom_score", "bottom_id", "bottom_pos"):
        assert getattr(state, name).shape == (5, 30), name  # not (5, 1000)
    for c in range(5):
        assert [e.image_id for e in state.examples(c)] == _brute_force_order(acts, ids, c, descending=True)
        assert [e.image_id for e in state.examples(c, bottom=True)] == _brute_force_order(acts, ids, c, descending=False)
    # shards of other sizes, merged in any order, give the same arrays bit for bit
    cuts = [(0, 3), (3, 17), (17, 30)]
    parts = [_scan(acts[a:b], ids[a:b], 4, edges, k=1000) for a, b in cuts]
    for order in itertools.permutations(range(3)):
        merged = parts[order[0]].copy().merge(parts[order[1]]).merge(parts[order[2]])
        for name in ("top_score", "top_id", "top_pos", "bottom_score", "bottom_id", "bottom_pos", "hist", "count"):
            np.testing.assert_array_equal(getattr(merged, name), getattr(state, name), err_msg=f"{order} {name}")


def test_a_state_padded_to_k_by_an_earlier_build_merges_to_the_same_examples():
    from convscope.core.stats import _widen

    acts, ids = _data(n=30)
    edges = histogram_edges(acts.reshape(30, 5, -1)[:6], 64)
    first = _scan(acts[:6], ids[:6], 6, edges, k=10)
    padded = first.copy()
    for end, descending in (("top", True), ("bottom", False)):  # the (C, k) layout files used to have
        arrays = _widen(*(getattr(padded, f"{end}_{f}") for f in ("score", "id", "pos")), 10, descending=descending)
        for f, value in zip(("score", "id", "pos"), arrays):
            setattr(padded, f"{end}_{f}", value)
    assert padded.top_id.shape == (5, 10) and first.top_id.shape == (5, 6)
    rest = _scan(acts[6:], ids[6:], 8, edges, k=10)
    a, b = first.copy().merge(rest), padded.merge(rest)
    for c in range(5):
        assert a.examples(c) == b.examples(c) and a.examples(c, bottom=True) == b.examples(c, bottom=True)
        assert [e.image_id for e in a.examples(c)] == _brute_force_order(acts, ids, c, descending=True)[:10]


def test_duplicate_ids_detected():
    with pytest.raises(DuplicateImagesError, match="in both scans"):
        check_disjoint(["a@1", "b@2"], ["b@2", "c@3"])
    check_disjoint(["a@1"], ["a@2"])  # same path, changed content: different images


def test_different_edges_refused():
    acts, ids = _data()
    a = LayerStats.from_batch(acts[:5], ids[:5])
    b = LayerStats.from_batch(acts[5:], ids[5:])
    with pytest.raises(ValueError, match="edges"):
        a.merge(b)


def test_state_size_independent_of_images():
    small = LayerStats.from_batch(*_data(n=4), k=4)
    big = LayerStats.from_batch(*_data(n=64), k=4)
    size = lambda s: sum(v.nbytes for v in s.to_arrays().values())  # noqa: E731
    assert size(small) == size(big)


def test_selection_equals_the_full_lexicographic_order_with_many_ties():
    from convscope.core.stats import _select

    rng = np.random.default_rng(4)
    scores = np.round(rng.random((200, 24)) * 4) / 4  # 5 distinct values: ties everywhere
    scores[:50] = rng.random((50, 24))  # some rows without ties
    ids = np.array([f"im{i:02d}".encode() for i in rng.permutation(24)])[None].repeat(200, 0)
    ids[3, 5:] = b""  # a row with empty slots
    pos = rng.integers(0, 3, size=(200, 24))
    for descending in (True, False):
        s, i, p = _select(scores, ids, pos, 6, descending=descending)
        for row in range(200):
            entries = [(scores[row, j], ids[row, j], pos[row, j]) for j in range(24) if ids[row, j]]
            entries.sort(key=lambda e: (-e[0] if descending else e[0], e[1], e[2]))
            want = entries[:6]
            assert [(float(a), b, int(c)) for a, b, c in zip(s[row], i[row], p[row]) if b] == [
                (float(a), b, int(c)) for a, b, c in want
            ]


@pytest.mark.usefixtures("histogram_backend")
def test_channel_chunks_do_not_change_any_field(monkeypatch):
    """The statistics are computed per cache-sized channel chunk; tiny chunks (one channel, and a
    partial last chunk) give the same state, bit for bit, as a single chunk."""
    import convscope.core.stats as stats

    rng = np.random.default_rng(7)
    acts = rng.normal(0.0, 2.0, size=(6, 7, 5, 9)).astype(np.float32)
    acts[:, 2] = np.maximum(acts[:, 2], 0)  # exact zeros
    acts[2, 5, 1, 1] = acts[4, 5, 3, 3] = acts[:, 5].max() + 1  # a tie on the max
    ids = [f"x{i}@{i}" for i in range(6)]
    edges = histogram_edges(acts[:2])
    results = []
    for chunk in (1 << 30, 6 * 45, 3 * 6 * 45 - 1):  # one chunk; one channel each; 2 channels, last one 1
        monkeypatch.setattr(stats, "_CHUNK_VALUES", chunk)
        for score in ("max", "mean"):
            results.append(LayerStats.from_batch(acts, ids, k=3, score=score, edges=edges))
    for again in results[2:]:
        assert again.equal(results[0] if again.score == "max" else results[1])
    # and the numbers are right: counts, zeros, positives, histogram of the interior bins
    per = acts.transpose(1, 0, 2, 3).reshape(7, -1)
    state = results[0]
    np.testing.assert_array_equal(state.zeros, (per == 0).sum(axis=1))
    np.testing.assert_array_equal(state.positive, (per > 0).sum(axis=1))
    np.testing.assert_array_equal(state.max, per.max(axis=1))
    best = per.reshape(7, 6, -1).max(axis=2).argmax(axis=1)  # first image with the max (ids ascend)
    np.testing.assert_array_equal(state.top_pos[:, 0], per.reshape(7, 6, -1).argmax(axis=2)[np.arange(7), best])
    for c in range(7):
        counts, _ = np.histogram(per[c], bins=state.edges)
        np.testing.assert_array_equal(state.hist[c, 1:-1], counts)
        assert state.hist[c].sum() == per.shape[1]


@pytest.mark.usefixtures("histogram_backend")
def test_non_finite_values_land_in_the_outer_bins():
    acts = np.zeros((2, 2, 3, 3), dtype=np.float32)
    acts[0, 0, 0, 0] = np.nan
    acts[0, 0, 0, 1] = np.inf
    acts[1, 0, 2, 2] = -np.inf
    acts[1, 1] = -0.0  # negative zero is a zero, and not positive
    acts[0, 1, 1, 1] = 0.5
    edges = np.linspace(-1.0, 1.0, 9)
    state = LayerStats.from_batch(acts, ["a@1", "b@2"], k=2, edges=edges)
    assert np.isnan(state.min[0]) and state.min[1] == 0.0 and state.max[1] == 0.5
    assert state.hist[0, 0] == 1 and state.hist[0, -1] == 2  # -inf under; +inf and NaN over
    assert state.hist[0].sum() == 18 and state.hist[1].sum() == 18
    assert state.zeros.tolist() == [15, 17] and state.positive.tolist() == [1, 1]
    assert state.hist[1, 1 + 4] == 17 and state.hist[1, 1 + 6] == 1  # 0 in [0, .25), 0.5 in [.5, .75)
    assert state.hist[0, 1 + 4] == 15


@pytest.mark.usefixtures("histogram_backend")
@pytest.mark.parametrize("chunk_values", [1 << 18, 64, 150])
def test_histogram_is_exact_for_relu_maps_in_any_chunking(monkeypatch, chunk_values):
    """Runs of zeros (a ReLU's output) and a last, partial channel chunk: the counts equal numpy's,
    whatever the chunk width (the per-lane copies of the histogram are summed exactly)."""
    from convscope.core import stats

    monkeypatch.setattr(stats, "_CHUNK_VALUES", chunk_values)
    rng = np.random.default_rng(7)
    acts = np.maximum(rng.standard_normal((3, 11, 5, 7)).astype(np.float32), 0)  # about half exact zeros
    acts[1, 4] = 0.0  # a whole map of zeros
    ids = [f"i{n}" for n in range(3)]
    edges = histogram_edges(acts, 16)
    state = LayerStats.from_batch(acts, ids, k=2, edges=edges)
    per = acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1)
    for c in range(acts.shape[1]):
        inner, _ = np.histogram(per[c], bins=state.edges)
        np.testing.assert_array_equal(state.hist[c, 1:-1], inner)
        assert state.hist[c, 0] == (per[c] < state.edges[0]).sum()
        assert state.hist[c, -1] == (per[c] >= state.edges[-1]).sum()
    assert state.hist.sum(axis=1).tolist() == [per.shape[1]] * acts.shape[1]


# -- the compiled histogram (numba) and the numpy one count alike ----------------------------------


@pytest.fixture(params=["numpy", "numba"])
def histogram_backend(request, monkeypatch):
    """Run a test with the numpy histogram and with numba's kernel (skipped where numba is missing)."""
    from convscope.core.fused import histogram_kernel

    if request.param == "numba":
        pytest.importorskip("numba")
        monkeypatch.setenv("CONVSCOPE_NUMBA", "1")
        assert histogram_kernel() is not None
    else:
        monkeypatch.setenv("CONVSCOPE_NUMBA", "0")
        assert histogram_kernel() is None
    return request.param


def _hard_values(seed: int) -> np.ndarray:
    """Normal and ReLU channels, values exactly on bin edges, +-inf, -0.0, huge values, a constant map."""
    rng = np.random.default_rng(seed)
    acts = rng.normal(0.0, 1.5, size=(5, 9, 7, 11)).astype(np.float32)
    acts[:, 1] = np.maximum(acts[:, 1], 0)
    edges = np.linspace(-3.0, 3.0, 17)
    acts[:, 2].flat[: edges.size] = edges.astype(np.float32)  # on the edges
    acts[0, 3, 0, :4] = [np.inf, -np.inf, -0.0, 3e38]
    acts[1, 3, 1, :2] = [-3e38, 1e-45]
    acts[:, 4] = 0.25
    return acts


@pytest.mark.parametrize("chunk_values", [1 << 18, 77, 5 * 77 * 3])
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_numba_and_numpy_histograms_are_identical(monkeypatch, chunk_values):
    pytest.importorskip("numba")
    from convscope.core import stats

    monkeypatch.setattr(stats, "_CHUNK_VALUES", chunk_values)
    acts = _hard_values(3)
    ids = [f"i{n}" for n in range(acts.shape[0])]
    edges = np.linspace(-3.0, 3.0, 17)
    got = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("CONVSCOPE_NUMBA", flag)
        got[flag] = LayerStats.from_batch(acts, ids, k=2, edges=edges)
    np.testing.assert_array_equal(got["0"].hist, got["1"].hist)
    a, b = got["0"].to_arrays(), got["1"].to_arrays()
    for key in a:  # every field the same (the channel with +-inf has a NaN mean in both)
        assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), key
    assert got["1"].hist[3, 0] >= 2 and got["1"].hist[3, -1] >= 2  # -inf, -3e38 under; +inf, 3e38 over
    assert got["1"].hist.sum(axis=1).tolist() == [5 * 77] * 9


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_chunk_with_nan_takes_the_numpy_histogram(histogram_backend):
    acts = _hard_values(4)
    acts[2, 6, 3, 3] = np.nan
    ids = [f"i{n}" for n in range(acts.shape[0])]
    state = LayerStats.from_batch(acts, ids, k=2, edges=np.linspace(-3.0, 3.0, 17))
    per = acts.transpose(1, 0, 2, 3).reshape(9, -1)
    assert np.isnan(state.min[6]) and state.hist[6, -1] == (per[6] >= 3.0).sum() + 1  # NaN counted as overflow
    for c in (0, 1, 5, 7, 8):
        inner, _ = np.histogram(per[c], bins=state.edges)
        np.testing.assert_array_equal(state.hist[c, 1:-1], inner)


def test_either_histogram_matches_numpy_histogram(histogram_backend):
    acts, ids = _data(n=12, c=6, hw=(9, 10), seed=5)
    state = LayerStats.from_batch(acts, ids, k=3)
    per = acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1)
    for c in range(acts.shape[1]):
        inner, _ = np.histogram(per[c], bins=state.edges)
        np.testing.assert_array_equal(state.hist[c, 1:-1], inner)
    assert state.hist.sum(axis=1).tolist() == [per.shape[1]] * acts.shape[1]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_histogram_edges_span_the_finite_range_widened_by_5_percent():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(3, 4, 5, 5)).astype(np.float32)
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo)
    np.testing.assert_array_equal(histogram_edges(values, 8), np.linspace(lo - pad, hi + pad, 9))
    values[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]  # ignored: the same edges
    np.testing.assert_array_equal(histogram_edges(values, 8), np.linspace(lo - pad, hi + pad, 9))
    np.testing.assert_array_equal(histogram_edges(np.full((2, 2), 3.0, np.float32), 4), np.linspace(1.9, 4.1, 5))
    for nothing in (np.zeros((0, 3), np.float32), np.full((2, 2), np.nan, np.float32)):
        np.testing.assert_array_equal(histogram_edges(nothing, 4), np.linspace(-1.1, 1.1, 5))
