"""Fast reads of one model's ``features`` rows for the near-duplicate search and ``fruits similar`` (no Spark).

PyIceberg's ``scan().to_arrow()`` decodes the 2,048-float ``list<float>`` column and then re-projects every batch to
the table schema; on 100k rows that took 9.8 s where reading the same Parquet columns with PyArrow took 3.5 s
(bench/near_duplicates.py, "read" figures). :func:`model_rows` keeps PyIceberg for what needs the table metadata
(the snapshot's data files, pruned by partition and column statistics: ``FileScanTask`` from ``plan_files``) and
reads each data file's columns itself:

* columns are found by Iceberg **field id** (the ``PARQUET:field_id`` of the file's schema), never by name, so a
  renamed column or a file written before a column was renumbered reads right (Iceberg spec, "Column Projection");
* the row filter (model, batch excluded, URIs excluded) is applied to the rows read (a file holds one model: the
  ``features`` partition spec has ``identity(model_id)``; the filter is still checked row by row);
* a file with delete files (merge-on-read deletes, e.g. written by Athena or Spark), a non-Parquet file or a file
  lacking a field id is read through PyIceberg's own ``ArrowScan`` for that file (deletes applied), so the rows are
  always exactly the snapshot's rows;
* the vectors are converted without a Python loop (``flatten().to_numpy()``, zero-copy when the column has one
  chunk and no row was filtered out), and row groups are decoded two at a time on two threads (PyArrow releases the
  GIL), the consumer's matrix products running between two such windows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, Not, NotEqualTo
from pyiceberg.manifest import FileFormat
from pyiceberg.table import FileScanTask, Table
from pyiceberg.transforms import IdentityTransform

from spark_jobs.lakehouse import tables

FIELD_ID = b"PARQUET:field_id"
# Rows per chunk handed to the consumer: 2,048 x 2,048 float32 = 16 MiB
# (spark_jobs.lakehouse.near_duplicates.CHUNK_ROWS, where the size is measured).
CHUNK_ROWS = 2048
# Threads decoding row groups at once (PyArrow releases the GIL); at most that many row groups in memory.
READ_THREADS = 2


def vectors_of(column: pa.ChunkedArray | pa.Array, dim: int | None = None) -> np.ndarray:
    """An Arrow ``list<float>`` (or ``large_list``) column of equal-length vectors -> float32 (n, d) without a Python
    loop (zero-copy when the column is one chunk of float32 without nulls).

    Raises:
        ValueError: null or ragged vectors, or length not ``dim``.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    if n == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    if column.null_count:
        raise ValueError(f"{column.null_count} null feature vector(s)")
    lengths = pc.list_value_length(column)
    d = pc.min_max(lengths)
    low, high = d["min"].as_py(), d["max"].as_py()
    if low != high or (dim is not None and low != dim):
        raise ValueError(f"feature vectors of lengths {low}..{high}, expected {dim or low}")
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(n, low)


def model_filter(
    model_id: str, exclude_batch: str | Sequence[str] | None = None, exclude_uris: Sequence[str] = ()
) -> BooleanExpression:
    """``features`` rows of ``model_id``, minus the rows of ``exclude_batch`` (one batch id, or a job run's batch
    ids) and of ``exclude_uris``."""
    where: BooleanExpression = EqualTo("model_id", model_id)
    if isinstance(exclude_batch, str):
        where = And(where, NotEqualTo("batch_id", exclude_batch))
    elif exclude_batch is not None:  # a job run's batch ids
        where = And(where, Not(tables.batch_filter(exclude_batch, model_id)))
    if exclude_uris:
        where = And(where, Not(In("image_uri", set(exclude_uris))))
    return where


