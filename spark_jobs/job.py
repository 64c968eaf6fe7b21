"""One job run, end to end: the manifests of its batches -> images -> features -> ONE exact PCA update -> Iceberg
commits -> one report per batch.

A job run takes one batch or several (``--manifest URI --batch-id ID`` pairs in seal order, docs/contracts.md
"Spark job arguments"). Their manifests are read and merged (:func:`merge_manifests`: an image URI listed by two
batches of the run is featurized once, at its newest version, for the batch that listed it; the other batch reports
it ``stale`` / ``superseded``); the executors decode, featurize and summarise all of the run's images in one pass
(:func:`spark_jobs.featurize.one_pass.featurize_batch`: one Spark stage, the engine built once per worker); the driver
then holds the run's feature vectors (Arrow: 1,000 images x 2,048 float32 = 8.2 MB, plus k PCA floats and metadata
per row; a run is at most the Lambda's ``JOB_MAX_IMAGES``), plans the PCA version, projects, and commits with
PyIceberg (:mod:`spark_jobs.lakehouse.tables`). Spark writes nothing to the lake.

One PCA version per job run (not per batch): the run's rows are projected on one version and each table gets one
commit per run, so the commit overhead does not grow with the number of batches in the run. The per-batch
guarantees stay: every row carries its own batch's id, each batch has its own ``batches`` row and report
``batches/<batch_id>.json`` (with a ``run`` part naming the run's batches), and a re-run of any batch (alone, or
grouped differently) replaces exactly that batch's rows.

Commit order (:func:`commit_run`, no Spark needed; each step idempotent; a job killed between any two steps and
re-run, with the same batches or grouped differently, ends with exactly one copy of each batch's rows and a PCA
state equal to a batch PCA over the ``features`` rows of the model):

0. liveness: the run's versions erased or superseded since their batches were sealed are dropped
   (:mod:`spark_jobs.lakehouse.liveness`, checked against the lake's ``erasures`` ledger and the stamps of the
   ``features`` / ``rejects`` rows of the run's URIs);
1. ``rejects``: the rows of (batch IN the run's batches, model) replaced in one Iceberg transaction;
2. the PCA version: fit, state and finally its JSON marker, never overwritten (:mod:`spark_jobs.pca.versions`; the
   statistics of the old rows of ALL the run's batches, read back from ``features``, are downdated and the new
   ones merged; a pending version written by an earlier attempt that shared a batch with this run is its own);
3. ``features``: the rows of (batch IN the run's batches, model) replaced in one Iceberg transaction, each row
   carrying the PCA version it was projected on, also named in the snapshot summary (``fruits.pca_version``); then
   the version lands (``pca/<model_id>/LATEST.json``; a version killed before its ``features`` commit is dropped by
   the re-run);
4. ``near_duplicates``: the run's pairs replaced (pairs between two photos of the run too), after the supersede
   step (:mod:`spark_jobs.lakehouse.near_duplicates`);
5. ``batches``: one row per batch of the run (one commit), then the JSON report of each batch.

Between 3 and 4, older rows of the run's featurized and rejected URIs in other batches leave the model
(``erasure.supersede``); after 4, the erasure lists beside each manifest are applied, the newest line per key over
the whole run (recorded in the ``erasures`` ledger first, ``erasure.erase_images``), after the late-erasure check.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from uuid import uuid4

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from lambdas.contracts import VersionStamp, is_newer
from spark_jobs import storage
from spark_jobs.featurize import fidelity as fidelity_check
from spark_jobs.featurize import quantization
from spark_jobs.featurize.engines import check_engine, default_engine
from spark_jobs.featurize.models import ModelSpec, resolve_weights
from spark_jobs.featurize.one_pass import BatchFeatures, featurize_batch
from spark_jobs.lakehouse import erasure, liveness, near_duplicates, tables
from spark_jobs.lakehouse import reports as lake_io
from spark_jobs.lakehouse.time_to_feature import time_to_feature
from spark_jobs.manifest import (
    Arrival,
    Erasure,
    RunManifests,
    arrivals,
    manifest_frame,
    merge_manifests,
    parse_manifest,
    read_erasures,
)
from spark_jobs.pca.projection import project_vectors
from spark_jobs.pca.stats import SufficientStats
from spark_jobs.pca.table_stats import rows_statistics
from spark_jobs.pca.versions import PcaVersion, commit_version, land, landed_in_features, plan_version, prefetch_latest

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


@dataclass(frozen=True)
class JobConfig:
    """Validated job arguments (docs/contracts.md "Spark job arguments").

    ``manifest`` / ``batch_id`` are the run's first batch; ``more_batches`` the further ``(batch_id, manifest)``
    pairs of a job run of several batches, in seal order (:attr:`batches` lists them all). Raises ValueError: a
    batch id given twice.
    """

    manifest: str
    lake: str
    batch_id: str
    weights: str = "imagenet"
    pca_k: int = 150
    image_size: int = 224
    infer_batch_size: int = 32
    precision: str = "float32"
    catalog: str | None = None  # sql:PATH | glue[:DATABASE]; None: the SQLite file next to a local lake
    engine: str | None = None  # tensorflow | openvino | onnxruntime; None: engines.default_engine() of this machine
    near_duplicate_similarity: float = near_duplicates.DEFAULT_MIN_SIMILARITY  # centred cosine; pairs >= it recorded
    calibration: str | None = None  # int8: folder or calibration manifest (spark_jobs.featurize.quantization)
    calibration_images: int = quantization.CALIBRATION_IMAGES
    holdout_images: int = quantization.HOLDOUT_IMAGES
    min_mean_cosine: float = fidelity_check.MIN_MEAN_COSINE  # int8 fidelity gate threshold
    more_batches: tuple[tuple[str, str], ...] = ()  # (batch_id, manifest URI) after the first, seal order

    def __post_init__(self) -> None:
        ids = self.batch_ids
        if len(set(ids)) != len(ids):
            raise ValueError(f"batch id given twice in one job run: {', '.join(ids)}")

    @classmethod
    def for_run(cls, batches: Sequence[tuple[str, str]], lake: str, **options: Any) -> JobConfig:
        """The config of a job run of ``batches`` (``(batch_id, manifest URI)`` in seal order, at least one);
        ``options`` are the other fields. Raises ValueError: no batch, or a batch id twice."""
        if not batches:
            raise ValueError("a job run needs at least one batch")
        (batch_id, manifest), *more = batches
        return cls(manifest, lake, batch_id, **options, more_batches=tuple((b, m) for b, m in more))

    @property
    def batches(self) -> tuple[tuple[str, str], ...]:
        """``(batch_id, manifest URI)`` of every batch of the run, seal order."""
        return ((self.batch_id, self.manifest), *self.more_batches)

    @property
    def batch_ids(self) -> list[str]:
        """The run's batch ids, seal order."""
        return [batch_id for batch_id, _ in self.batches]


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)


