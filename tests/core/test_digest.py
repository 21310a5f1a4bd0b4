"""core.digest: one digest of named arrays, sensitive to everything that makes weights different."""

from __future__ import annotations

import numpy as np

from convscope.core.digest import DIGEST_PREFIX, digest_arrays


def _weights() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [("conv.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
            ("conv.bias", rng.standard_normal(4).astype(np.float32)),
            ("bn.num_batches_tracked", np.array(7, dtype=np.int64))]


def test_equal_arrays_give_the_same_digest_and_it_names_its_algorithm():
    a, b = digest_arrays(_weights()), digest_arrays([(n, v.copy()) for n, v in _weights()])
    assert a == b and a.startswith(DIGEST_PREFIX) and len(a) == len(DIGEST_PREFIX) + 32


def test_one_changed_bit_a_name_a_dtype_a_shape_or_the_order_changes_it():
    base = digest_arrays(_weights())
    flipped = _weights()
    flipped[0][1].view(np.uint32).reshape(-1)[17] ^= 1  # one bit of one float
    renamed = [("conv2.weight" if n == "conv.weight" else n, v) for n, v in _weights()]
    widened = [(n, v.astype(np.float64) if n == "conv.bias" else v) for n, v in _weights()]
    reshaped = [(n, v.reshape(4, 27) if n == "conv.weight" else v) for n, v in _weights()]
    reordered = list(reversed(_weights()))
    digests = {digest_arrays(w) for w in (flipped, renamed, widened, reshaped, reordered)}
    assert base not in digests and len(digests) == 5


def test_names_and_bytes_cannot_be_shifted_into_each_other():
    # the same concatenated bytes split differently between two arrays
    one = [("a", np.arange(4, dtype=np.uint8)), ("b", np.arange(4, 6, dtype=np.uint8))]
    two = [("a", np.arange(5, dtype=np.uint8)), ("b", np.arange(5, 6, dtype=np.uint8))]
    assert digest_arrays(one) != digest_arrays(two)


def test_byte_order_and_memory_layout_do_not_matter():
    weights = _weights()
    swapped = [(n, v.astype(v.dtype.newbyteorder(">"))) for n, v in weights]
    strided = [(n, np.asfortranarray(v)) for n, v in weights]
    assert digest_arrays(swapped) == digest_arrays(weights) == digest_arrays(strided)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(swapped, weights))


def test_empty_arrays_and_no_arrays_have_digests():
    assert digest_arrays([]) != digest_arrays([("x", np.zeros((0, 3), np.float32))])
    assert digest_arrays([("x", np.zeros((0, 3), np.float32))]) != digest_arrays([("x", np.zeros((3, 0), np.float32))])
