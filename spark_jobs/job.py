"""One batch, end to end: manifest -> images -> features -> exact PCA update -> lake partitions -> report.

Order matters for safety: the new PCA version is planned in memory, the batch's ``features``/``rejects``
partitions are written, then the version is committed (its JSON last) and finally the report. A job that dies
anywhere before the commit leaves the previous PCA state untouched; re-running the batch id replaces its
partitions and its contribution to the state (see :mod:`spark_jobs.pca`).
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_jobs import lake as lake_io
from spark_jobs.aggregate import batch_statistics
from spark_jobs.images import load_images
from spark_jobs.manifest import read_manifest
from spark_jobs.models import FEATURE_DIM, ModelSpec, featurize, resolve_weights
from spark_jobs.pca import commit_version, plan_version
from spark_jobs.projection import project

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"
# ingested_at as a standard Parquet TIMESTAMP(MICROS, UTC) instead of Spark's legacy INT96 default.
TIMESTAMP_CONF = "spark.sql.parquet.outputTimestampType"


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
    previous = {name: spark.conf.get(name) for name in (ARROW_BATCH_CONF, TIMESTAMP_CONF)}
    spark.conf.set(ARROW_BATCH_CONF, str(config.infer_batch_size))  # bounds pixels held per Arrow frame
    spark.conf.set(TIMESTAMP_CONF, "TIMESTAMP_MICROS")
    try:
        with timer.stage("read_manifest"):
            manifest = read_manifest(spark, config.manifest)
            listed = manifest.count()
        with timer.stage("read_decode"):
            decoded = load_images(manifest, config.image_size).persist(StorageLevel.MEMORY_AND_DISK)
            counts = decoded.where("reason IS NOT NULL").groupBy("reason").count().collect()
            reasons = Counter({row["reason"]: row["count"] for row in counts})
        with timer.stage("featurize"):
            features = featurize(decoded.where("reason IS NULL"), spec, config.infer_batch_size, threads)
            features = features.persist(StorageLevel.MEMORY_AND_DISK)
            featurized = features.count()
        with timer.stage("pca_statistics"):
            stats = batch_statistics(features, FEATURE_DIM)
        with timer.stage("pca_fit"):
            planned = plan_version(config.lake, spec.model_id, config.batch_id, stats, config.pca_k)
        with timer.stage("write_features"):
            rows = project(features, planned).select(
                "image_uri", "label", "content_sha256", "width", "height", "features", "pca", "pca_version",
                F.lit(spec.model_id).alias("model_id"), F.current_timestamp().alias("ingested_at"),
            )
            lake_io.write_partition(rows, config.lake, "features", config.batch_id, empty=featurized == 0)
        with timer.stage("write_rejects"):
            rejects = decoded.where("reason IS NOT NULL").select("image_uri", "reason")
            lake_io.write_partition(rejects, config.lake, "rejects", config.batch_id, empty=not reasons)
        with timer.stage("pca_commit"):
            commit_version(config.lake, planned, stats)
        decoded.unpersist()
        features.unpersist()
    finally:
        for name, value in previous.items():
            spark.conf.set(name, value)
    ratio = planned.fit.explained_variance_ratio
    report: dict[str, Any] = {
        "batch_id": config.batch_id,
        "model_id": spec.model_id,
        "weights": config.weights,
        "weights_fallback": spec.fallback_reason,
        "precision": spec.precision,
        "counts": {"listed": listed, "featurized": featurized, "rejected": sum(reasons.values())},
        "rejected_by_reason": dict(sorted(reasons.items())),
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
