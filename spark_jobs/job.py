"""One batch, end to end: manifest -> images -> features -> exact PCA update -> lake partitions -> report.

The executors decode, featurize and summarise the batch (:func:`spark_jobs.featurize_pass.featurize_batch`);
the driver then holds the batch's feature vectors (Arrow, about 8 MB per 1,000 images), plans the PCA version,
projects and writes.

Order matters for safety: the new PCA version is planned in memory, the batch's ``features``/``rejects``
partitions are written, then the version is committed (its JSON last) and finally the report. A job that dies
anywhere before the commit leaves the previous PCA state untouched; re-running the batch id replaces its
partitions and its contribution to the state (see :mod:`spark_jobs.pca`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import lake as lake_io
from spark_jobs.featurize_pass import BatchFeatures, featurize_batch
from spark_jobs.manifest import read_manifest
from spark_jobs.models import ModelSpec, resolve_weights
from spark_jobs.pca import PcaVersion, commit_version, plan_version
from spark_jobs.projection import project_vectors

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"
# ingested_at as a standard Parquet TIMESTAMP(MICROS, UTC) instead of Spark's legacy INT96 default.
TIMESTAMP_CONF = "spark.sql.parquet.outputTimestampType"
# pandas -> Spark through Arrow: the driver's feature vectors (numpy arrays) become array<float> columns.
ARROW_CONF = "spark.sql.execution.arrow.pyspark.enabled"


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


def projected_rows(batch: BatchFeatures, planned: PcaVersion) -> pa.Table:
    """The batch's feature rows with ``pca`` (k float32) and ``pca_version`` (int32) of ``planned`` added."""
    table = batch.features
    if table.num_rows:
        x = np.stack(table.column("features").to_numpy(zero_copy_only=False))
        pca = project_vectors(x, planned.mean, planned.fit.components)
    else:
        pca = np.zeros((0, planned.fit.k), dtype=np.float32)
    pca_type = pa.list_(pa.field("element", pa.float32(), nullable=False))
    table = table.append_column("pca", pa.array(list(pca), type=pca_type))
    return table.append_column("pca_version", pa.array([planned.version] * table.num_rows, type=pa.int32()))


def _spark_frame(spark: SparkSession, table: pa.Table) -> DataFrame:
    return spark.createDataFrame(table.to_pandas())


def run_batch(spark: SparkSession, config: JobConfig, spec: ModelSpec | None = None) -> dict[str, Any]:
    """Featurize the manifest's images and update the lake; returns the batch report (also written).

    Args:
        spec: an already resolved model (default: ``resolve_weights(config.weights, config.image_size,
            config.precision)``).

    Raises:
        spark_jobs.manifest.ManifestError, FileNotFoundError (manifest), storage.ObjectExistsError (a
        concurrent job committed the same PCA version), Spark/TensorFlow errors. Bad images never raise.
    """
    timer = _Timer()
    with timer.stage("resolve_weights"):
        spec = spec or resolve_weights(config.weights, config.image_size, config.precision)
    threads = int(spark.conf.get("spark.task.cpus", "1"))  # cores Spark reserves for each task
    previous = {name: spark.conf.get(name, None) for name in (ARROW_BATCH_CONF, TIMESTAMP_CONF, ARROW_CONF)}
    spark.conf.set(ARROW_BATCH_CONF, str(config.infer_batch_size))  # bounds pixels held per Arrow frame
    spark.conf.set(TIMESTAMP_CONF, "TIMESTAMP_MICROS")
    spark.conf.set(ARROW_CONF, "true")
    try:
        with timer.stage("read_manifest"):
            manifest = read_manifest(spark, config.manifest)
        batch = featurize_batch(manifest, spec, image_size=config.image_size,
                                infer_batch_size=config.infer_batch_size, threads=threads)
        timer.seconds.update(batch.seconds)
        featurized, reasons = batch.features.num_rows, batch.rejected_by_reason
        with timer.stage("pca_fit"):
            planned = plan_version(config.lake, spec.model_id, config.batch_id, batch.stats, config.pca_k)
        with timer.stage("write_features"):
            rows = _spark_frame(spark, projected_rows(batch, planned)).select(
                "image_uri", "label", "content_sha256", "width", "height", "features", "pca", "pca_version",
                F.lit(spec.model_id).alias("model_id"), F.current_timestamp().alias("ingested_at"),
            ) if featurized else None
            lake_io.write_partition(spark, rows, config.lake, "features", config.batch_id)
        with timer.stage("write_rejects"):
            rejects = _spark_frame(spark, batch.rejects) if reasons else None
            lake_io.write_partition(spark, rejects, config.lake, "rejects", config.batch_id)
        with timer.stage("pca_commit"):
            commit_version(config.lake, planned, batch.stats)
    finally:
        for name, value in previous.items():
            if value is None:
                spark.conf.unset(name)
            else:
                spark.conf.set(name, value)
    ratio = planned.fit.explained_variance_ratio
    report: dict[str, Any] = {
        "batch_id": config.batch_id,
        "model_id": spec.model_id,
        "weights": config.weights,
        "weights_fallback": spec.fallback_reason,
        "precision": spec.precision,
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
    }
    lake_io.write_report(config.lake, report)
    return report
