"""Sufficient statistics and the Chan-Golub-LeVeque merge: any split gives the same state (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_jobs.pca.stats import SufficientStats, downdate, merge, merge_all


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


def test_packed_bytes_keep_the_upper_triangle_bit_for_bit_and_are_half_the_size() -> None:
    # GIVEN a merged state whose M2 is not exactly symmetric (the merge's outer product rounds (i, j) and (j, i)
    # differently) at the real feature dimension
    rng = np.random.default_rng(0)
    merged = merge(SufficientStats.from_array(rng.standard_normal((30, 2048)).astype(np.float32)),
                   SufficientStats.from_array(rng.standard_normal((20, 2048)).astype(np.float32) + 1))
    upper = np.triu_indices(2048)
    # WHEN packed for the featurize pass's statistics row and unpacked
    data = merged.to_packed_bytes()
    back = SufficientStats.from_packed_bytes(data)
    # THEN n, mean and the upper triangle (what eigh and every merge read) are bit for bit the same, M2 is
    # symmetric, and the bytes are about half of the npz form
    assert back.n == merged.n and np.array_equal(back.mean, merged.mean)
    assert np.array_equal(back.m2[upper], merged.m2[upper]) and np.array_equal(back.m2, back.m2.T)
    np.testing.assert_allclose(back.m2, merged.m2, rtol=1e-12, atol=1e-12 * np.abs(merged.m2).max())
    assert len(data) < 0.51 * len(merged.to_bytes())
    # AND a merge of unpacked states has the same upper triangle as the merge of the originals
    other = SufficientStats.from_array(rng.standard_normal((10, 2048)))
    assert np.array_equal(merge(back, other).m2[upper], merge(merged, other).m2[upper])
    # AND a truncated row is refused
    with pytest.raises(ValueError, match="dimension 2048"):
        SufficientStats.from_packed_bytes(data[:-8])


def test_dimension_mismatch_and_tiny_covariance_raise() -> None:
    # GIVEN states of different dimension / a single vector
    # WHEN merged / asked for a covariance
    # THEN a ValueError says why
    with pytest.raises(ValueError, match="dimension"):
        merge(SufficientStats.from_array(np.ones((2, 3))), SufficientStats.from_array(np.ones((2, 4))))
    with pytest.raises(ValueError, match="at least 2"):
        SufficientStats.from_array(np.ones((1, 3))).covariance()


@settings(max_examples=60, deadline=None)
@given(data_and_splits())
def test_downdate_inverts_merge(case) -> None:
    # GIVEN vectors split into a kept part A and a removed part B (B any subset, possibly empty)
    x, cuts = case
    cut = cuts[0] if cuts else x.shape[0] // 2
    kept, removed = x[cut:], x[:cut]
    total = SufficientStats.from_array(x)
    # WHEN B's statistics are removed from the statistics of A ∪ B
    result = downdate(total, SufficientStats.from_array(removed))
    # THEN the state equals the one computed directly from A
    expected = SufficientStats.from_array(kept)
    assert result.n == expected.n
    if expected.n:
        scale = max(1.0, float(np.abs(x).max()))
        np.testing.assert_allclose(result.mean, expected.mean, rtol=1e-9, atol=1e-9 * scale)
        np.testing.assert_allclose(result.m2, expected.m2, rtol=1e-6, atol=1e-7 * scale**2 * x.shape[0])


def test_downdate_of_five_in_fifty_matches_batch_pca_to_1e6() -> None:
    # GIVEN 50 feature-like vectors (2048-d, non-negative like ResNet50's pooled output) merged batch by batch
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((50, 2048)) + 0.5, 0.0).astype(np.float32).astype(np.float64)
    total = merge_all((SufficientStats.from_array(x[i : i + 10]) for i in range(0, 50, 10)), 2048)
    erased = [3, 17, 18, 31, 49]
    # WHEN the 5 erased vectors are downdated
    result = downdate(total, SufficientStats.from_array(x[erased]))
    # THEN the covariance equals the batch covariance of the 45 kept vectors to 1e-6 (relative)
    kept = SufficientStats.from_array(np.delete(x, erased, axis=0))
    assert result.n == 45
    rel = np.linalg.norm(result.covariance() - kept.covariance()) / np.linalg.norm(kept.covariance())
    assert rel < 1e-6


def test_downdate_rejects_more_than_the_total() -> None:
    a = SufficientStats.from_array(np.ones((2, 3)))
    with pytest.raises(ValueError, match="cannot remove 3"):
        downdate(a, SufficientStats.from_array(np.ones((3, 3))))
    assert downdate(a, a).n == 0


def test_merge_in_place_equals_the_copying_merge_and_leaves_inputs_alone_unless_asked() -> None:
    # GIVEN two disjoint sets of 2,048-d vectors (the feature size) summarised separately
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((40, 2048)) + 0.5, rng.standard_normal((30, 2048)) - 0.2
    a, b = SufficientStats.from_array(x), SufficientStats.from_array(y)
    a_m2_before = a.m2.copy()
    # WHEN they merge by copy, then in place
    copied = merge(a, b)
    assert np.array_equal(a.m2, a_m2_before)  # the copying merge never writes into its inputs
    in_place = merge(a, b, overwrite_a=True)
    # THEN both equal the statistics of the union, and the in-place result reuses a's memory
    whole = SufficientStats.from_array(np.vstack([x, y]))
    assert_same_state(copied, whole)
    assert_same_state(in_place, whole)
    assert np.shares_memory(in_place.m2, a.m2)
    assert np.allclose(in_place.m2, in_place.m2.T, rtol=0, atol=1e-9 * np.abs(in_place.m2).max())
