"""Exact incremental PCA: versions fitted from merged sufficient statistics, stored under ``<lake>/pca/<model_id>/``.

Fit (one version): covariance ``C = M2 / (n - 1)`` of every feature vector featurized so far for the
``model_id``; ``scipy.linalg.eigh(M2, subset_by_index=[d-k, d-1], driver="evr")`` (LAPACK ``syevr``, MRRR:
only the k largest eigenpairs, equal to a full ``numpy.linalg.eigh`` to float64 rounding; bench/README.md
"lake_commit" times it); components are the eigenvectors of the k largest eigenvalues, sign-fixed so the
largest-magnitude loading is positive (the ``svd_flip`` convention of scikit-learn); eigenvalues of C are those of
M2 divided by n - 1 (no (d, d) covariance is allocated); ``explained_variance_ratio = eigenvalue / trace(C)``.
Equal to batch PCA on all vectors (up to float64 rounding; components up to sign where eigenvalues are distinct).

Fewer vectors than components: centred data of n vectors has rank <= n - 1, so only
``k_effective = min(k, d, n - 1)`` components are meaningful. The stored ``components`` always has k rows:
rows past ``k_effective`` are zero, so the ``pca`` column always has length k with zeros in the padded
coordinates, and their explained variance (ratio) is 0.

Storage (never overwritten; the JSON is written last, with an exclusive create, and is the commit marker)::

    pca/<model_id>/batch_stats/<batch_id>-<run_id>.npz   one batch's own statistics (n, mean, m2)
    pca/<model_id>/v000007-<run_id>.npz                  state after version 7: n, mean, m2, components, ...
    pca/<model_id>/v000007.json                          metadata + ledger of the batches in the state

Re-running a batch id (exactly-once contribution): the ledger lists the batches in the state, in merge order,
each with its statistics file. A batch already in the ledger is removed by rebuilding the state from the
longest committed version whose ledger is a prefix of the ledger without it, then re-merging the statistics of
the batches after that prefix (only merges, never subtraction, so no cancellation error), then merging the new
statistics of the re-run batch. Re-running the latest batch costs one merge from the previous version.

Erasure (``spark_jobs.erasure``): a version may remove feature vectors instead of adding a batch. Its ledger gains
one entry per source batch, ``{"kind": "erase", "batch_id": <the batch the rows came from>, "n", "version",
"stats": "erase_stats/<erasure_id>-<batch_id>.npz"}``; the state is the previous one downdated by those
statistics (:func:`spark_jobs.stats.downdate`, the exact inverse of the merge). A rebuild applies erase entries as
downdates in ledger order; re-running batch X drops X's erase entries with X (its rows are replaced whole).
Jobs for one ``model_id`` must not run concurrently; if they do, the loser fails on the exclusive create.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.linalg

from spark_jobs import storage
from spark_jobs.stats import SufficientStats, downdate, merge

VERSION_JSON = re.compile(r"^v(\d{6})\.json$")


@dataclass(frozen=True)
class PcaFit:
    """k components (float64 (k, d), zero rows past ``k_effective``), their variances and ratios (float64 (k,))."""

    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    k_effective: int

    @property
    def k(self) -> int:
        """Number of components kept (length of the ``pca`` column)."""
        return int(self.components.shape[0])


@dataclass(frozen=True)
class PcaVersion:
    """One committed (or planned) PCA version of a model_id: the merged state, its fit, and the ledger."""

    model_id: str
    version: int
    batch_id: str
    run_id: str
    state: SufficientStats
    fit: PcaFit
    ledger: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""

    @property
    def mean(self) -> np.ndarray:
        """Mean feature vector (float64, (d,))."""
        return self.state.mean

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable metadata (written as ``vNNNNNN.json``)."""
        ratio = self.fit.explained_variance_ratio
        return {
            "model_id": self.model_id,
            "version": self.version,
            "batch_id": self.batch_id,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "n_total": self.state.n,
            "dim": self.state.dim,
            "k": self.fit.k,
            "k_effective": self.fit.k_effective,
            "state_file": state_file_name(self.version, self.run_id),
            "explained_variance_ratio": [float(v) for v in ratio],
            "explained_variance_k": float(ratio.sum()),
            "ledger": self.ledger,
        }


