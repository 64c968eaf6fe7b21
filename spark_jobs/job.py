"""One batch run, end to end: manifest -> images -> features -> exact PCA update -> Iceberg commits -> report.

The executors decode, featurize and summarise the batch (:func:`spark_jobs.featurize_pass.featurize_batch`);
the driver then holds the batch's feature vectors (Arrow: 1,000 images x 2,048 float32 = 8.2 MB, plus k PCA
floats and metadata per row; a batch is at most ``BATCH_MAX_IMAGES``), plans the PCA version, projects, and
commits with PyIceberg (:mod:`spark_jobs.tables`). Spark writes nothing to the lake.

Commit order (each step idempotent; a job killed between any two steps and re-run ends with exactly one copy of
the batch's rows and a PCA state equal to a batch PCA over the ``features`` rows of the model):

1. ``rejects``: the rows of (batch, model) replaced in one Iceberg transaction;
2. the PCA version: fit, state and finally its JSON marker, never overwritten (:mod:`spark_jobs.pca`; re-running a
   batch id downdates the statistics of its rows read back from ``features`` and merges the new ones);
3. ``features``: the rows of (batch, model) replaced in one Iceberg transaction, each row carrying the PCA
   version it was projected on, also named in the snapshot summary (``fruits.pca_version``); then the version
   lands (``pca/<model_id>/LATEST.json``; a version killed before its ``features`` commit is dropped by the re-run);
4. ``batches``: the batch run's row, then the JSON report ``batches/<batch_id>.json``.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import numpy as np
import pyarrow as pa
from pyspark.sql import SparkSession

from spark_jobs import erasure, storage, tables
from spark_jobs import lake as lake_io
from spark_jobs.engines import check_engine, default_engine
from spark_jobs.featurize_pass import BatchFeatures, featurize_batch
from spark_jobs.manifest import Arrival, arrivals, manifest_frame, parse_manifest, read_erasures
from spark_jobs.models import ModelSpec, resolve_weights
from spark_jobs.pca import PcaVersion, commit_version, land, landed_in_features, plan_version, prefetch_latest
from spark_jobs.projection import project_vectors
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
    ``pca_version``, ``model_id``, ``ingested_at`` (= ``committed_at``, UTC), ``batch_id``, and the S3
    ``event_time`` / ``sequencer`` of each image from ``arrivals`` (null when unknown)."""
    table = batch.features
    known = [(arrivals or {}).get(uri) for uri in table.column("image_uri").to_pylist()]
    n = table.num_rows
    if n:
        x = np.stack(table.column("features").to_numpy(zero_copy_only=False))
        pca = project_vectors(x, planned.mean, planned.fit.components)
    else:
        pca = np.zeros((0, planned.fit.k), dtype=np.float32)
    return (
        table.append_column("pca", pa.array(list(pca), type=pa.list_(pa.float32())))
        .append_column("pca_version", pa.array([planned.version] * n, type=pa.int32()))
        .append_column("model_id", pa.array([planned.model_id] * n, type=pa.string()))
        .append_column("ingested_at", pa.array([committed_at] * n, type=pa.timestamp("us", tz="UTC")))
        .append_column("batch_id", pa.array([batch_id] * n, type=pa.string()))
        .append_column("event_time", pa.array([a and a.event_time for a in known], type=pa.timestamp("us", tz="UTC")))
        .append_column("sequencer", pa.array([a and a.sequencer for a in known], type=pa.string()))
    )


