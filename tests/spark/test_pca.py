"""PCA fit, version storage (format 2), exactly-once re-runs by downdate, pending versions (pure numpy + files)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

from spark_jobs import storage
from spark_jobs.pca import versions as pca
from spark_jobs.pca.stats import SufficientStats

from .test_stats import assert_same_state

D = 12


def batch(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, D)) * np.linspace(5.0, 0.5, D) + seed).astype(np.float32).astype(np.float64)


class Rows:
    """Stands for the model's ``features`` rows per batch (what the job reads back when a batch is re-run)."""

    def __init__(self) -> None:
        self.by_batch: dict[str, np.ndarray] = {}

    def stats(self, batch_id: str) -> SufficientStats:
        return SufficientStats.from_array(self.by_batch.get(batch_id, np.zeros((0, D))))

    def all(self) -> SufficientStats:
        return SufficientStats.from_array(np.vstack(list(self.by_batch.values())))


def commit(lake: str, rows: Rows, batch_id: str, x: np.ndarray, k: int = 4, **kwargs) -> pca.PcaVersion:
    planned = pca.plan_version(lake, "m", batch_id, SufficientStats.from_array(x), k, replaced=rows.stats(batch_id),
                               **kwargs)
    pca.commit_version(lake, planned)
    rows.by_batch[batch_id] = x
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


def test_versions_accumulate_and_keep_only_the_latest_state(tmp_path) -> None:
    # GIVEN three batches committed in sequence
    lake, rows = str(tmp_path), Rows()
    for bid, seed, n in (("a", 1, 20), ("b", 2, 15), ("c", 3, 9)):
        commit(lake, rows, bid, batch(seed, n))
    # WHEN the latest version is loaded
    latest = pca.load_version(lake, "m")
    # THEN it is version 3 (found through the pointer), its state is that of all vectors, its parent is 2
    assert latest is not None and latest.version == 3 == pca.latest_version(lake, "m") and latest.parent == 2
    assert_same_state(latest.state, rows.all())
    # AND every version keeps its fit (float32 components, what rows carrying it were projected with) and JSON,
    # but only the latest keeps its (d, d) state; no per-batch statistics are stored
    names = storage.list_names(pca.model_dir(lake, "m"))
    assert sum(n.endswith(".fit.npz") for n in names) == 3 and sum(n.endswith(".state") for n in names) == 1
    assert not any(n.endswith(".npz") and not n.endswith(".fit.npz") for n in names)
    mean, fit = pca.load_fit(lake, "m", 1)
    meta = pca.read_metadata(lake, "m", 1)
    assert fit.components.shape == (4, D) and mean.shape == (D,) and meta["n_total"] == 20 and "ledger" not in meta
    with pytest.raises(FileNotFoundError):
        pca.load_version(lake, "m", 1)  # its state went when version 2 landed


@pytest.mark.parametrize("rerun", ["c", "a", "b"])
def test_rerun_replaces_the_batch_contribution_exactly(tmp_path, rerun: str) -> None:
    # GIVEN batches a, b, c committed
    lake, rows = str(tmp_path), Rows()
    for bid, seed, n in (("a", 1, 20), ("b", 2, 15), ("c", 3, 9)):
        commit(lake, rows, bid, batch(seed, n))
    expected = rows.all()
    # WHEN one batch id is re-run, once with the same images and then with different images
    same = commit(lake, rows, rerun, rows.by_batch[rerun])
    changed = commit(lake, rows, rerun, batch(10, 7))
    # THEN the same images are counted once (state unchanged), and new images replace the old contribution
    assert_same_state(same.state, expected)
    assert_same_state(changed.state, rows.all())
    assert same.details["removed"] == same.details["added"] and changed.details["added"] == 7
    assert pca.latest_version(lake, "m") == 5


def test_a_version_is_never_overwritten(tmp_path) -> None:
    # GIVEN a version planned from the same parent by two concurrent jobs
    lake, rows = str(tmp_path), Rows()
    commit(lake, rows, "a", batch(1, 10))
    stats = SufficientStats.from_array(batch(2, 10))
    first = pca.plan_version(lake, "m", "b", stats, 4)
    second = pca.plan_version(lake, "m", "c", stats, 4)
    pca.commit_version(lake, first)
    # WHEN the second commits the same version number  THEN it fails instead of overwriting
    with pytest.raises(storage.ObjectExistsError):
        pca.commit_version(lake, second)
    assert pca.load_version(lake, "m").batch_id == "b"
    # AND the loser's retry re-plans from the winner's state: exact, as version 3
    rows.by_batch["b"] = batch(2, 10)
    retry = commit(lake, rows, "c", batch(2, 10))
    assert retry.version == 3 and retry.parent == 2
    assert_same_state(retry.state, rows.all())