def _per_row(batch_id: str | Sequence[str], n: int) -> pa.Array:
    """A ``batch_id`` column of ``n`` rows: one id repeated, or the id of each row (a job run of several batches)."""
    values = [batch_id] * n if isinstance(batch_id, str) else list(batch_id)
    if len(values) != n:
        raise ValueError(f"{len(values)} batch ids for {n} rows")
    return pa.array(values, type=pa.string())


def feature_rows(batch: BatchFeatures, planned: PcaVersion, *, batch_id: str | Sequence[str],
                 committed_at: dt.datetime, arrivals: Mapping[str, Arrival] | None = None) -> pa.Table:
    """The ``features`` rows of a job run: the executors' rows + ``pca`` (k float32, projected on ``planned``),
    ``pca_version``, ``model_id``, ``ingested_at`` (= ``committed_at``, UTC), ``batch_id`` (one id, or the batch of
    each row of ``batch.features``), and the version stamp of each image from ``arrivals``: S3 ``event_time`` /
    ``sequencer`` / ``version_id`` and the listing's ``last_modified`` (null when unknown).

    Raises:
        ValueError: per-row batch ids not one per feature row.
    """
    table = batch.features
    n = table.num_rows
    if n:
        x = np.stack(table.column("features").to_numpy(zero_copy_only=False))
        pca = project_vectors(x, planned.mean, planned.fit.components)
    else:
        pca = np.zeros((0, planned.fit.k), dtype=np.float32)
    table = (
        table.append_column("pca", pa.array(list(pca), type=pa.list_(pa.float32())))
        .append_column("pca_version", pa.array([planned.version] * n, type=pa.int32()))
        .append_column("model_id", pa.array([planned.model_id] * n, type=pa.string()))
        .append_column("ingested_at", pa.array([committed_at] * n, type=pa.timestamp("us", tz="UTC")))
        .append_column("batch_id", _per_row(batch_id, n))
    )
    return with_stamps(table, arrivals)


