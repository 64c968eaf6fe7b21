"""Sufficient statistics and the Chan-Golub-LeVeque merge: any split gives the same state (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_jobs.stats import SufficientStats, merge, merge_all


def assert_same_state(a: SufficientStats, b: SufficientStats, rtol: float = 1e-9) -> None:
    assert a.n == b.n
    scale_mean = max(1.0, float(np.abs(b.mean).max()))
    scale_m2 = max(1.0, float(np.abs(b.m2).max()))
    np.testing.assert_allclose(a.mean, b.mean, rtol=rtol, atol=rtol * scale_mean)
    np.testing.assert_allclose(a.m2, b.m2, rtol=rtol, atol=rtol * scale_m2)


def tree_merge(parts: list[SufficientStats], dim: int) -> SufficientStats:
    if not parts:
        return SufficientStats.empty(dim)
    while len(parts) > 1:
        parts = [merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


@st.composite
def data_and_splits(draw):
    n = draw(st.integers(min_value=2, max_value=60))
    d = draw(st.integers(min_value=1, max_value=8))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    offset = draw(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False))
    scale = draw(st.floats(min_value=1e-3, max_value=1e3, allow_nan=False))
    x = offset + scale * np.random.default_rng(seed).standard_normal((n, d))
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=n), max_size=8)))  # empty pieces allowed
    return x, cuts


@settings(max_examples=150, deadline=None)
@given(data_and_splits())
def test_any_split_merged_sequentially_or_as_a_tree_gives_the_one_pass_state(case) -> None:
    # GIVEN feature vectors split into batches at arbitrary cut points (some batches empty)
    x, cuts = case
    pieces = np.split(x, cuts)
    parts = [SufficientStats.from_array(p) for p in pieces]
    # WHEN the batch statistics are merged sequentially, as a tree, and in reverse order
    sequential = merge_all(parts, x.shape[1])
    tree = tree_merge(parts, x.shape[1])
    reverse = merge_all(reversed(parts), x.shape[1])
    # THEN each equals the statistics of all vectors at once, and numpy's mean/covariance
    whole = SufficientStats.from_array(x)
    for state in (sequential, tree, reverse):
        assert_same_state(state, whole)
    np.testing.assert_allclose(whole.mean, x.mean(axis=0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(whole.covariance(), np.atleast_2d(np.cov(x.T)), rtol=1e-9,
                               atol=1e-9 * max(1.0, float(np.abs(np.cov(x.T)).max())))


def test_empty_is_the_neutral_element_and_bytes_round_trip() -> None:
    # GIVEN a state and the empty state
    x = np.random.default_rng(0).standard_normal((5, 3))
    state = SufficientStats.from_array(x)
    # WHEN merged with empty and serialised
    # THEN nothing changes
    assert_same_state(merge(state, SufficientStats.empty(3)), state, rtol=0)
    assert_same_state(merge(SufficientStats.empty(3), state), state, rtol=0)
    assert_same_state(SufficientStats.from_bytes(state.to_bytes()), state, rtol=0)


def test_dimension_mismatch_and_tiny_covariance_raise() -> None:
    # GIVEN states of different dimension / a single vector
    # WHEN merged / asked for a covariance
    # THEN a ValueError says why
    with pytest.raises(ValueError, match="dimension"):
        merge(SufficientStats.from_array(np.ones((2, 3))), SufficientStats.from_array(np.ones((2, 4))))
    with pytest.raises(ValueError, match="at least 2"):
        SufficientStats.from_array(np.ones((1, 3))).covariance()
