"""Batch sufficient statistics computed on the executors and combined with a tree reduction.

Each partition turns its feature vectors into ``(n, mean, M2)`` (:meth:`SufficientStats.from_array`),
serialised as one small row; ``RDD.treeReduce`` then merges them pairwise (Chan, Golub & LeVeque 1979,
:func:`spark_jobs.pca.stats.merge`) on the executors, so the driver only ever holds O(d^2) floats, never features.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from spark_jobs.pca.stats import SufficientStats, merge

_STATS_SCHEMA = T.StructType([T.StructField("stats", T.BinaryType(), False)])


# Rows stacked before one two-pass statistics call (bounds executor memory to CHUNK_ROWS x d float64).
CHUNK_ROWS = 1024


def _partition_stats(dim: int, column: str, chunk_rows: int):
    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        total = SufficientStats.empty(dim)
        buffered: list[np.ndarray] = []
        for frame in itertools.chain(frames, [None]):  # None flushes the last chunk
            if frame is not None and len(frame):
                buffered.extend(frame[column].to_numpy())
            if buffered and (frame is None or len(buffered) >= chunk_rows):
                # float32 as stored in Parquet, widened to float64: the state matches the stored features.
                part = SufficientStats.from_array(np.stack(buffered).astype(np.float64))
                total = merge(total, part, overwrite_a=True)  # total is this task's own
                buffered = []
        yield pd.DataFrame({"stats": [total.to_bytes()]})

    return run


def batch_statistics(
    features: DataFrame, dim: int, column: str = "features", depth: int = 2, chunk_rows: int = CHUNK_ROWS
) -> SufficientStats:
    """Exact ``(n, mean, M2)`` of the ``column`` vectors (array<float>, length ``dim``) of a DataFrame.

    Each partition stacks up to ``chunk_rows`` vectors at a time and merges the chunks' statistics.

    Returns ``SufficientStats`` (float64); n = 0 for an empty DataFrame.
    """
    per_partition = features.select(column).mapInPandas(_partition_stats(dim, column, chunk_rows), _STATS_SCHEMA)
    stats = per_partition.rdd.map(lambda row: SufficientStats.from_bytes(row.stats))
    if stats.getNumPartitions() == 0:
        return SufficientStats.empty(dim)
    return stats.treeReduce(merge, depth=depth)
