"""PCA fit, version storage and exactly-once re-runs (pure numpy + local files, no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from spark_jobs import pca, storage
from spark_jobs.stats import SufficientStats

from .test_stats import assert_same_state

D = 12


def batch(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, D)) * np.linspace(5.0, 0.5, D) + seed


def commit(lake: str, batch_id: str, x: np.ndarray, k: int = 4) -> pca.PcaVersion:
    stats = SufficientStats.from_array(x)
    planned = pca.plan_version(lake, "m", batch_id, stats, k)
    pca.commit_version(lake, planned, stats)
    return planned


def test_fit_equals_batch_pca_and_pads_past_n_minus_one() -> None:
    # GIVEN 40 vectors (distinct eigenvalues) and then only 4 vectors with k = 6
    x = batch(1, 40)
    # WHEN fitted from their statistics
    fit = pca.fit_pca(SufficientStats.from_array(x), k=6)
    # THEN components equal numpy's eigenvectors of the covariance up to sign, ratios sum <= 1
    w, v = np.linalg.eigh(np.cov(x.T))
    for i in range(6):
        assert abs(float(fit.components[i] @ v[:, -1 - i])) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(fit.explained_variance_ratio, w[::-1][:6] / w.sum(), rtol=1e-9)
    # AND with 4 vectors only n - 1 = 3 components are meaningful, the rest are zero padding
    small = pca.fit_pca(SufficientStats.from_array(x[:4]), k=6)
    assert small.k == 6 and small.k_effective == 3
    assert np.all(small.components[3:] == 0) and np.all(small.explained_variance_ratio[3:] == 0)
    assert small.explained_variance_ratio[:3].sum() == pytest.approx(1.0, abs=1e-9)
    assert pca.fit_pca(SufficientStats.from_array(x[:1]), k=6).k_effective == 0


def test_versions_accumulate_and_equal_pca_on_all_batches(tmp_path) -> None:
    # GIVEN three batches committed in sequence
    lake = str(tmp_path)
    xs = {"a": batch(1, 20), "b": batch(2, 15), "c": batch(3, 9)}
    for bid, x in xs.items():
        commit(lake, bid, x)
    # WHEN the latest version is loaded
    latest = pca.load_version(lake, "m")
    # THEN it is version 3, its state is that of all vectors, and earlier versions are kept
    assert latest is not None and latest.version == 3
    assert [e["batch_id"] for e in latest.ledger] == ["a", "b", "c"]
    assert_same_state(latest.state, SufficientStats.from_array(np.vstack(list(xs.values()))))
    assert pca.committed_versions(lake, "m") == [1, 2, 3]


@pytest.mark.parametrize("rerun", ["c", "a", "b"])
def test_rerun_replaces_the_batch_contribution_exactly(tmp_path, rerun: str) -> None:
    # GIVEN batches a, b, c committed
    lake = str(tmp_path)
    xs = {"a": batch(1, 20), "b": batch(2, 15), "c": batch(3, 9)}
    for bid, x in xs.items():
        commit(lake, bid, x)
    files_before = set(storage.list_names(pca.model_dir(lake, "m")))
    # WHEN one batch id is re-run, once with the same images and then with different images
    same = commit(lake, rerun, xs[rerun])
    changed_x = batch(10, 7)
    changed = commit(lake, rerun, changed_x)
    # THEN the same images are counted once (state unchanged) ...
    assert_same_state(same.state, SufficientStats.from_array(np.vstack(list(xs.values()))))
    # ... and new images replace the old contribution of that batch id
    xs[rerun] = changed_x
    assert_same_state(changed.state, SufficientStats.from_array(np.vstack(list(xs.values()))))
    assert sorted(e["batch_id"] for e in changed.ledger) == ["a", "b", "c"]
    # AND every version is new: nothing written before was overwritten or removed
    assert files_before < set(storage.list_names(pca.model_dir(lake, "m")))
    assert pca.committed_versions(lake, "m") == [1, 2, 3, 4, 5]


def test_a_version_is_never_overwritten(tmp_path) -> None:
    # GIVEN a version planned from the same parent by two concurrent jobs
    lake = str(tmp_path)
    commit(lake, "a", batch(1, 10))
    stats = SufficientStats.from_array(batch(2, 10))
    first = pca.plan_version(lake, "m", "b", stats, 4)
    second = pca.plan_version(lake, "m", "c", stats, 4)
    pca.commit_version(lake, first, stats)
    # WHEN the second commits the same version number
    # THEN it fails instead of overwriting
    with pytest.raises(storage.ObjectExistsError):
        pca.commit_version(lake, second, stats)
    assert pca.load_version(lake, "m").batch_id == "b"


def test_a_prefetched_state_is_used_only_while_it_is_the_latest(tmp_path) -> None:
    # GIVEN a model with version 1, prefetched (as the job does while the executors featurize)
    lake = str(tmp_path)
    x1, x2, x3 = batch(1, 30), batch(2, 25), batch(3, 20)
    commit(lake, "b1", x1)
    stale = pca.prefetch_latest(lake, "m").result()
    assert stale is not None and stale.version == 1
    # WHEN another version commits before the plan (e.g. an erasure), then a plan is made with the stale prefetch
    commit(lake, "b2", x2)
    planned = pca.plan_version(lake, "m", "b3", SufficientStats.from_array(x3), 4, prefetched=stale)
    # THEN the latest state is reloaded: version 3 holds all three batches exactly
    assert planned.version == 3 and [e["batch_id"] for e in planned.ledger] == ["b1", "b2", "b3"]
    assert_same_state(planned.state, SufficientStats.from_array(np.vstack([x1, x2, x3])))
    # AND a prefetch that is still the latest is used as is (same result as loading it)
    fresh = pca.prefetch_latest(lake, "m").result()
    again = pca.plan_version(lake, "m", "b3", SufficientStats.from_array(x3), 4, prefetched=fresh)
    assert_same_state(again.state, planned.state)


def test_a_model_without_versions_prefetches_none(tmp_path) -> None:
    # GIVEN an empty lake WHEN its latest version is prefetched THEN the future resolves to None
    assert pca.prefetch_latest(str(tmp_path), "m").result() is None