def fit_pca(state: SufficientStats, k: int) -> PcaFit:
    """Eigendecompose the sample covariance of ``state`` and keep the top ``k`` components (see module doc).

    Args:
        state: merged statistics, d = ``state.dim``.
        k: components kept (>= 1). ``k_effective = min(k, d, n - 1)`` are meaningful, the rest zero-padded.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    d = state.dim
    components = np.zeros((k, d), dtype=np.float64)
    variance = np.zeros(k, dtype=np.float64)
    ratio = np.zeros(k, dtype=np.float64)
    k_eff = max(0, min(k, d, state.n - 1))
    if k_eff == 0:
        return PcaFit(components, variance, ratio, 0)
    # eigh of M2 itself (C = M2 / (n - 1) has the same eigenvectors; its eigenvalues are divided by n - 1): no (d, d)
    # covariance allocated. M2 is symmetric, so its transpose (Fortran-contiguous, the same memory) is passed as is.
    scale = 1.0 / (state.n - 1)
    eigvals, eigvecs = scipy.linalg.eigh(state.m2.T, subset_by_index=[d - k_eff, d - 1], driver="evr")
    # ascending
    eigvals = eigvals * scale
    top = eigvecs[:, ::-1].T  # (k_eff, d), largest first
    signs = np.sign(top[np.arange(k_eff), np.argmax(np.abs(top), axis=1)])
    signs[signs == 0] = 1.0
    components[:k_eff] = top * signs[:, None]
    variance[:k_eff] = np.clip(eigvals[::-1], 0.0, None)
    total = float(np.trace(state.m2)) * scale
    if total > 0:
        ratio[:k_eff] = variance[:k_eff] / total
    return PcaFit(components, variance, ratio, k_eff)


def model_dir(lake: str, model_id: str) -> str:
    """``<lake>/pca/<model_id>``."""
    return storage.join(lake, "pca", model_id)


def state_file_name(version: int, run_id: str) -> str:
    """Name of the npz holding a version's state and fit."""
    return f"v{version:06d}-{run_id}.npz"


def committed_versions(lake: str, model_id: str) -> list[int]:
    """Committed version numbers of a model_id, ascending ([] when none)."""
    names = storage.list_names(model_dir(lake, model_id))
    return sorted(int(m.group(1)) for m in map(VERSION_JSON.match, names) if m)


def read_metadata(lake: str, model_id: str, version: int) -> dict[str, Any]:
    """Metadata JSON of one committed version."""
    return json.loads(storage.read_bytes(storage.join(model_dir(lake, model_id), f"v{version:06d}.json")))


def load_version(lake: str, model_id: str, version: int | None = None) -> PcaVersion | None:
    """Load a committed version (default: the latest); None if the model_id has no version yet."""
    if version is None:
        versions = committed_versions(lake, model_id)
        if not versions:
            return None
        version = versions[-1]
    meta = read_metadata(lake, model_id, version)
    with storage.open_binary(storage.join(model_dir(lake, model_id), meta["state_file"])) as f, np.load(f) as npz:
        state = SufficientStats(int(npz["n"]), npz["mean"], npz["m2"])
        fit = PcaFit(npz["components"], npz["explained_variance"], npz["explained_variance_ratio"],
                     int(npz["k_effective"]))
    return PcaVersion(model_id, version, meta["batch_id"], meta["run_id"], state, fit, meta["ledger"],
                      meta["created_at"])