def test_a_version_that_never_landed_is_dropped_by_the_rerun_and_blocks_others_while_young(tmp_path) -> None:
    # GIVEN batch a landed, then batch b written (version 2) but killed before its features commit landed it
    lake, rows = str(tmp_path), Rows()
    commit(lake, rows, "a", batch(1, 30))
    dead = pca.plan_version(lake, "m", "b", SufficientStats.from_array(batch(2, 20)), 4)
    pca.commit_version(lake, dead, land_now=False)
    assert pca.latest_version(lake, "m") == 1 and [m["version"] for m in pca.pending(lake, "m")] == [2]
    # WHEN another batch plans while version 2 is young  THEN it is taken to be in flight
    with pytest.raises(pca.ConcurrentCommitError):
        pca.plan_version(lake, "m", "c", SufficientStats.from_array(batch(3, 5)), 4)
    # WHEN b is re-run  THEN the plan starts from version 1 (whose state is still kept), as version 3
    x = batch(4, 12)
    again = commit(lake, rows, "b", x)
    assert (again.version, again.parent) == (3, 1)
    assert_same_state(again.state, rows.all())
    # AND a pending version the features table confirms is landed (its pointer update was lost)
    lost = pca.plan_version(lake, "m", "d", SufficientStats.from_array(batch(5, 8)), 4)
    pca.commit_version(lake, lost, land_now=False)
    follow = pca.plan_version(lake, "m", "e", SufficientStats.from_array(batch(6, 8)), 4,
                              landed=lambda meta: meta["version"] == 4)
    assert (follow.version, follow.parent, pca.latest_version(lake, "m")) == (5, 4, 4)


def test_a_pending_version_of_another_batch_older_than_the_lease_is_dead(tmp_path, monkeypatch) -> None:
    lake, rows = str(tmp_path), Rows()
    commit(lake, rows, "a", batch(1, 30))
    pca.commit_version(lake, pca.plan_version(lake, "m", "b", SufficientStats.from_array(batch(2, 20)), 4),
                       land_now=False)
    monkeypatch.setattr(pca, "LEASE_SECONDS", -1)
    planned = commit(lake, rows, "c", batch(3, 5))
    assert (planned.version, planned.parent) == (3, 1)
    assert_same_state(planned.state, SufficientStats.from_array(np.vstack([rows.by_batch["a"], rows.by_batch["c"]])))


def test_a_prefetched_state_is_used_only_while_it_is_the_latest(tmp_path) -> None:
    # GIVEN a model with version 1, prefetched (as the job does while the executors featurize)
    lake, rows = str(tmp_path), Rows()
    x1, x2, x3 = batch(1, 30), batch(2, 25), batch(3, 20)
    commit(lake, rows, "b1", x1)
    stale = pca.prefetch_latest(lake, "m").result()
    assert stale is not None and stale.version == 1
    # WHEN another version commits before the plan (e.g. an erasure), then a plan is made with the stale prefetch
    commit(lake, rows, "b2", x2)
    planned = pca.plan_version(lake, "m", "b3", SufficientStats.from_array(x3), 4, prefetched=stale)
    # THEN the latest state is reloaded: version 3 holds all three batches exactly
    assert planned.version == 3 and planned.parent == 2
    assert_same_state(planned.state, SufficientStats.from_array(np.vstack([x1, x2, x3])))
    # AND a prefetch that is still the latest is used as is (same result as loading it)
    fresh = pca.prefetch_latest(lake, "m").result()
    again = pca.plan_version(lake, "m", "b3", SufficientStats.from_array(x3), 4, prefetched=fresh)
    assert_same_state(again.state, planned.state)


def test_a_model_without_versions_prefetches_none(tmp_path) -> None:
    # GIVEN an empty lake WHEN its latest version is prefetched THEN the future resolves to None
    assert pca.prefetch_latest(str(tmp_path), "m").result() is None


