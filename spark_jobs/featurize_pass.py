"""The executor side of a batch: manifest rows -> feature vectors, rejects and the batch's sufficient statistics.

This is the seam between the distributed work (decode, ResNet50, per-partition PCA statistics: Spark) and the
driver's commit (PCA version, projection, table writes). A batch is at most ``BATCH_MAX_IMAGES`` images, so
its feature vectors come back to the driver as one Arrow table: at 1,000 images that is about 8.2 MB
(1,000 x 2,048 float32) plus the metadata columns; the driver never holds pixels.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from spark_jobs.aggregate import batch_statistics
from spark_jobs.images import load_images
from spark_jobs.models import FEATURE_DIM, ModelSpec, featurize
from spark_jobs.stats import SufficientStats

FEATURES_ARROW_SCHEMA = pa.schema(
    [
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("content_sha256", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("features", pa.list_(pa.field("element", pa.float32(), nullable=False))),
    ]
)
REJECTS_ARROW_SCHEMA = pa.schema([pa.field("image_uri", pa.string(), nullable=False), pa.field("reason", pa.string())])


@dataclass(frozen=True)
class BatchFeatures:
    """What the executors computed for one batch, held on the driver.

    Attributes:
        features: one row per decoded image, :data:`FEATURES_ARROW_SCHEMA` (``features``: 2,048 float32).
        rejects: one row per image that could not be used, :data:`REJECTS_ARROW_SCHEMA` (reason as in
            :mod:`spark_jobs.images`).
        stats: exact ``(n, mean, M2)`` of ``features`` (float64), merged from per-partition statistics.
        listed: distinct images in the manifest (= featurized + rejected).
        seconds: wall seconds of this pass's stages (names as in the batch report's ``seconds``).
    """

    features: pa.Table
    rejects: pa.Table
    stats: SufficientStats
    listed: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Reject counts by reason, sorted by reason."""
        return dict(sorted(Counter(self.rejects.column("reason").to_pylist()).items()))


def _to_arrow(df: DataFrame, schema: pa.Schema) -> pa.Table:
    pandas = df.toPandas()
    return pa.Table.from_pandas(pandas, schema=schema, preserve_index=False)


def featurize_batch(
    manifest: DataFrame, spec: ModelSpec, *, image_size: int, infer_batch_size: int, threads: int = 1
) -> BatchFeatures:
    """Decode, featurize and summarise a batch's images on the executors; results collected on the driver.

    Args:
        manifest: rows of :data:`spark_jobs.manifest.MANIFEST_SCHEMA` (one per distinct image).
        spec: the resolved model (same on every worker).
        image_size: model input side in pixels. infer_batch_size: images per inference call.
        threads: intra-op threads per task (``spark.task.cpus``).

    Raises:
        Spark / TensorFlow errors. Bad images never raise: they become ``rejects`` rows.
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    decoded = load_images(manifest, image_size).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rejects = _to_arrow(decoded.where("reason IS NOT NULL").select("image_uri", "reason"), REJECTS_ARROW_SCHEMA)
        lap("read_decode")
        features_df = featurize(decoded.where("reason IS NULL"), spec, infer_batch_size, threads)
        features_df = features_df.persist(StorageLevel.MEMORY_AND_DISK)
        features = _to_arrow(features_df, FEATURES_ARROW_SCHEMA)
        lap("featurize")
        stats = batch_statistics(features_df, FEATURE_DIM)
        lap("pca_statistics")
        features_df.unpersist()
    finally:
        decoded.unpersist()
    return BatchFeatures(features, rejects, stats, features.num_rows + rejects.num_rows, seconds)
