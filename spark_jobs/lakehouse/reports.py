"""Lake layout (docs/contracts.md "Lake layout"): readers of the Iceberg tables, batch reports, projected reader.

::

    <lake>/features/ rejects/ batches/         Iceberg tables (data/ + metadata/), see spark_jobs.lakehouse.tables
    <lake>/catalog.db                          the embedded default catalog (SQLite); Glue on AWS
    <lake>/batches/<id>.json                   batch report (also a row of the batches table)
    <lake>/pca/<model_id>/...                  PCA state and versions (spark_jobs.pca.versions)

The Spark readers here turn an Iceberg scan (PyIceberg, Arrow) into a DataFrame: no Iceberg jar is needed.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark_jobs import storage
from spark_jobs.lakehouse import tables
from spark_jobs.pca.projection import project_vectors
from spark_jobs.pca.versions import load_version

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
        T.StructField("model_id", T.StringType(), False),
        T.StructField("ingested_at", T.TimestampType(), True),
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("event_time", T.TimestampType(), True),
        T.StructField("sequencer", T.StringType(), True),
        T.StructField("version_id", T.StringType(), True),
        T.StructField("last_modified", T.TimestampType(), True),
    ]
)
REJECTS_LAKE_SCHEMA = T.StructType(
    [
        T.StructField("image_uri", T.StringType(), False),
        T.StructField("reason", T.StringType(), True),
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("model_id", T.StringType(), False),
    ]
)


def report_uri(lake: str, batch_id: str) -> str:
    """``<lake>/batches/<batch_id>.json``."""
    return storage.join(lake, "batches", f"{batch_id}.json")


def write_report(lake: str, report: dict[str, Any]) -> None:
    """Write ``batches/<batch_id>.json`` (replaced on a re-run of the batch)."""
    storage.write_bytes(report_uri(lake, report["batch_id"]), json.dumps(report, indent=1).encode())


def read_report(lake: str, batch_id: str) -> dict[str, Any]:
    """Read a batch report. Raises FileNotFoundError if the batch never finished."""
    return json.loads(storage.read_bytes(report_uri(lake, batch_id)))


def _frame(spark: SparkSession, rows: pa.Table, schema: T.StructType) -> DataFrame:
    previous = spark.conf.get("spark.sql.execution.arrow.pyspark.enabled", None)
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")  # numpy arrays -> array<float>
    try:
        return spark.createDataFrame(rows.select(schema.fieldNames()).to_pandas(), schema)
    finally:
        if previous is None:
            spark.conf.unset("spark.sql.execution.arrow.pyspark.enabled")
        else:
            spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", previous)


def read_features(
    spark: SparkSession, lake: str, batch_ids: list[str] | None = None, *, catalog: str | None = None,
    model_id: str | None = None,
) -> DataFrame:
    """The current ``features`` rows (``pca`` from the version current when each batch ran) as a DataFrame."""
    rows = tables.scan(tables.Lake.at(lake, catalog), tables.FEATURES, model_id=model_id, batch_ids=batch_ids)
    return _frame(spark, rows, FEATURES_LAKE_SCHEMA)


def read_rejects(
    spark: SparkSession, lake: str, batch_ids: list[str] | None = None, *, catalog: str | None = None
) -> DataFrame:
    """The current ``rejects`` rows (``image_uri``, ``reason``, ``batch_id``, ``model_id``) as a DataFrame."""
    rows = tables.scan(tables.Lake.at(lake, catalog), tables.REJECTS, batch_ids=batch_ids)
    return _frame(spark, rows, REJECTS_LAKE_SCHEMA)


def projected_table(
    lake: str, model_id: str, batch_ids: list[str] | None = None, *, catalog: str | None = None
) -> pa.Table:
    """One model's ``features`` rows with ``pca``/``pca_version`` recomputed on its latest PCA version (Arrow).

    Older rows carry the coordinates of the version current when their batch ran; this re-projects the
    stored raw ``features`` (2048 float32) exactly as the job does (:func:`spark_jobs.pca.projection.project_vectors`).

    Raises:
        LookupError: the model has rows but no committed PCA version.
    """
    rows = tables.scan(tables.Lake.at(lake, catalog), tables.FEATURES, model_id=model_id, batch_ids=batch_ids)
    if rows.num_rows == 0:
        return rows
    version = load_version(lake, model_id)
    if version is None:
        raise LookupError(f"no PCA version for model_id {model_id!r} under {lake}")
    x = np.stack(rows.column("features").to_numpy(zero_copy_only=False))
    pca = project_vectors(x, version.mean, version.fit.components)
    index, field = rows.schema.get_field_index, rows.schema.field
    rows = rows.set_column(index("pca"), field("pca"), pa.array(list(pca), type=field("pca").type))
    versions = pa.array([version.version] * rows.num_rows, type=pa.int32())
    return rows.set_column(index("pca_version"), field("pca_version"), versions)


def read_projected(
    spark: SparkSession, lake: str, batch_ids: list[str] | None = None, model_id: str | None = None, *,
    catalog: str | None = None,
) -> DataFrame:
    """Rows of any set of batches with ``pca``/``pca_version`` on each model's latest PCA version (DataFrame).

    Args:
        batch_ids: batches to read (default all). model_id: one feature space (default: every model present,
            each on its own latest version).

    Raises:
        LookupError: a model_id present in the rows has no committed PCA version.
    """
    model_ids = [model_id] if model_id is not None else tables.model_ids(tables.Lake.at(lake, catalog))
    parts = [projected_table(lake, mid, batch_ids, catalog=catalog) for mid in model_ids]
    rows = pa.concat_tables(parts) if parts else tables.FEATURES_SCHEMA.as_arrow().empty_table()
    return _frame(spark, rows, FEATURES_LAKE_SCHEMA)
