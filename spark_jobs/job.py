"""One batch run, end to end: manifest -> images -> features -> exact PCA update -> Iceberg commits -> report.

The executors decode, featurize and summarise the batch (:func:`spark_jobs.featurize_pass.featurize_batch`);
the driver then holds the batch's feature vectors (Arrow: 1,000 images x 2,048 float32 = 8.2 MB, plus k PCA
floats and metadata per row; a batch is at most ``BATCH_MAX_IMAGES``), plans the PCA version, projects, and
commits with PyIceberg (:mod:`spark_jobs.tables`). Spark writes nothing to the lake.

Commit order (:func:`commit_batch`, no Spark needed; each step idempotent; a job killed between any two steps and
re-run ends with exactly one copy of the batch's rows and a PCA state equal to a batch PCA over the ``features`` rows
of the model):

0. liveness: the batch's versions erased or superseded since it was sealed are dropped (:mod:`spark_jobs.liveness`,
   checked against the lake's ``erasures`` ledger and the stamps of the ``features`` / ``rejects`` rows of the
   batch's URIs);
1. ``rejects``: the rows of (batch, model) replaced in one Iceberg transaction;
2. the PCA version: fit, state and finally its JSON marker, never overwritten (:mod:`spark_jobs.pca`; re-running a
   batch id downdates the statistics of its rows read back from ``features`` and merges the new ones);
3. ``features``: the rows of (batch, model) replaced in one Iceberg transaction, each row carrying the PCA
   version it was projected on, also named in the snapshot summary (``fruits.pca_version``); then the version
   lands (``pca/<model_id>/LATEST.json``; a version killed before its ``features`` commit is dropped by the re-run);
4. ``near_duplicates``: the batch's pairs replaced, after the supersede step (:mod:`spark_jobs.near_duplicates`);
5. ``batches``: the batch run's row, then the JSON report ``batches/<batch_id>.json``.

Between 3 and 4, older rows of the batch's featurized and rejected URIs leave the model (``erasure.supersede``);
after 4, the batch's erasure list is applied (recorded in the ``erasures`` ledger first, ``erasure.erase_images``).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from uuid import uuid4

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from lambdas.contracts import VersionStamp, is_newer
from spark_jobs import erasure, liveness, near_duplicates, quantization, storage, tables
from spark_jobs import lake as lake_io
from spark_jobs.engines import check_engine, default_engine
from spark_jobs.featurize_pass import BatchFeatures, featurize_batch
from spark_jobs.manifest import Arrival, Erasure, arrivals, manifest_frame, parse_manifest, read_erasures
from spark_jobs.models import ModelSpec, resolve_weights
from spark_jobs.pca import PcaVersion, commit_version, land, landed_in_features, plan_version, prefetch_latest
from spark_jobs.projection import project_vectors
from spark_jobs.stats import SufficientStats
from spark_jobs.table_stats import rows_statistics
from spark_jobs.time_to_feature import time_to_feature

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


@dataclass(frozen=True)
class JobConfig:
    """Validated job arguments (docs/contracts.md "Spark job arguments")."""

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
    calibration: str | None = None  # int8: folder or calibration manifest (spark_jobs.quantization)
    calibration_images: int = quantization.CALIBRATION_IMAGES
    holdout_images: int = quantization.HOLDOUT_IMAGES
    min_mean_cosine: float = quantization.MIN_MEAN_COSINE  # int8 fidelity gate threshold


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


def feature_rows(batch: BatchFeatures, planned: PcaVersion, *, batch_id: str, committed_at: dt.datetime,
                 arrivals: Mapping[str, Arrival] | None = None) -> pa.Table:
    """The ``features`` rows of a batch run: the executors' rows + ``pca`` (k float32, projected on ``planned``),
    ``pca_version``, ``model_id``, ``ingested_at`` (= ``committed_at``, UTC), ``batch_id``, and the version stamp
    of each image from ``arrivals``: S3 ``event_time`` / ``sequencer`` / ``version_id`` and the listing's
    ``last_modified`` (null when unknown)."""
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
        .append_column("batch_id", pa.array([batch_id] * n, type=pa.string()))
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


def reject_rows(batch: BatchFeatures, *, batch_id: str, model_id: str,
                arrivals: Mapping[str, Arrival] | None = None) -> pa.Table:
    """The ``rejects`` rows of a batch run (``image_uri``, ``reason``, ``batch_id``, ``model_id`` and the version
    stamp columns, :func:`with_stamps`)."""
    n = batch.rejects.num_rows
    rows = batch.rejects.append_column("batch_id", pa.array([batch_id] * n, type=pa.string())).append_column(
        "model_id", pa.array([model_id] * n, type=pa.string())
    )
    return with_stamps(rows, arrivals)


def batch_row(report: dict[str, Any], committed_at: dt.datetime) -> pa.Table:
    """The ``batches`` row of a batch run, from its report (the whole report kept as JSON in ``report``)."""
    counts = report["counts"]
    return pa.Table.from_pylist(
        [{
            "batch_id": report["batch_id"], "model_id": report["model_id"], "committed_at": committed_at,
            "listed": counts["listed"], "featurized": counts["featurized"], "rejected": counts["rejected"],
            "pca_version": report["pca_version"], "n_total": report["n_total"],
            "explained_variance_ratio": report["explained_variance_ratio"],
            "explained_variance_k": report["explained_variance_k"],
            "images_per_second": report["images_per_second"], "report": json.dumps(report),
        }],
        schema=tables.BATCHES_SCHEMA.as_arrow(),
    )


def run_batch(spark: SparkSession, config: JobConfig, spec: ModelSpec | None = None) -> dict[str, Any]:
    """Featurize the manifest's images and commit the batch run to the lake; returns the batch report.

    Args:
        spec: an already resolved model (default: ``resolve_weights(config.weights, config.image_size,
            config.precision)``).

    Raises:
        spark_jobs.manifest.ManifestError, FileNotFoundError (manifest), storage.ObjectExistsError (a
        concurrent job committed the same PCA version), pyiceberg CommitFailedException (a concurrent table
        commit), tables.CatalogSpecError (bad catalog setting), Spark/TensorFlow errors. Bad images never raise.
        int8: quantization.CalibrationError (calibration source), quantization.FidelityError (gate refused the
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
            fidelity = quantization.fidelity_gate(spec, engine, os.cpu_count() or 1, config.min_mean_cosine,
                                                  lake=config.lake)  # measured once per model, kept in the lake
    previous = spark.conf.get(ARROW_BATCH_CONF, None)
    spark.conf.set(ARROW_BATCH_CONF, str(config.infer_batch_size))  # bounds pixels held per Arrow frame
    latest_pca = prefetch_latest(config.lake, spec.model_id)  # read while the executors featurize
    try:
        with timer.stage("read_manifest"):
            records = parse_manifest(storage.read_bytes(config.manifest))
            manifest = manifest_frame(spark, records)
        batch = featurize_batch(manifest, spec, image_size=config.image_size,
                                infer_batch_size=config.infer_batch_size, threads=threads, engine=engine)
    finally:
        if previous is None:
            spark.conf.unset(ARROW_BATCH_CONF)
        else:
            spark.conf.set(ARROW_BATCH_CONF, previous)
    timer.seconds.update(batch.seconds)
    return commit_batch(config, spec, engine, batch, records, timer=timer, prefetched=latest_pca.result(),
                        fidelity=fidelity)


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


def _erase_listed(config: JobConfig, started: dt.datetime) -> tuple[int, erasure.ErasureReport | None]:
    """Apply the batch's erasure list (beside its manifest) to every model; (lines, report or None)."""
    erased: dict[str, Erasure] = {}
    for line in read_erasures(config.manifest, default_time=started.isoformat()):
        known = erased.get(line.image_uri)
        if known is None or is_newer(line.stamp, known.stamp):
            erased[line.image_uri] = line  # the newest erasure of a key covers the older ones
    if not erased:
        return 0, None
    erasure_id = f"{config.batch_id}-e{uuid4().hex[:6]}"  # one id per attempt: a retry never collides
    done = erasure.erase_images(config.lake, sorted(erased), catalog=config.catalog, erasure_id=erasure_id,
                                stamps={u: e.stamp for u, e in erased.items()},
                                reasons={u: e.reason for u, e in erased.items()})
    return len(erased), done


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
    """Commit a featurized batch to the lake (module doc steps 1-4, then supersede and the erasure list); returns
    the batch report. Needs no Spark: ``batch`` may come from :func:`featurize_batch` or be built by a test.

    First the liveness check (:mod:`spark_jobs.liveness`): the versions of the batch that are no longer live
    (erased, or superseded by a newer version already in ``features``) are dropped from the commit and from the
    PCA, and reported, so a re-run of an old batch or a late job run never
    resurrects an erased photo nor reverts an overwrite. Stale images are in neither ``features`` nor
    ``rejects``; the report's ``stale`` gives ``{"images": n, "by_reason": {"erased"|"superseded": n}}``.

    Args:
        spec: the model (only its ``model_id``, ``precision`` and ``fallback_reason`` are used). engine: the
            inference engine that ran (reported). records: the parsed manifest (:func:`parse_manifest`).
        timer: stage timings to add to (the featurize pass's). prefetched: the model's latest PCA version if
            loaded already (:func:`spark_jobs.pca.prefetch_latest`). fidelity: the int8 fidelity gate's figures
            (:func:`spark_jobs.quantization.fidelity_gate`), reported; None for the other precisions.

    Raises:
        storage.ObjectExistsError, pyiceberg CommitFailedException (concurrent commits), ValueError (bad erasure
        list line).
    """
    timer = timer or _Timer()
    started = dt.datetime.now(dt.UTC)
    lake = tables.Lake.at(config.lake, config.catalog)
    arrived = arrivals(records)
    ids = {"batch_id": config.batch_id, "model_id": spec.model_id}
    with timer.stage("liveness"):  # versions erased or superseded since the batch was sealed are not written
        uris = [*batch.features.column("image_uri").to_pylist(), *batch.rejects.column("image_uri").to_pylist()]
        unknown = Arrival(None, None)
        stale = liveness.stale_versions(lake, {u: arrived.get(u, unknown).stamp for u in uris})
        batch = drop_stale(batch, stale)
    featurized, reasons = batch.features.num_rows, batch.rejected_by_reason
    with timer.stage("pca_fit"):
        erasure.complete_pending(lake, config.lake, spec.model_id)  # an erasure killed mid-way rolls forward first
        dim = batch.stats.dim
        replaced = rows_statistics(lake, spec.model_id, dim, batch_id=config.batch_id)  # a re-run's old rows
        planned = plan_version(config.lake, spec.model_id, config.batch_id, batch.stats, config.pca_k,
                               replaced=replaced, prefetched=prefetched,
                               landed=landed_in_features(lake, spec.model_id),
                               refresh=lambda: rows_statistics(lake, spec.model_id, dim, exclude_batch=config.batch_id))
    committed_at = dt.datetime.now(dt.UTC)
    with timer.stage("write_rejects"):
        tables.replace_batch_rows(lake, tables.REJECTS, reject_rows(batch, **ids, arrivals=arrived), **ids)
    with timer.stage("pca_commit"):
        commit_version(config.lake, planned, land_now=False)
    with timer.stage("write_features"):
        rows = feature_rows(batch, planned, batch_id=config.batch_id, committed_at=committed_at, arrivals=arrived)
        tables.replace_batch_rows(lake, tables.FEATURES, rows, **ids,
                                  summary={"fruits.pca_version": str(planned.version)})
        land(config.lake, spec.model_id, planned.version)
    with timer.stage("supersede"):  # an overwritten photo keeps one row, its newest content (erasure.supersede)
        uris = batch.features.column("image_uri").to_pylist()  # a newest version rejected leaves no older row
        committed = [*uris, *batch.rejects.column("image_uri").to_pylist()]
        superseded = erasure.supersede(lake, config.lake, spec.model_id, committed, keep_batch=config.batch_id)
    with timer.stage("near_duplicates"):  # the batch's pairs, one commit (spark_jobs.near_duplicates module doc)
        n_pairs = near_duplicates.record_batch_pairs(
            lake, **ids, uris=uris, vectors=near_duplicates.vectors_of(batch.features.column("features")),
            mean=planned.mean, min_similarity=config.near_duplicate_similarity)
    with timer.stage("erase"):  # images removed from the bucket since: their rows leave every model, PCA downdated
        late = _erase_late(config, lake, {u: arrived.get(u, unknown).stamp for u in committed})
        requested, done = _erase_listed(config, started)
    ratio = planned.fit.explained_variance_ratio
    featurize_seconds = timer.seconds.get("featurize", 0.0)
    report: dict[str, Any] = {
        "batch_id": config.batch_id,
        "model_id": spec.model_id,
        "weights": config.weights,
        "weights_fallback": spec.fallback_reason,
        "precision": spec.precision,
        "engine": engine,
        "fidelity": fidelity,  # int8: quantization.fidelity_gate figures; None otherwise
        "task": batch.task,
        "catalog": lake.catalog,
        "counts": {"listed": batch.listed, "featurized": featurized, "rejected": sum(reasons.values())},
        "rejected_by_reason": reasons,
        "stale": {"images": len(stale), "by_reason": dict(sorted(Counter(stale.values()).items()))},
        "seconds": timer.seconds,
        "images_per_second": round(featurized / max(featurize_seconds, 1e-9), 3),
        "pca_version": planned.version,
        "pca_k": config.pca_k,
        "pca_k_effective": planned.fit.k_effective,
        "n_total": planned.state.n,
        "explained_variance_ratio": [float(v) for v in ratio],
        "explained_variance_k": float(ratio.sum()),
        "committed_at": committed_at.isoformat(timespec="seconds"),
        "time_to_feature_seconds": time_to_feature((arrived[u].event_time for u in uris if u in arrived), committed_at),
        "superseded": {"rows": superseded.rows if superseded else 0,
                       "pca_version": superseded.pca_version if superseded else None},
        "near_duplicates": {"pairs": n_pairs, "min_similarity": config.near_duplicate_similarity},
        "erased": {"requested": requested, "rows": done.rows if done else 0,
                   "pca_versions": {m.model_id: m.pca_version for m in done.models} if done else {},
                   "late": late},
    }
    tables.replace_batch_rows(lake, tables.BATCHES, batch_row(report, committed_at), **ids)
    lake_io.write_report(config.lake, report)
    return report
