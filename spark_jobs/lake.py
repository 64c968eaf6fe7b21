"""Lake layout (docs/contracts.md "Lake layout"), partition writes, batch reports and the projected reader.

::

    <lake>/features/batch_id=<id>/*.parquet   one row per featurized image (FEATURES_LAKE_SCHEMA)
    <lake>/rejects/batch_id=<id>/*.parquet    image_uri, reason
    <lake>/batches/<id>.json                  batch report
    <lake>/pca/<model_id>/...                 PCA state and versions (spark_jobs.pca)
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs import storage
from spark_jobs.pca import load_version
from spark_jobs.projection import project

FEATURES_LAKE_SCHEMA = T.StructType(
    [
        T.StructField("image_uri", T.StringType(), False),
        T.StructField("label", T.StringType(), True),
        T.StructField("content_sha256", T.StringType(), True),
        T.StructField("width", T.IntegerType(), True),
        T.StructField("height", T.IntegerType(), True),
        T.StructField("features", T.ArrayType(T.FloatType(), False), True),
        T.StructField("pca", T.ArrayType(T.FloatType(), False), True),
        T.StructField("pca_version", T.IntegerType(), True),
        T.StructField("model_id", T.StringType(), True),
        T.StructField("ingested_at", T.TimestampType(), True),
        T.StructField("batch_id", T.StringType(), True),
    ]
)
REJECTS_LAKE_SCHEMA = T.StructType(
    [
        T.StructField("image_uri", T.StringType(), False),
        T.StructField("reason", T.StringType(), True),
        T.StructField("batch_id", T.StringType(), True),
    ]
)


def table_uri(lake: str, table: str) -> str:
    """``<lake>/<table>`` (``features`` or ``rejects``)."""
    return storage.join(lake, table)


def report_uri(lake: str, batch_id: str) -> str:
    """``<lake>/batches/<batch_id>.json``."""
    return storage.join(lake, "batches", f"{batch_id}.json")


def _hadoop_delete(spark: SparkSession, uri: str) -> None:
    """Recursively delete a path through Hadoop's FileSystem (works for file:, s3: on EMR, s3a:)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if fs.exists(path):
        fs.delete(path, True)


def write_partition(spark: SparkSession, df: DataFrame | None, lake: str, table: str, batch_id: str) -> None:
    """Replace the ``batch_id=<batch_id>`` partition of a lake table with ``df`` (other partitions untouched).

    Uses Parquet with dynamic partition overwrite. ``df`` None means the batch has no rows for this table: the
    old partition (from a previous run of the batch) is deleted instead.
    """
    if df is None:
        _hadoop_delete(spark=spark, uri=storage.join(table_uri(lake, table), f"batch_id={batch_id}"))
        return
    (
        df.withColumn("batch_id", F.lit(batch_id))
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("batch_id")
        .parquet(table_uri(lake, table))
    )


def write_report(lake: str, report: dict[str, Any]) -> None:
    """Write ``batches/<batch_id>.json`` (replaced on a re-run of the batch)."""
    storage.write_bytes(report_uri(lake, report["batch_id"]), json.dumps(report, indent=1).encode())


def read_report(lake: str, batch_id: str) -> dict[str, Any]:
    """Read a batch report. Raises FileNotFoundError if the batch never finished."""
    return json.loads(storage.read_bytes(report_uri(lake, batch_id)))


def read_features(spark: SparkSession, lake: str, batch_ids: list[str] | None = None) -> DataFrame:
    """The ``features`` table as stored (``pca`` from the version current when each batch ran)."""
    df = spark.read.schema(FEATURES_LAKE_SCHEMA).parquet(table_uri(lake, "features"))
    return df.where(F.col("batch_id").isin(list(batch_ids))) if batch_ids is not None else df


def read_rejects(spark: SparkSession, lake: str, batch_ids: list[str] | None = None) -> DataFrame:
    """The ``rejects`` table (``image_uri``, ``reason``, ``batch_id``)."""
    df = spark.read.schema(REJECTS_LAKE_SCHEMA).parquet(table_uri(lake, "rejects"))
    return df.where(F.col("batch_id").isin(list(batch_ids))) if batch_ids is not None else df


def read_projected(
    spark: SparkSession, lake: str, batch_ids: list[str] | None = None, model_id: str | None = None
) -> DataFrame:
    """Rows of any set of batches with ``pca``/``pca_version`` recomputed on the latest PCA version.

    Older rows carry the coordinates of the version current when their batch ran; this re-projects the
    stored raw ``features`` (2048 float32) of each ``model_id`` onto that model_id's latest version.

    Args:
        batch_ids: batches to read (default all).
        model_id: keep only this feature space (default: every model_id present, each on its own latest version).

    Raises:
        LookupError: a model_id present in the rows has no committed PCA version.
    """
    df = read_features(spark, lake, batch_ids)
    if model_id is not None:
        model_ids = [model_id]
        df = df.where(F.col("model_id") == model_id)
    else:
        model_ids = sorted(row.model_id for row in df.select("model_id").distinct().collect())
    columns = [f.name for f in FEATURES_LAKE_SCHEMA.fields]
    parts: list[DataFrame] = []
    for mid in model_ids:
        version = load_version(lake, mid)
        if version is None:
            raise LookupError(f"no PCA version for model_id {mid!r} under {lake}")
        parts.append(project(df.where(F.col("model_id") == mid), version).select(*columns))
    if not parts:
        return df.select(*columns)
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out
