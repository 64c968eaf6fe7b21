"""Sufficient statistics of feature rows read back from the ``features`` table (driver side, PyIceberg, streamed).

The PCA state never stores a batch's own statistics: they are those of its rows in ``features`` (float32 as
stored, widened to float64, as the executors computed them), read here when a re-run or an erasure replaces them,
and for an exact rebuild of a model's state (:mod:`spark_jobs.pca.versions` "Cancellation").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, Not, NotEqualTo

from spark_jobs.lakehouse import tables
from spark_jobs.pca.stats import SufficientStats, merge

CHUNK_ROWS = 1024  # rows stacked per two-pass statistics call: driver memory CHUNK_ROWS x d float64


def _by_batch(batch_id: str | Sequence[str]) -> BooleanExpression:
    ids = tables.batch_ids_of(batch_id)
    return EqualTo("batch_id", ids[0]) if len(ids) == 1 else In("batch_id", set(ids))


def rows_statistics(lake: tables.Lake, model_id: str, dim: int, *, batch_id: str | Sequence[str] | None = None,
                    exclude_batch: str | Sequence[str] | None = None) -> SufficientStats:
    """Exact ``(n, mean, M2)`` (float64) of the ``features`` vectors of ``model_id``'s current rows.

    Args:
        dim: feature dimension d (the result's when no row matches).
        batch_id: only this batch's rows, or those of these batches (a job run's): O(rows of the batches), Iceberg
            prunes the other data files by their ``batch_id`` bounds. exclude_batch: every row except this batch's
            (or these batches'): an exact rebuild.

    Raises:
        ValueError: a stored vector does not have ``dim`` values.
    """
    if not lake.exists(tables.FEATURES):
        return SufficientStats.empty(dim)
    where: BooleanExpression = EqualTo("model_id", model_id)
    if batch_id is not None:
        where = And(where, _by_batch(batch_id))
    if exclude_batch is not None:
        where = And(where, NotEqualTo("batch_id", exclude_batch) if isinstance(exclude_batch, str)
                    else Not(_by_batch(exclude_batch)))
    table = lake.table(tables.FEATURES, create=False)
    total = SufficientStats.empty(dim)
    for chunk in table.scan(row_filter=where, selected_fields=("features",)).to_arrow_batch_reader():
        for start in range(0, chunk.num_rows, CHUNK_ROWS):
            column = chunk.column(0).slice(start, CHUNK_ROWS)
            if len(column) == 0:
                continue
            x = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(column), -1)
            if x.shape[1] != dim:
                raise ValueError(f"{model_id}: stored feature vectors have {x.shape[1]} values, expected {dim}")
            total = merge(total, SufficientStats.from_array(x.astype(np.float64)), overwrite_a=total.n > 0)
    return total
