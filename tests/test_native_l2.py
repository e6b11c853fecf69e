"""The Numba L2 kernels against their NumPy reference."""
import sys

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tagfold.native import dispatch
from tagfold.native.l2 import l2_distances, nearest_under_cut

finite32 = st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False)


@st.composite
def vector_pairs(draw):
    n, k, d = draw(st.integers(0, 40)), draw(st.integers(1, 12)), draw(st.integers(1, 60))
    X = draw(hnp.arrays(np.float32, (n, d), elements=finite32))
    T = draw(hnp.arrays(np.float32, (k, d), elements=finite32))
    return X, T


@settings(max_examples=80, deadline=None)
@given(vector_pairs())
def test_l2_matches_numpy(pair):
    X, T = pair
    got = l2_distances(X, T, impl="native")
    want = l2_distances(X, T, impl="ref")
    assert got.dtype == np.float32 and got.shape == (X.shape[0], T.shape[0])
    # Native sums in float64, NumPy in float32: equal up to float32 rounding of the sum.
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-3)
    exact = np.sqrt(((X[:, None, :].astype(np.float64) - T[None, :, :]) ** 2).sum(axis=2))
    np.testing.assert_allclose(got, exact, rtol=1e-6, atol=1e-6)


def test_l2_on_tag_like_vectors_and_identity():
    rng = np.random.default_rng(0)
    T = rng.standard_normal((50, 50), dtype=np.float32)
    X = np.concatenate([T, rng.standard_normal((5000, 50), dtype=np.float32)])
    got = l2_distances(X, T, impl="native")
    np.testing.assert_allclose(got, l2_distances(X, T, impl="ref"), rtol=1e-5, atol=1e-5)
    assert (np.diag(got[:50]) == 0).all()  # a target is at distance exactly 0 from itself


@st.composite
def distance_matrices(draw):
    n, k = draw(st.integers(0, 30)), draw(st.integers(0, 8))
    # Small integers make ties (equal distances) and distances equal to a cut common.
    D = draw(hnp.arrays(np.float32, (n, k), elements=st.integers(0, 5).map(float)
                        | st.just(float("inf")) | st.floats(0, 10, width=32)))
    cuts = draw(hnp.arrays(np.float64, (k,), elements=st.integers(0, 6).map(float) | st.floats(0, 10)))
    return D, cuts


@settings(max_examples=150, deadline=None)
@given(distance_matrices())
def test_nearest_under_cut_matches_numpy(case):
    D, cuts = case
    target, distance = nearest_under_cut(D, cuts, impl="native")
    want_target, want_distance = nearest_under_cut(D, cuts, impl="ref")
    assert target.dtype == np.int32 and distance.dtype == np.float32
    np.testing.assert_array_equal(target, want_target)
    np.testing.assert_array_equal(distance, want_distance)


def test_nearest_under_cut_semantics():
    D = np.array([[2.0, 1.0, 1.0], [3.0, 4.0, 0.5], [1.0, 1.0, 9.0]], dtype=np.float32)
    cuts = np.array([2.0, 1.5, 0.5])
    target, distance = nearest_under_cut(D, cuts, impl="native")
    # row 0: tie between 1 and 2 -> 1, under its cut; row 1: 0.5 is not < 0.5; row 2: tie -> 0, 1.0 < 2.0.
    assert target.tolist() == [1, -1, 0]
    assert distance.tolist() == [1.0, 0.5, 1.0]


def test_results_independent_of_thread_count():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20000, 50), dtype=np.float32)
    T = rng.standard_normal((50, 50), dtype=np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        D1 = l2_distances(X, T, impl="native")
        n1 = nearest_under_cut(D1, np.full(50, 9.0), impl="native")
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        D2 = l2_distances(X, T, impl="native")
        n2 = nearest_under_cut(D2, np.full(50, 9.0), impl="native")
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(D1, D2)
    for a, b in zip(n1, n2):
        np.testing.assert_array_equal(a, b)
    assert (n1[0] >= 0).any() and (n1[0] == -1).any()  # the cut decides both ways here


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="2 dimensions but T has 3"):
        l2_distances(np.zeros((4, 2)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="cuts"):
        nearest_under_cut(np.zeros((4, 2)), np.zeros(3))
    D = np.zeros((4, 2), dtype=np.float32)
    D[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN.*row 2"):
        nearest_under_cut(D, np.zeros(2))


def test_dispatch_native_without_numba_fails_loudly(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setitem(sys.modules, "tagfold.native._l2_numba", None)
    monkeypatch.setenv("TAGFOLD_IMPL", "native")
    X, T = np.ones((3, 2), dtype=np.float32), np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(ImportError, match="numba.*make install"):
        l2_distances(X, T)
    monkeypatch.setenv("TAGFOLD_IMPL", "auto")
    np.testing.assert_allclose(l2_distances(X, T), np.full((3, 2), np.sqrt(2), dtype=np.float32))
    assert dispatch.resolve_impl(native_module="numba") == "ref"