def _row_mask(rows: pa.RecordBatch, model_id: str, exclude_batch: str | Sequence[str] | None,
              excluded: pa.Array | None):
    """Boolean mask of the rows passing :func:`model_filter` (None: every row passes)."""
    keep = pc.equal(rows.column("model_id"), model_id)
    if isinstance(exclude_batch, str):
        keep = pc.and_(keep, pc.not_equal(rows.column("batch_id"), exclude_batch))
    elif exclude_batch is not None:  # a job run's batch ids
        ids = pa.array(sorted(set(exclude_batch)), pa.string())
        keep = pc.and_(keep, pc.invert(pc.is_in(rows.column("batch_id"), value_set=ids)))
    if excluded is not None:
        keep = pc.and_(keep, pc.invert(pc.is_in(rows.column("image_uri"), value_set=excluded)))
    return None if pc.all(keep).as_py() else keep


def _unit_batches(table: Table, task: FileScanTask, group: int | None, units: int, names: list[str],
                  chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """The columns ``names`` (current names) of row group ``group`` of one data file read as ``units`` units (None:
    the whole file; the last unit also reads any row group beyond ``units``), by field id; PyIceberg's ArrowScan
    (deletes applied) reads the whole file instead, as unit ``None`` or ``0``, when the file has delete files, is not
    Parquet, or lacks one of the field ids."""
    schema = table.schema()
    ids = {schema.find_field(name).field_id: name for name in names}
    if not task.delete_files and task.file.file_format == FileFormat.PARQUET:
        parquet = pq.ParquetFile(table.io.new_input(task.file.file_path).open())
        in_file = {int(f.metadata[FIELD_ID]): f.name for f in parquet.schema_arrow
                   if f.metadata and FIELD_ID in f.metadata}
        if set(ids) <= set(in_file):
            columns = [in_file[i] for i in ids]
            count = parquet.num_row_groups
            groups = range(count) if group is None else [g for g in range(group, group + 1) if g < count]
            if group is not None and group == units - 1:
                groups = [*groups, *range(units, count)]
            for rows in parquet.iter_batches(batch_size=chunk_rows, row_groups=groups, columns=columns,
                                             use_threads=False):
                yield rows.rename_columns([ids[i] for i in ids])
            return
    if group:  # read whole as unit 0
        return
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    scan = ArrowScan(table.metadata, table.io, schema.select(*names), AlwaysTrue())
    for rows in scan.to_record_batches([task]):
        yield rows.select(names)


def _units(tasks: list[FileScanTask]) -> Iterator[tuple[FileScanTask, int | None, int]]:
    """``(task, row group, units of the file)`` read units: each row group of a Parquet file whose row group
    offsets the manifest records (``split_offsets``), else the whole file."""
    for task in tasks:
        offsets = task.file.split_offsets
        if offsets and not task.delete_files and task.file.file_format == FileFormat.PARQUET:
            yield from ((task, group, len(offsets)) for group in range(len(offsets)))
        else:
            yield task, None, 1


def _parallel(work, items: Iterator, workers: int) -> Iterator:
    """``work(item)`` for each item, ``workers`` items at a time on as many threads, results in order. The consumer
    runs between two windows, not during one: its BLAS threads and the decoding threads would otherwise compete
    for the same cores (measured: the overlapped search took longer than decode + compute one after the other)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vector-scan") as pool:
        for window in iter(lambda: list(itertools.islice(items, workers)), []):
            yield from list(pool.map(work, window))


def _chunks(
    table: Table, tasks: list[FileScanTask], names: list[str], vector: str, model_id: str,
    exclude_batch: str | Sequence[str] | None, exclude_uris: Sequence[str], chunk_rows: int,
) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """Rows passing :func:`model_filter` in chunks of ``chunk_rows / 2`` to ``chunk_rows`` rows (but the last);
    row groups are decoded and converted :data:`READ_THREADS` at a time on as many threads."""
    excluded = pa.array(sorted(set(exclude_uris)), pa.string()) if exclude_uris else None

    def read(unit: tuple[FileScanTask, int | None, int]) -> list[tuple[pa.Table, np.ndarray]]:
        pieces = []
        for rows in _unit_batches(table, *unit, names, chunk_rows):
            mask = _row_mask(rows, model_id, exclude_batch, excluded)
            if mask is not None:
                rows = rows.filter(mask)
            if rows.num_rows:
                pieces.append((pa.Table.from_batches([rows.drop_columns([vector])]), vectors_of(rows.column(vector))))
        return pieces

    pending: list[tuple[pa.Table, np.ndarray]] = []
    held = 0
    for pieces in _parallel(read, _units(tasks), READ_THREADS):
        for piece in pieces:
            if len(piece[1]) >= chunk_rows // 2:  # large enough: handed on as it is (no copy)
                yield piece
                continue
            pending.append(piece)  # small pieces (small files, row group tails) are merged: large products
            held += len(piece[1])
            if held >= chunk_rows // 2:
                yield _merge(pending)
                pending, held = [], 0
    if pending:
        yield _merge(pending)


def _merge(pieces: list[tuple[pa.Table, np.ndarray]]) -> tuple[pa.Table, np.ndarray]:
    if len(pieces) == 1:
        return pieces[0]
    return pa.concat_tables([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])


def model_rows(
    lake: tables.Lake,
    model_id: str,
    *,
    columns: Sequence[str] = ("image_uri",),
    vector: str = "features",
    exclude_batch: str | Sequence[str] | None = None,
    exclude_uris: Sequence[str] = (),
    chunk_rows: int = CHUNK_ROWS,
    table: Table | None = None,
) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """The current ``features`` rows of ``model_id`` (minus ``exclude_batch`` / ``exclude_uris``) as chunks of
    ``(pa.Table of columns, vectors float32 (m, d))``, m <= ``chunk_rows``; decoded on threads ahead of the
    consumer (module doc). No ``features`` table: nothing. ``table``: the loaded ``features`` table (saves a
    catalog load).

    Raises:
        ValueError: a null or ragged vector (:func:`vectors_of`).
    """
    if table is None:
        try:
            table = lake.table(tables.FEATURES, create=False)
        except NoSuchTableError:
            return iter(())
    where = model_filter(model_id, exclude_batch)  # URIs are excluded row by row (planning an In of 500: 0.3 s)
    names = list(dict.fromkeys([*columns, "image_uri", "model_id", "batch_id", vector]))
    tasks = list(table.scan(row_filter=where, selected_fields=tuple(names)).plan_files())
    return _chunks(table, tasks, names, vector, model_id, exclude_batch, exclude_uris, chunk_rows)


def read_model(lake: tables.Lake, model_id: str, columns: Sequence[str] = ("image_uri",), vector: str = "features",
               table: Table | None = None) -> tuple[pa.Table, np.ndarray]:
    """All current rows of ``model_id``: ``(pa.Table of columns, vectors float32 (n, d))`` (:func:`model_rows`)."""
    pieces = list(model_rows(lake, model_id, columns=columns, vector=vector, table=table))
    if not pieces:
        names = list(dict.fromkeys([*columns, "image_uri", "model_id", "batch_id"]))
        empty = tables.FEATURES_SCHEMA.as_arrow().empty_table().select(names)
        return empty, np.zeros((0, 0), dtype=np.float32)
    return _merge(pieces)


def partition_models(lake: tables.Lake, table: Table | None = None) -> list[str]:
    """Distinct ``model_id`` values of ``features``, sorted, from the partition values of the snapshot's data files
    (metadata only: ``features`` is partitioned by ``identity(model_id)``); equals
    :func:`spark_jobs.lakehouse.tables.model_ids`, which it calls instead when a file has delete files or is not
    partitioned by model."""
    if table is None:
        try:
            table = lake.table(tables.FEATURES, create=False)
        except NoSuchTableError:
            return []
    spec_fields = {spec.spec_id: spec.fields for spec in table.specs().values()}
    source = table.schema().find_field("model_id").field_id
    found = set()
    for task in table.scan(selected_fields=("model_id",)).plan_files():
        positions = [i for i, field in enumerate(spec_fields.get(task.file.spec_id, []))
                     if field.source_id == source and isinstance(field.transform, IdentityTransform)]
        if task.delete_files or not positions:  # rows may be deleted, or the file is not partitioned by model
            return tables.model_ids(lake)
        if task.file.record_count:
            found.add(task.file.partition[positions[0]])
    return sorted(found)
