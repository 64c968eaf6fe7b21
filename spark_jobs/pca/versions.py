"""Exact incremental PCA: versions fitted from merged sufficient statistics, stored under ``<lake>/pca/<model_id>/``.

Fit (one version): covariance ``C = M2 / (n - 1)`` of every feature vector of the ``model_id`` in ``features``;
``scipy.linalg.eigh(M2, subset_by_index=[d-k, d-1], driver="evr")`` (LAPACK ``syevr``, MRRR: only the k largest
eigenpairs, equal to a full ``numpy.linalg.eigh`` to float64 rounding; bench/README.md "lake_commit" times it);
components are the eigenvectors of the k largest eigenvalues, sign-fixed so the largest-magnitude loading is
positive (the ``svd_flip`` convention of scikit-learn); eigenvalues of C are those of M2 divided by n - 1 (no
(d, d) covariance is allocated); ``explained_variance_ratio = eigenvalue / trace(C)``. Equal to batch PCA on all
vectors (up to float64 rounding; components up to sign where eigenvalues are distinct). Stored components are
rounded to float32 (what ``features``/``pca`` hold; 6e-8 relative), and a planned version carries the rounded ones,
so the job projects with exactly what readers load.

Fewer vectors than components: centred data of n vectors has rank <= n - 1, so only
``k_effective = min(k, d, n - 1)`` components are meaningful. The stored ``components`` always has k rows:
rows past ``k_effective`` are zero, so the ``pca`` column always has length k with zeros in the padded
coordinates, and their explained variance (ratio) is 0.

Storage (format 2; O(k·d) per version, the (d, d) state only for the latest version and checkpoints)::

    pca/<model_id>/v000007.json                 small metadata of version 7 (commit marker, exclusive create):
                                                parent version, kind (batch | erase), batch id, n, variance ratios
    pca/<model_id>/v000007-<run_id>.fit.npz     what projects a row carrying pca_version 7: mean (float64, d),
                                                components (float32, (k, d)), explained variance (+ ratio)
    pca/<model_id>/v000007-<run_id>.state       full state (n, mean, upper triangle of M2; float64, packed as
                                                :meth:`SufficientStats.to_packed_bytes`, 16.8 MB at d = 2,048):
                                                kept for the latest version and checkpoints only
    pca/<model_id>/LATEST.json                  pointer to the latest landed version, replaced atomically

At k = 150, d = 2,048 a version adds 1.25 MB (fit) + 16.8 MB / ``CHECKPOINT_EVERY`` (checkpoints) = 1.4 MB.
Versions whose ``version % CHECKPOINT_EVERY == 0`` are checkpoints: their state is kept (``fruits expire`` keeps the
newest ``--pca-checkpoints`` of them); any other state is deleted as soon as a child version lands.

A version is written first (fit, state, then its JSON with an exclusive create: two jobs planning the same number
cannot both win), then *lands*: the job commits the ``features`` rows carrying it, then replaces ``LATEST.json``
(which never moves backwards). The latest version is found in O(1): the pointer, then a probe of the next version
number (a version written but whose pointer update was lost). A version that never landed is *pending*: landed
after all if the ``features`` table has a snapshot naming it (summary ``fruits.model_id``/``fruits.pca_version``,
only snapshots younger than it are walked), else dead when it was an earlier attempt of one of the same batches (a
job run's retry may group its batches differently; or older than ``LEASE_SECONDS``) — the new version is then
planned from its parent, whose state is still kept — else in flight:
:class:`ConcurrentCommitError`. An erasure's version is rolled forward instead (:mod:`spark_jobs.lakehouse.erasure`).

Invariant at rest: the state of the latest landed version equals the statistics of the model's current
``features`` rows (float32 as stored, widened to float64). Re-running batch X (or erasing/superseding rows) is
therefore a downdate by the statistics of the rows being replaced, read back from ``features`` (O(rows of X)),
then a merge of the new ones (:func:`spark_jobs.pca.stats.downdate`, :func:`spark_jobs.pca.stats.merge`): no per-batch
statistics are stored and nothing is re-merged, whatever the history.

Cancellation: a downdate subtracts, so its float64 error is relative to the state before it, not after. Each
version carries a first-order bound of the absolute error of M2 (Frobenius) and of the mean: a merge or downdate
adds ``4 eps (||M2_total|| + ||M2_part|| + ||rank-1 term||)`` (traces of PSD matrices bound their Frobenius
norms; Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., §2.2 model of rounding). When the bound
reaches ``REFRESH_TOLERANCE`` (1e-9) of ``||M2||_F`` (or of ``||mean||``), the plan rebuilds the state exactly
from the rows in ``features`` (the caller's ``refresh``; one streamed scan of the model) and the bound restarts.
With ordinary erasures (a small share of rows) the bound grows by ~1e-15 per version and never triggers.

Lakes written before format 2 (``v000007.json`` with a whole ``ledger``, ``v000007-<run>.npz`` holding M2 and the
fit, ``batch_stats/`` and ``erase_stats/``) keep working: their versions are read (the latest by one listing while
no pointer exists), the next commit writes format 2 and the pointer; ``fruits migrate-lake`` compacts the tree.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.linalg

from spark_jobs import storage
from spark_jobs.pca.stats import SufficientStats, downdate, merge

FORMAT = 2
KIND_BATCH, KIND_ERASE = "batch", "erase"
POINTER = "LATEST.json"
CHECKPOINT_EVERY = 100  # versions; a checkpoint keeps its full state
LEASE_SECONDS = 900  # a pending version of another batch younger than this is taken to be in flight
REFRESH_TOLERANCE = 1e-9  # relative error bound of the state that triggers an exact rebuild from the rows
EPS = float(np.finfo(np.float64).eps)
VERSION_JSON = re.compile(r"^v(\d{6})\.json$")


class ConcurrentCommitError(storage.ObjectExistsError):
    """Another commit of the same model is in flight (or won the version number): retry once it is done."""


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

    def stored(self) -> PcaFit:
        """This fit with its components rounded to float32, as stored (and widened back to float64)."""
        return replace(self, components=self.components.astype(np.float32).astype(np.float64))


@dataclass(frozen=True)
class PcaVersion:
    """One committed (or planned) PCA version of a model_id: the state, its fit, and where it comes from.

    ``error_bound`` is ``(M2 Frobenius, mean 2-norm)`` absolute error bounds (module doc "Cancellation").
    """

    model_id: str
    version: int
    batch_id: str
    run_id: str
    state: SufficientStats
    fit: PcaFit
    kind: str = KIND_BATCH
    parent: int | None = None
    created_at: str = ""
    error_bound: tuple[float, float] = (0.0, 0.0)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        """Mean feature vector (float64, (d,))."""
        return self.state.mean

    @property
    def checkpoint(self) -> bool:
        """True when this version's full state is kept after its child lands."""
        return self.version % CHECKPOINT_EVERY == 0

    def fit_file(self) -> str:
        """Name of the fit npz."""
        return f"v{self.version:06d}-{self.run_id}.fit.npz"

    def state_file(self) -> str:
        """Name of the packed state."""
        return f"v{self.version:06d}-{self.run_id}.state"

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable metadata (written as ``vNNNNNN.json``; O(k), never the history)."""
        ratio = self.fit.explained_variance_ratio
        return {
            "format": FORMAT,
            "model_id": self.model_id,
            "version": self.version,
            "parent": self.parent,
            "kind": self.kind,
            "batch_id": self.batch_id,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "n_total": self.state.n,
            "dim": self.state.dim,
            "k": self.fit.k,
            "k_effective": self.fit.k_effective,
            "fit_file": self.fit_file(),
            "state_file": self.state_file(),
            "checkpoint": self.checkpoint,
            "error_bound": {"m2": self.error_bound[0], "mean": self.error_bound[1]},
            "explained_variance_ratio": [float(v) for v in ratio],
            "explained_variance_k": float(ratio.sum()),
            **self.details,
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


def _json_name(version: int) -> str:
    return f"v{version:06d}.json"


def read_metadata(lake: str, model_id: str, version: int) -> dict[str, Any]:
    """Metadata JSON of one written version (format 2, or a legacy one: no ``format`` key, a ``ledger``).

    Raises:
        FileNotFoundError: no such version.
    """
    meta = json.loads(storage.read_bytes(storage.join(model_dir(lake, model_id), _json_name(version))))
    if "format" not in meta:  # legacy: the kind is in the batch id of an erasure version
        meta["kind"] = KIND_ERASE if str(meta.get("batch_id", "")).startswith(f"{KIND_ERASE}:") else KIND_BATCH
    return meta


def is_legacy(meta: dict[str, Any]) -> bool:
    """True for a version written before format 2 (one npz holding M2 and the fit)."""
    return "format" not in meta


def _legacy_versions(lake: str, model_id: str) -> list[int]:
    names = storage.list_names(model_dir(lake, model_id))
    return sorted(int(m.group(1)) for m in map(VERSION_JSON.match, names) if m)


def _pointer_file(lake: str, model_id: str) -> int | None:
    try:
        return int(json.loads(storage.read_bytes(storage.join(model_dir(lake, model_id), POINTER)))["version"])
    except FileNotFoundError:
        return None


def read_pointer(lake: str, model_id: str) -> int | None:
    """The latest landed version named by ``LATEST.json``; for a lake without it (written before format 2) the
    highest legacy version listed (one listing, until the next commit writes the pointer); None if no version."""
    pointer = _pointer_file(lake, model_id)
    if pointer is not None:
        return pointer
    for version in reversed(_legacy_versions(lake, model_id)):
        if is_legacy(read_metadata(lake, model_id, version)):
            return version
    return None


def latest_version(lake: str, model_id: str) -> int | None:
    """The latest landed version of ``model_id`` (O(1): the pointer), None if it has none."""
    return read_pointer(lake, model_id)


def _load_fit(lake: str, model_id: str, meta: dict[str, Any]) -> tuple[np.ndarray, PcaFit, SufficientStats | None]:
    root = model_dir(lake, model_id)
    if is_legacy(meta):
        with storage.open_binary(storage.join(root, meta["state_file"])) as f, np.load(f) as npz:
            state = SufficientStats(int(npz["n"]), npz["mean"], npz["m2"])
            fit = PcaFit(npz["components"], npz["explained_variance"], npz["explained_variance_ratio"],
                         int(npz["k_effective"]))
        return state.mean, fit, state
    with storage.open_binary(storage.join(root, meta["fit_file"])) as f, np.load(f) as npz:
        fit = PcaFit(npz["components"].astype(np.float64), npz["explained_variance"],
                     npz["explained_variance_ratio"], int(npz["k_effective"]))
        mean = npz["mean"]
    return mean, fit, None


def load_fit(lake: str, model_id: str, version: int) -> tuple[np.ndarray, PcaFit]:
    """``(mean (float64, (d,)), fit)`` of any version whose fit is kept: what projects a row carrying it.

    Raises:
        FileNotFoundError: the version, or its fit (expired: no row carries it), does not exist.
    """
    mean, fit, _ = _load_fit(lake, model_id, read_metadata(lake, model_id, version))
    return mean, fit


def load_version(lake: str, model_id: str, version: int | None = None) -> PcaVersion | None:
    """Load a version with its full state (default: the latest landed one); None if the model has no version.

    Only the latest version and checkpoints keep their state (module doc).

    Raises:
        FileNotFoundError: ``version`` does not exist or its state was not kept.
    """
    for attempt in range(3):  # the pointer may move (and the old state go) between reading it and the state
        number = latest_version(lake, model_id) if version is None else version
        if number is None:
            return None
        meta = read_metadata(lake, model_id, number)
        try:
            return _version_from(lake, model_id, meta)
        except FileNotFoundError:
            if version is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _version_from(lake: str, model_id: str, meta: dict[str, Any]) -> PcaVersion:
    _, fit, state = _load_fit(lake, model_id, meta)
    if state is None:
        data = storage.read_bytes(storage.join(model_dir(lake, model_id), meta["state_file"]))
        state = SufficientStats.from_packed_bytes(data)
    bound = meta.get("error_bound") or {}
    return PcaVersion(model_id, int(meta["version"]), meta["batch_id"], meta["run_id"], state, fit,
                      meta["kind"], meta.get("parent"), meta.get("created_at", ""),
                      (float(bound.get("m2", 0.0)), float(bound.get("mean", 0.0))))


def prefetch_latest(lake: str, model_id: str) -> Future[PcaVersion | None]:
    """Start loading the latest version of ``model_id`` on a background thread; pass ``.result()`` to
    :func:`plan_version` as ``prefetched``.

    The job calls it before featurizing, so reading the (d, d) state (17 MB for d = 2,048) overlaps the executors'
    work instead of lengthening the commit. Errors are raised by ``.result()``.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pca-prefetch")
    future = pool.submit(load_version, lake, model_id)
    pool.shutdown(wait=False)  # the thread ends with its one task
    return future