def with_stamps(rows: pa.Table, arrivals: Mapping[str, Arrival] | None) -> pa.Table:
    """``rows`` (with ``image_uri``) + the version stamp columns of each image from ``arrivals``: S3 ``event_time``,
    ``sequencer``, ``version_id`` and the listing's ``last_modified`` (null when unknown)."""
    known = [(arrivals or {}).get(uri) for uri in rows.column("image_uri").to_pylist()]
    utc = pa.timestamp("us", tz="UTC")
    return (
        rows.append_column("event_time", pa.array([a and a.event_time for a in known], type=utc))
        .append_column("sequencer", pa.array([a and a.sequencer for a in known], type=pa.string()))
        .append_column("version_id", pa.array([(a and a.version_id) or None for a in known], type=pa.string()))
        .append_column("last_modified", pa.array([a and a.last_modified for a in known], type=utc))
    )


def reject_rows(batch: BatchFeatures, *, batch_id: str | Sequence[str], model_id: str,
                arrivals: Mapping[str, Arrival] | None = None) -> pa.Table:
    """The ``rejects`` rows of a job run (``image_uri``, ``reason``, ``batch_id``: one id or the batch of each row
    of ``batch.rejects``, ``model_id`` and the version stamp columns, :func:`with_stamps`)."""
    n = batch.rejects.num_rows
    rows = batch.rejects.append_column("batch_id", _per_row(batch_id, n)).append_column(
        "model_id", pa.array([model_id] * n, type=pa.string())
    )
    return with_stamps(rows, arrivals)


def batch_row(report: dict[str, Any] | Sequence[dict[str, Any]], committed_at: dt.datetime) -> pa.Table:
    """The ``batches`` rows of a job run, one per batch report (the whole report kept as JSON in ``report``)."""
    reports = [report] if isinstance(report, dict) else list(report)
    return pa.Table.from_pylist(
        [{
            "batch_id": r["batch_id"], "model_id": r["model_id"], "committed_at": committed_at,
            "listed": r["counts"]["listed"], "featurized": r["counts"]["featurized"],
            "rejected": r["counts"]["rejected"], "pca_version": r["pca_version"], "n_total": r["n_total"],
            "explained_variance_ratio": r["explained_variance_ratio"],
            "explained_variance_k": r["explained_variance_k"],
            "images_per_second": r["images_per_second"], "report": json.dumps(r),
        } for r in reports],
        schema=tables.BATCHES_SCHEMA.as_arrow(),
    )


def read_run_manifests(config: JobConfig) -> list[tuple[str, list[dict]]]:
    """``(batch_id, parsed records)`` of each batch of the run, seal order.

    Raises:
        FileNotFoundError, spark_jobs.manifest.ManifestError (a manifest missing or malformed).
    """
    return [(batch_id, parse_manifest(storage.read_bytes(manifest))) for batch_id, manifest in config.batches]