def reject_rows(batch: BatchFeatures, *, batch_id: str, model_id: str) -> pa.Table:
    """The ``rejects`` rows of a batch run (``image_uri``, ``reason``, ``batch_id``, ``model_id``)."""
    n = batch.rejects.num_rows
    return batch.rejects.append_column("batch_id", pa.array([batch_id] * n, type=pa.string())).append_column(
        "model_id", pa.array([model_id] * n, type=pa.string())
    )


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
    """
    timer = _Timer()
    lake = tables.Lake.at(config.lake, config.catalog)
    with timer.stage("resolve_weights"):
        spec = spec or resolve_weights(config.weights, config.image_size, config.precision)
    engine = check_engine(config.engine or default_engine(precision=spec.precision), spec.precision)
    threads = int(spark.conf.get("spark.task.cpus", "1"))  # cores Spark reserves for each task
    previous = spark.conf.get(ARROW_BATCH_CONF, None)
    spark.conf.set(ARROW_BATCH_CONF, str(config.infer_batch_size))  # bounds pixels held per Arrow frame
    latest_pca = prefetch_latest(config.lake, spec.model_id)  # read while the executors featurize
    try:
        with timer.stage("read_manifest"):
            records = parse_manifest(storage.read_bytes(config.manifest))
            manifest, arrived = manifest_frame(spark, records), arrivals(records)
        batch = featurize_batch(manifest, spec, image_size=config.image_size,
                                infer_batch_size=config.infer_batch_size, threads=threads, engine=engine)
    finally:
        if previous is None:
            spark.conf.unset(ARROW_BATCH_CONF)
        else:
            spark.conf.set(ARROW_BATCH_CONF, previous)
    timer.seconds.update(batch.seconds)
    featurized, reasons = batch.features.num_rows, batch.rejected_by_reason
    ids = {"batch_id": config.batch_id, "model_id": spec.model_id}
    with timer.stage("pca_fit"):
        erasure.complete_pending(lake, config.lake, spec.model_id)  # an erasure killed mid-way rolls forward first
        dim = batch.stats.dim
        replaced = rows_statistics(lake, spec.model_id, dim, batch_id=config.batch_id)  # a re-run's old rows
        planned = plan_version(config.lake, spec.model_id, config.batch_id, batch.stats, config.pca_k,
                               replaced=replaced, prefetched=latest_pca.result(),
                               landed=landed_in_features(lake, spec.model_id),
                               refresh=lambda: rows_statistics(lake, spec.model_id, dim, exclude_batch=config.batch_id))
    committed_at = dt.datetime.now(dt.UTC)
    with timer.stage("write_rejects"):
        tables.replace_batch_rows(lake, tables.REJECTS, reject_rows(batch, **ids), **ids)
    with timer.stage("pca_commit"):
        commit_version(config.lake, planned, land_now=False)
    with timer.stage("write_features"):
        rows = feature_rows(batch, planned, batch_id=config.batch_id, committed_at=committed_at, arrivals=arrived)
        tables.replace_batch_rows(lake, tables.FEATURES, rows, **ids,
                                  summary={"fruits.pca_version": str(planned.version)})
        land(config.lake, spec.model_id, planned.version)
    with timer.stage("supersede"):  # an overwritten photo keeps one row, its newest content (erasure.supersede)
        uris = batch.features.column("image_uri").to_pylist()
        superseded = erasure.supersede(lake, config.lake, spec.model_id, uris, keep_batch=config.batch_id)
    with timer.stage("erase"):  # images removed from the bucket since: their rows leave every model, PCA downdated
        erased = read_erasures(config.manifest)
        done = None
        if erased:
            erasure_id = f"{config.batch_id}-e{uuid4().hex[:6]}"  # one id per attempt: a retry never collides
            done = erasure.erase_images(config.lake, erased, catalog=config.catalog, erasure_id=erasure_id)
    ratio = planned.fit.explained_variance_ratio
    report: dict[str, Any] = {
        "batch_id": config.batch_id,
        "model_id": spec.model_id,
        "weights": config.weights,
        "weights_fallback": spec.fallback_reason,
        "precision": spec.precision,
        "engine": engine,
        "task": batch.task,
        "catalog": lake.catalog,
        "counts": {"listed": batch.listed, "featurized": featurized, "rejected": sum(reasons.values())},
        "rejected_by_reason": reasons,
        "seconds": timer.seconds,
        "images_per_second": round(featurized / max(timer.seconds["featurize"], 1e-9), 3),
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
        "erased": {"requested": len(erased), "rows": done.rows if done else 0,
                   "pca_versions": {m.model_id: m.pca_version for m in done.models} if done else {}},
    }
    tables.replace_batch_rows(lake, tables.BATCHES, batch_row(report, committed_at), **ids)
    lake_io.write_report(config.lake, report)
    return report
