"""Batch sufficient statistics computed on the executors and combined with a tree reduction.

Each partition turns its feature vectors into ``(n, mean, M2)`` (:meth:`SufficientStats.from_array`),
serialised as one small row; ``RDD.treeReduce`` then merges them pairwise (Chan, Golub & LeVeque 1979,
:func:`spark_jobs.stats.merge`) on the executors, so the driver only ever holds O(d^2) floats, never features.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from spark_jobs.stats import SufficientStats, merge

_STATS_SCHEMA = T.StructType([T.StructField("stats", T.BinaryType(), False)])


def _partition_stats(dim: int, column: str):
    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        total = SufficientStats.empty(dim)
        for frame in frames:
            if len(frame):
                # float32 as stored in Parquet, widened to float64: the state matches the stored features.
                x = np.stack(frame[column].to_numpy()).astype(np.float64)
                total = merge(total, SufficientStats.from_array(x))
        yield pd.DataFrame({"stats": [total.to_bytes()]})

    return run


def batch_statistics(features: DataFrame, dim: int, column: str = "features", depth: int = 2) -> SufficientStats:
    """Exact ``(n, mean, M2)`` of the ``column`` vectors (array<float>, length ``dim``) of a DataFrame.

    Returns ``SufficientStats`` (float64); n = 0 for an empty DataFrame.
    """
    per_partition = features.select(column).mapInPandas(_partition_stats(dim, column), _STATS_SCHEMA)
    stats = per_partition.rdd.map(lambda row: SufficientStats.from_bytes(row.stats))
    if stats.getNumPartitions() == 0:
        return SufficientStats.empty(dim)
    return stats.treeReduce(merge, depth=depth)
