"""Project feature vectors onto a PCA version: ``pca = components @ (features - mean)`` (k float32 per row)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.pca.versions import PcaVersion


def project_vectors(features: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``(features - mean) @ components.T`` in float64, returned as float32.

    Args:
        features: (n, d) any float dtype. mean: (d,) float64. components: (k, d) float64.

    Returns:
        (n, k) float32 PCA coordinates.
    """
    x = np.asarray(features, dtype=np.float64)
    return ((x - mean) @ components.T).astype(np.float32)


def _project_partition(broadcast, column: str):
    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        mean, components = broadcast.value
        for frame in frames:
            if len(frame):
                frame["pca"] = list(project_vectors(np.stack(frame[column].to_numpy()), mean, components))
            else:
                frame["pca"] = pd.Series([], dtype=object)
            yield frame

    return run


def project(features: DataFrame, version: PcaVersion, column: str = "features") -> DataFrame:
    """Add/replace ``pca`` (array<float>, length k; zeros past ``k_effective``) and ``pca_version`` (int).

    ``mean`` (d,) and ``components`` (k, d) float64 are broadcast once; rows stay on the executors.
    """
    spark = features.sparkSession
    broadcast = spark.sparkContext.broadcast((version.mean, version.fit.components))
    base = features.drop("pca", "pca_version")
    schema = T.StructType([*base.schema.fields, T.StructField("pca", T.ArrayType(T.FloatType(), False), False)])
    projected = base.mapInPandas(_project_partition(broadcast, column), schema)
    return projected.withColumn("pca_version", F.lit(version.version).cast("int"))