def prefetch_latest(lake: str, model_id: str) -> Future[PcaVersion | None]:
    """Start loading the latest version of ``model_id`` on a background thread; pass ``.result()`` to
    :func:`plan_version` as ``prefetched``.

    The job calls it before featurizing, so reading the (d, d) state (35 MB for d = 2,048) overlaps the executors'
    work instead of lengthening the commit. Errors are raised by ``.result()``.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pca-prefetch")
    future = pool.submit(load_version, lake, model_id)
    pool.shutdown(wait=False)  # the thread ends with its one task
    return future


def _load_stats(lake: str, model_id: str, entry: dict[str, Any]) -> SufficientStats:
    return SufficientStats.from_bytes(storage.read_bytes(storage.join(model_dir(lake, model_id), entry["stats"])))


def _rebuild_without(lake: str, model_id: str, ledger: list[dict[str, Any]], dim: int) -> SufficientStats:
    """Exact state of the batches in ``ledger`` from the longest committed prefix version + merges."""
    for i in range(len(ledger) - 1, -1, -1):
        meta = read_metadata(lake, model_id, int(ledger[i]["version"]))
        if meta["ledger"] == ledger[: i + 1]:
            base = load_version(lake, model_id, int(ledger[i]["version"]))
            assert base is not None
            state = base.state
            start = i + 1
            break
    else:
        state, start = SufficientStats.empty(dim), 0
    for entry in ledger[start:]:
        stats = _load_stats(lake, model_id, entry)
        state = downdate(state, stats) if entry.get("kind") == "erase" else merge(state, stats, overwrite_a=True)
    return state


def plan_version(lake: str, model_id: str, batch_id: str, batch_stats: SufficientStats, k: int, *,
                 prefetched: PcaVersion | None = None) -> PcaVersion:
    """Merge a batch's statistics into the latest state of ``model_id`` and fit the next version (not stored).

    A batch id already in the latest ledger has its previous contribution replaced exactly (module doc).
    Driver memory: a few (d, d) float64 matrices (O(d^2)), never per-image data.

    Args:
        prefetched: the model's latest version as loaded earlier by the caller (the job loads it on a driver
            thread while the executors featurize, :func:`prefetch_latest`). It is used only if it is still the
            latest committed version (one listing); otherwise the latest is loaded again. It is consumed: its
            state's memory becomes the new version's.
    """
    if prefetched is not None and committed_versions(lake, model_id)[-1:] == [prefetched.version]:
        latest: PcaVersion | None = prefetched
    else:
        latest = load_version(lake, model_id)
    run_id = uuid.uuid4().hex[:12]
    version = 1 if latest is None else latest.version + 1
    old_ledger = [] if latest is None else list(latest.ledger)
    entry = {"batch_id": batch_id, "n": batch_stats.n, "version": version,
             "stats": f"batch_stats/{batch_id}-{run_id}.npz"}
    if latest is None:
        base = SufficientStats.empty(batch_stats.dim)
    elif any(e["batch_id"] == batch_id for e in old_ledger):
        old_ledger = [e for e in old_ledger if e["batch_id"] != batch_id]
        base = _rebuild_without(lake, model_id, old_ledger, batch_stats.dim)
    else:
        base = latest.state
    state = merge(base, batch_stats, overwrite_a=True)  # base was loaded for this plan only
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return PcaVersion(model_id, version, batch_id, run_id, state, fit_pca(state, k), [*old_ledger, entry], created)


def commit_version(lake: str, planned: PcaVersion, batch_stats: SufficientStats) -> None:
    """Store the batch statistics, the version state/fit (npz) and finally its JSON (the commit marker).

    Raises:
        storage.ObjectExistsError: another job committed this version number first (concurrent runs).
    """
    root = model_dir(lake, planned.model_id)
    storage.write_bytes(storage.join(root, planned.ledger[-1]["stats"]), batch_stats.to_bytes(), exclusive=True)
    write_version(lake, planned)


def write_version(lake: str, planned: PcaVersion) -> None:
    """Store a version's state/fit (npz), then its JSON: the commit marker (exclusive create).

    The statistics files its new ledger entries name must already be stored.

    Raises:
        storage.ObjectExistsError: another job committed this version number first (concurrent runs).
    """
    root = model_dir(lake, planned.model_id)
    buf = io.BytesIO()
    np.savez(buf, n=np.int64(planned.state.n), mean=planned.state.mean, m2=planned.state.m2,
             components=planned.fit.components, explained_variance=planned.fit.explained_variance,
             explained_variance_ratio=planned.fit.explained_variance_ratio,
             k_effective=np.int64(planned.fit.k_effective))
    storage.write_bytes(storage.join(root, state_file_name(planned.version, planned.run_id)), buf.getvalue(),
                        exclusive=True)
    body = json.dumps(planned.metadata(), indent=1).encode()
    storage.write_bytes(storage.join(root, f"v{planned.version:06d}.json"), body, exclusive=True)