Landed = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Base:
    """Where a new version starts: the latest landed version (None: the first), and the number to write."""

    version: int | None
    next_version: int


def _created_seconds(meta: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(meta["created_at"]).timestamp()
    except (KeyError, ValueError):
        return 0.0


def version_batch_ids(meta: dict[str, Any]) -> list[str]:
    """The batch ids a version of kind ``batch`` was committed for: its ``batch_ids`` (a job run of several
    batches), else its ``batch_id`` (versions written before job runs took several batches)."""
    return list(meta.get("batch_ids") or [meta["batch_id"]])


def resolve_base(lake: str, model_id: str, *, batch_id: str | Sequence[str] | None,
                 landed: Landed | None = None) -> Base:
    """The version a new commit of ``batch_id`` (one batch id, the batch ids of a job run, or None: an erasure)
    starts from, and the number it writes.

    Reads the pointer and probes the version numbers after it (normally one probe): a pending version that
    ``landed`` confirms (its ``features`` commit happened, the pointer update was lost) is landed now; one that
    did not land is dead when it is an earlier attempt of the same batches, or older than ``LEASE_SECONDS``
    (module doc). A job run's retry may group its batches differently: a pending version of a run that shares a
    batch with this commit is its own earlier attempt (a batch is never in two job runs at the same time), never a
    concurrent commit.

    Raises:
        ConcurrentCommitError: a pending version of another commit is in flight.
    """
    base = read_pointer(lake, model_id)
    number = 0 if base is None else base
    while True:
        number += 1
        try:
            meta = read_metadata(lake, model_id, number)
        except FileNotFoundError:
            return Base(base, number)
        if landed is not None and landed(meta):
            land(lake, model_id, number)
            base = number
            continue
        mine = set() if batch_id is None else {batch_id} if isinstance(batch_id, str) else set(batch_id)
        own = meta["kind"] == KIND_BATCH and bool(mine & set(version_batch_ids(meta)))
        if not own and time.time() - _created_seconds(meta) < LEASE_SECONDS:
            raise ConcurrentCommitError(f"{model_id}: version {number} ({meta['batch_id']}) is being committed")


def _bound_step(total: SufficientStats, part: SufficientStats, result: SufficientStats) -> tuple[float, float]:
    """First-order absolute error added by one merge/downdate (module doc "Cancellation"): the rank-1 term's trace is
    at most the trace of the merge's result, or of the downdate's ``total``, so the three traces bound every term."""
    m2 = 4 * EPS * (float(np.trace(total.m2)) + float(np.trace(part.m2)) + float(np.trace(result.m2)))
    mean = 4 * EPS * (total.n * float(np.linalg.norm(total.mean)) + part.n * float(np.linalg.norm(part.mean)))
    return m2, mean / max(result.n, 1)


def apply(base: SufficientStats, bound: tuple[float, float], *, remove: SufficientStats | None = None,
          add: SufficientStats | None = None) -> tuple[SufficientStats, tuple[float, float]]:
    """``merge(downdate(base, remove), add)`` and the error bound carried forward (module doc "Cancellation").

    ``base`` is consumed (its memory may become the result's).

    Raises:
        ValueError: dimensions differ, or ``remove`` holds more vectors than ``base``.
    """
    m2_err, mean_err = bound
    state = base
    for part, op in ((remove, "downdate"), (add, "merge")):
        if part is None or part.n == 0:
            continue
        result = downdate(state, part) if op == "downdate" else merge(state, part, overwrite_a=True)
        step = _bound_step(state, part, result)
        m2_err, mean_err = m2_err + step[0], mean_err + step[1]
        state = result
    return state, (m2_err, mean_err)


def needs_refresh(state: SufficientStats, bound: tuple[float, float]) -> bool:
    """True when the error bound exceeds ``REFRESH_TOLERANCE`` of ``||M2||_F`` or ``||mean||``."""
    if state.n < 2:
        return False
    scale_m2, scale_mean = float(np.linalg.norm(state.m2)), float(np.linalg.norm(state.mean))
    return bound[0] > REFRESH_TOLERANCE * scale_m2 or bound[1] > REFRESH_TOLERANCE * max(scale_mean, 1e-300)


def plan_version(lake: str, model_id: str, batch_id: str | Sequence[str], batch_stats: SufficientStats, k: int, *,
                 replaced: SufficientStats | None = None, prefetched: PcaVersion | None = None,
                 landed: Landed | None = None, refresh: Callable[[], SufficientStats] | None = None) -> PcaVersion:
    """Next version of ``model_id``: the latest landed state, minus ``replaced``, plus ``batch_stats`` (not stored).

    One version per job run: ``batch_id`` is one batch id or the batch ids of the run (seal order), ``batch_stats``
    the statistics of all the run's new rows. The version's metadata names them all (``batch_ids``; ``batch_id``
    is the first).

    Args:
        replaced: statistics of the model's rows of ``batch_id`` (all the run's batches) now in ``features`` (a
            re-run replaces them), read back from the table by the caller (float32 widened to float64); None or
            n = 0 for new batches.
        prefetched: the latest version as loaded earlier (:func:`prefetch_latest`); used only if it is still the
            base (otherwise loaded again). Consumed: its state's memory becomes the new version's.
        landed: tells whether a pending version landed in ``features`` (:func:`resolve_base`).
        refresh: exact statistics of the model's rows in ``features`` other than ``batch_id``'s, used instead of the
            base when the error bound calls for it (module doc "Cancellation").

    Driver memory: a few (d, d) float64 matrices (O(d^2)), never per-image data.

    Raises:
        ConcurrentCommitError: another commit of the model is in flight.
    """
    base = resolve_base(lake, model_id, batch_id=batch_id, landed=landed)
    if base.version is None:
        latest = None
    elif prefetched is not None and prefetched.version == base.version:
        latest = prefetched
    else:
        latest = load_version(lake, model_id, base.version)
    start = latest.state if latest is not None else SufficientStats.empty(batch_stats.dim)
    bound = latest.error_bound if latest is not None else (0.0, 0.0)
    removed = replaced if replaced is not None and replaced.n else None
    state, bound = apply(start, bound, remove=removed, add=batch_stats)
    ids = [batch_id] if isinstance(batch_id, str) else list(batch_id)
    details: dict[str, Any] = {"batch_ids": ids, "added": batch_stats.n,
                               "removed": removed.n if removed is not None else 0}
    if refresh is not None and needs_refresh(state, bound):
        others = refresh()
        state, bound = apply(others, (0.0, 0.0), add=batch_stats)
        details["refreshed"] = True
    run_id = uuid.uuid4().hex[:12]
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return PcaVersion(model_id, base.next_version, ids[0], run_id, state, fit_pca(state, k).stored(), KIND_BATCH,
                      base.version, created, bound, details)


def plan_erasure(latest: PcaVersion, next_version: int, erasure_id: str, removed: dict[str, SufficientStats],
                 ) -> PcaVersion:
    """The version that removes ``removed`` (statistics of the erased rows per source batch) from ``latest``.

    ``latest`` is consumed. Raises ValueError: more vectors removed than the state holds.
    """
    state, bound = latest.state, latest.error_bound
    for stats in removed.values():
        state, bound = apply(state, bound, remove=stats)
    details = {"erased": {batch: stats.n for batch, stats in removed.items()}}
    return PcaVersion(latest.model_id, next_version, f"{KIND_ERASE}:{erasure_id}", uuid.uuid4().hex[:12], state,
                      fit_pca(state, latest.fit.k).stored(), KIND_ERASE, latest.version,
                      datetime.now(UTC).isoformat(timespec="seconds"), bound, details)


def fit_bytes(version: PcaVersion) -> bytes:
    """The fit file of a version: npz of n, mean (float64, d), components (float32, (k, d)), explained variance
    and its ratio (float64, k), k_effective: 1.25 MB at k = 150, d = 2,048."""
    buf = io.BytesIO()
    np.savez(buf, n=np.int64(version.state.n), mean=version.state.mean,
             components=version.fit.components.astype(np.float32), explained_variance=version.fit.explained_variance,
             explained_variance_ratio=version.fit.explained_variance_ratio,
             k_effective=np.int64(version.fit.k_effective))
    return buf.getvalue()


def commit_version(lake: str, planned: PcaVersion, *, land_now: bool = True) -> None:
    """Store a version: its fit, its state, then its JSON (the commit marker, exclusive create); then land it
    (pointer) unless ``land_now`` is False (the job lands it after the ``features`` commit).

    Raises:
        storage.ObjectExistsError: another commit wrote this version number first (concurrent runs).
    """
    root = model_dir(lake, planned.model_id)
    storage.write_bytes(storage.join(root, planned.fit_file()), fit_bytes(planned), exclusive=True)
    storage.write_bytes(storage.join(root, planned.state_file()), planned.state.to_packed_bytes(), exclusive=True)
    body = json.dumps(planned.metadata(), indent=1).encode()
    storage.write_bytes(storage.join(root, _json_name(planned.version)), body, exclusive=True)
    if land_now:
        land(lake, planned.model_id, planned.version)


def land(lake: str, model_id: str, version: int) -> None:
    """Make ``version`` the latest (pointer replaced atomically, never moved backwards), then delete the states
    no longer needed: those of the versions from its parent up to it, except checkpoints and legacy versions."""
    current = _pointer_file(lake, model_id)
    if current is not None and current >= version:
        return
    root = model_dir(lake, model_id)
    storage.write_bytes(storage.join(root, POINTER), json.dumps({"version": version}).encode())
    meta = read_metadata(lake, model_id, version)
    parent = meta.get("parent")
    for number in range(parent if parent is not None else version, version):
        try:
            old = read_metadata(lake, model_id, number)
        except FileNotFoundError:
            continue
        if not is_legacy(old) and not old.get("checkpoint"):
            storage.delete(storage.join(root, old["state_file"]))


def pending(lake: str, model_id: str) -> list[dict[str, Any]]:
    """Metadata of the versions written after the latest landed one (normally none), ascending."""
    base = read_pointer(lake, model_id)
    out, number = [], 0 if base is None else base
    while True:
        number += 1
        try:
            out.append(read_metadata(lake, model_id, number))
        except FileNotFoundError:
            return out


def landed_in_features(lake_tables: Any, model_id: str, margin_seconds: float = 300.0) -> Landed:
    """A ``landed`` test for :func:`resolve_base`: does the ``features`` table have a snapshot of ``model_id`` naming
    the version (summary ``fruits.pca_version``)? Walks the snapshots from the newest back to the version's
    creation time (minus ``margin_seconds`` of clock skew) only."""
    from spark_jobs.lakehouse import tables

    def check(meta: dict[str, Any]) -> bool:
        if meta["kind"] != KIND_BATCH or not lake_tables.exists(tables.FEATURES):
            return False
        table = lake_tables.table(tables.FEATURES, create=False)
        since_ms = (_created_seconds(meta) - margin_seconds) * 1000
        snapshot = table.current_snapshot()
        while snapshot is not None and snapshot.timestamp_ms >= since_ms:
            summary = snapshot.summary.additional_properties if snapshot.summary else {}
            if summary.get("fruits.model_id") == model_id and summary.get("fruits.pca_version") == str(meta["version"]):
                return True
            parent = snapshot.parent_snapshot_id
            snapshot = table.snapshot_by_id(parent) if parent is not None else None
        return False

    return check