def run_batches(spark: SparkSession, config: JobConfig, spec: ModelSpec | None = None) -> list[dict[str, Any]]:
    """Featurize the images of all the run's manifests in one pass and commit the run; returns one report per
    batch, in the run's (seal) order.

    Args:
        spec: an already resolved model (default: ``resolve_weights(config.weights, config.image_size,
            config.precision)``).

    Raises:
        spark_jobs.manifest.ManifestError, FileNotFoundError (manifest), storage.ObjectExistsError (a
        concurrent job committed the same PCA version), pyiceberg CommitFailedException (a concurrent table
        commit), tables.CatalogSpecError (bad catalog setting), Spark/TensorFlow errors. Bad images never raise.
        int8: quantization.CalibrationError (calibration source), fidelity_check.FidelityError (gate refused the
        model; nothing written).
    """
    timer = _Timer()
    with timer.stage("resolve_weights"):
        calibration = None if spec or config.precision != "int8" else quantization.resolve_calibration(
            config.calibration or "", config.calibration_images, config.holdout_images, config.image_size)
        spec = spec or resolve_weights(config.weights, config.image_size, config.precision, calibration)
    engine = check_engine(config.engine or default_engine(precision=spec.precision), spec.precision)
    threads = int(spark.conf.get("spark.task.cpus", "1"))  # cores Spark reserves for each task
    fidelity = None
    if spec.precision == "int8":  # before anything is read or written: a refused model stops the job here
        with timer.stage("fidelity_gate"):
            fidelity = fidelity_check.fidelity_gate(spec, engine, os.cpu_count() or 1, config.min_mean_cosine,
                                                  lake=config.lake)  # measured once per model, kept in the lake
    previous = spark.conf.get(ARROW_BATCH_CONF, None)
    spark.conf.set(ARROW_BATCH_CONF, str(config.infer_batch_size))  # bounds pixels held per Arrow frame
    latest_pca = prefetch_latest(config.lake, spec.model_id)  # read while the executors featurize
    try:
        with timer.stage("read_manifest"):
            parsed = read_run_manifests(config)
            frame = manifest_frame(spark, merge_manifests(parsed).records)  # each URI once, the run's newest
        batch = featurize_batch(frame, spec, image_size=config.image_size,
                                infer_batch_size=config.infer_batch_size, threads=threads, engine=engine)
    finally:
        if previous is None:
            spark.conf.unset(ARROW_BATCH_CONF)
        else:
            spark.conf.set(ARROW_BATCH_CONF, previous)
    timer.seconds.update(batch.seconds)
    return commit_run(config, spec, engine, batch, parsed, timer=timer, prefetched=latest_pca.result(),
                      fidelity=fidelity)


def run_batch(spark: SparkSession, config: JobConfig, spec: ModelSpec | None = None) -> dict[str, Any]:
    """:func:`run_batches` of a run of one batch (``config.more_batches`` empty); returns its report.

    Raises:
        ValueError: the config names several batches. Otherwise as :func:`run_batches`.
    """
    if config.more_batches:
        raise ValueError("run_batch runs one batch; use run_batches for a job run of several")
    return run_batches(spark, config, spec)[0]


def drop_stale(batch: BatchFeatures, stale: Mapping[str, str]) -> BatchFeatures:
    """``batch`` without the rows (features and rejects) of the URIs in ``stale``; its statistics recomputed from
    the kept feature vectors (float32 widened to float64, as the executors do) when a feature row was dropped, so
    the PCA counts exactly the rows committed. ``listed`` is unchanged."""
    if not stale:
        return batch
    dead = pa.array(sorted(stale), type=pa.string())
    features = batch.features.filter(pc.invert(pc.is_in(batch.features.column("image_uri"), value_set=dead)))
    rejects = batch.rejects.filter(pc.invert(pc.is_in(batch.rejects.column("image_uri"), value_set=dead)))
    stats = batch.stats
    if features.num_rows != batch.features.num_rows:
        stats = SufficientStats.empty(batch.stats.dim)
        if features.num_rows:
            x = np.stack(features.column("features").to_numpy(zero_copy_only=False)).astype(np.float64)
            stats = SufficientStats.from_array(x)
    return replace(batch, features=features, rejects=rejects, stats=stats)