def test_a_heavy_downdate_triggers_an_exact_rebuild_from_the_rows(tmp_path) -> None:
    # GIVEN a large batch far from the origin and a small one; the large one is re-run with 3 rows only
    lake, rows = str(tmp_path), Rows()
    commit(lake, rows, "big", batch(1, 2000) * 1e3 + 1e6)
    commit(lake, rows, "small", batch(2, 10))
    calls = []

    def refresh() -> SufficientStats:
        calls.append(1)
        return rows.stats("small")

    # WHEN the downdate removes almost everything (the error bound exceeds REFRESH_TOLERANCE)
    planned = commit(lake, rows, "big", batch(3, 3), refresh=refresh)
    # THEN the state was rebuilt from the rows, and equals the batch statistics of what is left
    assert calls and planned.details.get("refreshed")
    assert_same_state(planned.state, rows.all(), rtol=1e-12)
    assert planned.error_bound[0] < pca.REFRESH_TOLERANCE * np.linalg.norm(planned.state.m2)


def test_many_merges_erasures_and_reruns_equal_a_batch_pca_of_the_remaining_rows(tmp_path) -> None:
    # GIVEN 300 batch runs of 3 rows, 20 erasures of 1-2 rows and 5 re-runs of old batches (d = 12, k = 10)
    rng = np.random.default_rng(0)
    lake, rows, k = str(tmp_path), Rows(), 10
    for i in range(300):
        commit(lake, rows, f"b{i}", batch(i, 3), k)
        if i % 15 == 14:  # an erasure of one or two rows of an older batch
            victim = f"b{int(rng.integers(0, i))}"
            x = rows.by_batch[victim]
            gone = x[: int(rng.integers(1, 3))]
            latest = pca.load_version(lake, "m")
            base = pca.resolve_base(lake, "m", batch_id=None)
            erased = pca.plan_erasure(latest, base.next_version, f"e{i}", {victim: SufficientStats.from_array(gone)})
            pca.commit_version(lake, erased)
            rows.by_batch[victim] = x[len(gone):]
    for old in ("b0", "b1", "b50", "b100", "b299"):
        commit(lake, rows, old, batch(1000 + int(old[1:]), 4), k)
    # WHEN compared with a batch PCA (SVD of the centred rows) of the rows that remain
    x = np.vstack(list(rows.by_batch.values()))
    state = pca.load_version(lake, "m")
    expected = SufficientStats.from_array(x)
    # THEN state and top-10 components agree to 1e-6 relative
    assert_same_state(state.state, expected, rtol=1e-6)
    _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    np.testing.assert_allclose(state.fit.explained_variance, s[:k] ** 2 / (len(x) - 1), rtol=1e-6)
    for i in range(k):
        assert abs(float(state.fit.components[i] @ vt[i])) == pytest.approx(1.0, abs=1e-6)


def test_a_legacy_lake_keeps_working_and_the_next_commit_writes_format_2(tmp_path) -> None:
    # GIVEN a version written by the code before format 2 (one npz with M2 and the fit, a JSON with a ledger)
    lake, x = str(tmp_path), batch(1, 25)
    stats, root = SufficientStats.from_array(x), pca.model_dir(str(tmp_path), "m")
    fit = pca.fit_pca(stats, 4)
    buf = io.BytesIO()
    np.savez(buf, n=np.int64(stats.n), mean=stats.mean, m2=stats.m2, components=fit.components,
             explained_variance=fit.explained_variance, explained_variance_ratio=fit.explained_variance_ratio,
             k_effective=np.int64(fit.k_effective))
    storage.write_bytes(storage.join(root, "v000001-abc.npz"), buf.getvalue())
    meta = {"model_id": "m", "version": 1, "batch_id": "a", "run_id": "abc", "created_at": "2026-01-01T00:00:00+00:00",
            "n_total": stats.n, "dim": D, "k": 4, "k_effective": fit.k_effective, "state_file": "v000001-abc.npz",
            "explained_variance_ratio": list(fit.explained_variance_ratio), "explained_variance_k": 1.0,
            "ledger": [{"batch_id": "a", "n": 25, "version": 1, "stats": "batch_stats/a-abc.npz"}]}
    storage.write_bytes(storage.join(root, "v000001.json"), json.dumps(meta).encode())
    # WHEN it is read, and a batch is committed on top of it
    legacy = pca.load_version(lake, "m")
    rows = Rows()
    rows.by_batch["a"] = x
    planned = commit(lake, rows, "b", batch(2, 10))
    # THEN the legacy version loads, the new one is format 2 with a pointer, and the legacy file is kept
    assert legacy.version == 1 and legacy.kind == pca.KIND_BATCH
    assert planned.version == 2 and pca.read_metadata(lake, "m", 2)["format"] == pca.FORMAT
    assert os.path.exists(os.path.join(root, pca.POINTER)) and os.path.exists(os.path.join(root, "v000001-abc.npz"))
    assert_same_state(pca.load_version(lake, "m").state, rows.all())