def _erase_listed(config: JobConfig, started: dt.datetime) -> tuple[dict[str, int], erasure.ErasureReport | None]:
    """Apply the erasure lists beside the run's manifests to every model, the newest line per key over the whole
    run, in one erasure; (distinct keys listed per batch, report or None)."""
    erased: dict[str, Erasure] = {}
    requested: dict[str, int] = {}
    for batch_id, manifest in config.batches:
        lines = read_erasures(manifest, default_time=started.isoformat())
        requested[batch_id] = len({line.image_uri for line in lines})
        for line in lines:
            known = erased.get(line.image_uri)
            if known is None or is_newer(line.stamp, known.stamp):
                erased[line.image_uri] = line  # the newest erasure of a key covers the older ones
    if not erased:
        return requested, None
    erasure_id = f"{config.batch_id}-e{uuid4().hex[:6]}"  # one id per attempt: a retry never collides
    done = erasure.erase_images(config.lake, sorted(erased), catalog=config.catalog, erasure_id=erasure_id,
                                stamps={u: e.stamp for u, e in erased.items()},
                                reasons={u: e.reason for u, e in erased.items()})
    return requested, done


def _erase_late(config: JobConfig, lake: tables.Lake, committed: Mapping[str, VersionStamp]) -> int:
    """Close the race with an erasure recorded while this job committed (``fruits erase`` after the liveness check,
    its row delete done before this job's ``features`` commit): the ledger is read again for the committed URIs and
    the versions an erasure now covers are erased (with that erasure's stamp). Returns how many."""
    covered: dict[str, VersionStamp] = {}
    for uri, erasures in liveness.erasure_stamps(lake, committed).items():
        for stamp in erasures:
            if not is_newer(committed[uri], stamp) and (uri not in covered or is_newer(stamp, covered[uri])):
                covered[uri] = stamp
    if covered:
        erasure.erase_images(config.lake, sorted(covered), catalog=config.catalog, stamps=covered,
                             erasure_id=f"{config.batch_id}-l{uuid4().hex[:6]}")
    return len(covered)


def commit_batch(
    config: JobConfig, spec: ModelSpec, engine: str, batch: BatchFeatures, records: list[dict], *,
    timer: _Timer | None = None, prefetched: PcaVersion | None = None, fidelity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`commit_run` of a run of one batch (``config.batch_id``, its parsed manifest ``records``); returns
    its report. Raises ValueError: the config names several batches; otherwise as :func:`commit_run`."""
    if config.more_batches:
        raise ValueError("commit_batch commits one batch; use commit_run for a job run of several")
    return commit_run(config, spec, engine, batch, [(config.batch_id, records)], timer=timer, prefetched=prefetched,
                      fidelity=fidelity)[0]


def commit_run(
    config: JobConfig, spec: ModelSpec, engine: str, batch: BatchFeatures, parsed: Sequence[tuple[str, list[dict]]],
    *, timer: _Timer | None = None, prefetched: PcaVersion | None = None, fidelity: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Commit a featurized job run to the lake (module doc steps 0-5, supersede and the erasure lists); returns one
    report per batch (seal order). Needs no Spark: ``batch`` may come from :func:`featurize_batch` or be built by a
    test; it holds the rows of the run's merged manifests (:func:`merge_manifests`, each URI once).

    First the liveness check (:mod:`spark_jobs.lakehouse.liveness`): the versions of the run that are no longer live
    (erased, or superseded by a newer version already in ``features``) are dropped from the commit and from the
    PCA, and reported, so a re-run of an old batch or a late job run never resurrects an erased photo nor reverts
    an overwrite. Stale images are in neither ``features`` nor ``rejects``; a batch report's ``stale`` gives
    ``{"images": n, "by_reason": {"erased"|"superseded": n}}`` (a version that lost to a newer one of another batch
    of the run counts as ``superseded``), so ``listed = featurized + rejected + stale`` per batch.

    Report of each batch: its own ``counts``, ``rejected_by_reason``, ``stale``, ``time_to_feature_seconds``; the
    run's PCA version (one per run), ``seconds`` and ``images_per_second`` (the run's featurize pass), and the
    effects of the run's commit as a whole (``superseded``, ``near_duplicates``, ``erased`` rows; ``erased``
    ``requested`` is the batch's own list), with ``run``: ``{"run_id": the PCA version's run id, "batch_ids": [...],
    "images": listed over the run, "featurized": n, "rejected": n}``.

    Args:
        spec: the model (only its ``model_id``, ``precision`` and ``fallback_reason`` are used). engine: the
            inference engine that ran (reported). parsed: ``(batch_id, parsed manifest)`` of each batch of
            ``config.batches`` (:func:`parse_manifest`), same order.
        timer: stage timings to add to (the featurize pass's). prefetched: the model's latest PCA version if
            loaded already (:func:`spark_jobs.pca.versions.prefetch_latest`). fidelity: the int8 fidelity gate's figures
            (:func:`spark_jobs.featurize.fidelity.fidelity_gate`), reported; None for the other precisions.

    Raises:
        storage.ObjectExistsError, pyiceberg CommitFailedException (concurrent commits), ValueError (bad erasure
        list line; ``parsed`` not the config's batches; a row of ``batch`` whose URI no manifest of the run lists).
    """
    if [batch_id for batch_id, _ in parsed] != config.batch_ids:
        raise ValueError(f"manifests of {[b for b, _ in parsed]} for the run of {config.batch_ids}")
    timer = timer or _Timer()
    started = dt.datetime.now(dt.UTC)
    lake = tables.Lake.at(config.lake, config.catalog)
    run: RunManifests = merge_manifests(parsed)
    arrived = arrivals(run.records)
    ids, model_id = config.batch_ids, spec.model_id
    owner_of = _owner(run)
    for rows in (batch.features, batch.rejects):
        owner_of(rows)  # every row is of a URI the run lists (else ValueError)
    with timer.stage("liveness"):  # versions erased or superseded since the batch was sealed are not written
        uris = [*batch.features.column("image_uri").to_pylist(), *batch.rejects.column("image_uri").to_pylist()]
        unknown = Arrival(None, None)
        stale = liveness.stale_versions(lake, {u: arrived.get(u, unknown).stamp for u in uris})
        batch = drop_stale(batch, stale)
    with timer.stage("pca_fit"):
        erasure.complete_pending(lake, config.lake, model_id)  # an erasure killed mid-way rolls forward first
        dim = batch.stats.dim
        replaced = rows_statistics(lake, model_id, dim, batch_id=ids)  # a re-run's old rows, every batch of the run
        planned = plan_version(config.lake, model_id, ids, batch.stats, config.pca_k,
                               replaced=replaced, prefetched=prefetched,
                               landed=landed_in_features(lake, model_id),
                               refresh=lambda: rows_statistics(lake, model_id, dim, exclude_batch=ids))
    committed_at = dt.datetime.now(dt.UTC)
    feature_owner = owner_of(batch.features)
    reject_owner = owner_of(batch.rejects)
    with timer.stage("write_rejects"):
        tables.replace_batch_rows(lake, tables.REJECTS, reject_rows(batch, batch_id=reject_owner, model_id=model_id,
                                                                    arrivals=arrived), batch_id=ids, model_id=model_id)
    with timer.stage("pca_commit"):
        commit_version(config.lake, planned, land_now=False)
    with timer.stage("write_features"):
        rows = feature_rows(batch, planned, batch_id=feature_owner, committed_at=committed_at, arrivals=arrived)
        tables.replace_batch_rows(lake, tables.FEATURES, rows, batch_id=ids, model_id=model_id,
                                  summary={"fruits.pca_version": str(planned.version)})
        land(config.lake, model_id, planned.version)
    with timer.stage("supersede"):  # an overwritten photo keeps one row, its newest content (erasure.supersede)
        featurized = batch.features.column("image_uri").to_pylist()  # a newest version rejected leaves no older row
        committed = [*featurized, *batch.rejects.column("image_uri").to_pylist()]
        superseded = erasure.supersede(lake, config.lake, model_id, committed, keep_batch=ids)
    # the run's pairs, one commit (spark_jobs.lakehouse.near_duplicates module doc)
    with timer.stage("near_duplicates"):
        n_pairs = near_duplicates.record_batch_pairs(
            lake, batch_id=ids, model_id=model_id, uris=featurized, row_batch_ids=feature_owner,
            vectors=near_duplicates.vectors_of(batch.features.column("features")),
            mean=planned.mean, min_similarity=config.near_duplicate_similarity)
    with timer.stage("erase"):  # images removed from the bucket since: their rows leave every model, PCA downdated
        late = _erase_late(config, lake, {u: arrived.get(u, unknown).stamp for u in committed})
        requested, done = _erase_listed(config, started)
    ratio = planned.fit.explained_variance_ratio
    rate = round(batch.features.num_rows / max(timer.seconds.get("featurize", 0.0), 1e-9), 3)
    run_part = {"run_id": planned.run_id, "batch_ids": ids, "images": sum(len(u) for u in run.listed.values()),
                "featurized": batch.features.num_rows, "rejected": batch.rejects.num_rows}
    shared: dict[str, Any] = {
        "model_id": model_id,
        "weights": config.weights,
        "weights_fallback": spec.fallback_reason,
        "precision": spec.precision,
        "engine": engine,
        "fidelity": fidelity,  # int8: fidelity_check.fidelity_gate figures; None otherwise
        "task": batch.task,
        "catalog": lake.catalog,
        "seconds": timer.seconds,
        "images_per_second": rate,
        "pca_version": planned.version,
        "pca_k": config.pca_k,
        "pca_k_effective": planned.fit.k_effective,
        "n_total": planned.state.n,
        "explained_variance_ratio": [float(v) for v in ratio],
        "explained_variance_k": float(ratio.sum()),
        "committed_at": committed_at.isoformat(timespec="seconds"),
        "superseded": {"rows": superseded.rows if superseded else 0,
                       "pca_version": superseded.pca_version if superseded else None},
        "near_duplicates": {"pairs": n_pairs, "min_similarity": config.near_duplicate_similarity},
        "run": run_part,
    }
    featured_by = _group(featurized, feature_owner)
    rejects_by = _group(batch.rejects.column("reason").to_pylist(), reject_owner)
    stale_by = _group([(u, r) for u, r in stale.items()], [run.owner[u] for u in stale])
    reports = []
    for batch_id in ids:
        reasons = dict(sorted(Counter(rejects_by.get(batch_id, [])).items()))
        stale_reasons = Counter(r for _, r in stale_by.get(batch_id, []))
        stale_reasons.update({liveness.SUPERSEDED: len(run.superseded[batch_id])} if run.superseded[batch_id] else {})
        own = featured_by.get(batch_id, [])
        reports.append({
            "batch_id": batch_id,
            **shared,
            "counts": {"listed": len(run.listed[batch_id]), "featurized": len(own), "rejected": sum(reasons.values())},
            "rejected_by_reason": reasons,
            "stale": {"images": sum(stale_reasons.values()), "by_reason": dict(sorted(stale_reasons.items()))},
            "time_to_feature_seconds": time_to_feature((arrived[u].event_time for u in own if u in arrived),
                                                       committed_at),
            "erased": {"requested": requested.get(batch_id, 0), "rows": done.rows if done else 0,
                       "pca_versions": {m.model_id: m.pca_version for m in done.models} if done else {},
                       "late": late},
        })
    tables.replace_batch_rows(lake, tables.BATCHES, batch_row(reports, committed_at), batch_id=ids,
                              model_id=model_id)
    for report in reports:
        lake_io.write_report(config.lake, report)
    return reports


def _owner(run: RunManifests):
    """A function: rows with ``image_uri`` -> the batch id of each row (the batch whose version it is).

    Raises ValueError (when called): a URI no manifest of the run lists."""
    def of(rows: pa.Table) -> list[str]:
        uris = rows.column("image_uri").to_pylist()
        unknown = sorted(set(uris) - run.owner.keys())
        if unknown:
            raise ValueError(f"{len(unknown)} row(s) of URIs no manifest of the run lists, e.g. {unknown[0]}")
        return [run.owner[u] for u in uris]
    return of


def _group(values: Sequence[Any], keys: Sequence[str]) -> dict[str, list[Any]]:
    """``values`` grouped by their ``keys`` (same length), order kept."""
    out: dict[str, list[Any]] = {}
    for value, key in zip(values, keys, strict=True):
        out.setdefault(key, []).append(value)
    return out
