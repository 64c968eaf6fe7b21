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
  chunk and no row was filtered out), and files are decoded on a background thread one step ahead of the consumer,
  so decoding overlaps the consumer's matrix products (PyArrow and BLAS release the GIL).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, Not, NotEqualTo
from pyiceberg.manifest import FileFormat
from pyiceberg.table import FileScanTask, Table
from pyiceberg.transforms import IdentityTransform

from spark_jobs import tables

FIELD_ID = b"PARQUET:field_id"
# Rows per chunk handed to the consumer: 8,192 x 2,048 float32 = 64 MiB (spark_jobs.near_duplicates.CHUNK_ROWS).
CHUNK_ROWS = 8192


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
    model_id: str, exclude_batch: str | None = None, exclude_uris: Sequence[str] = ()
) -> BooleanExpression:
    """``features`` rows of ``model_id``, minus the rows of ``exclude_batch`` and of ``exclude_uris``."""
    where: BooleanExpression = EqualTo("model_id", model_id)
    if exclude_batch is not None:
        where = And(where, NotEqualTo("batch_id", exclude_batch))
    if exclude_uris:
        where = And(where, Not(In("image_uri", set(exclude_uris))))
    return where


def _row_mask(rows: pa.RecordBatch, model_id: str, exclude_batch: str | None, excluded: pa.Array | None):
    """Boolean mask of the rows passing :func:`model_filter` (None: every row passes)."""
    keep = pc.equal(rows.column("model_id"), model_id)
    if exclude_batch is not None:
        keep = pc.and_(keep, pc.not_equal(rows.column("batch_id"), exclude_batch))
    if excluded is not None:
        keep = pc.and_(keep, pc.invert(pc.is_in(rows.column("image_uri"), value_set=excluded)))
    return None if pc.all(keep).as_py() else keep


def _file_batches(table: Table, task: FileScanTask, names: list[str], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """The columns ``names`` (current names) of one data file, by field id; falls back to PyIceberg's ArrowScan
    (deletes applied) for a file with delete files, not Parquet, or without one of the field ids."""
    schema = table.schema()
    ids = {schema.find_field(name).field_id: name for name in names}
    if not task.delete_files and task.file.file_format == FileFormat.PARQUET:
        parquet = pq.ParquetFile(table.io.new_input(task.file.file_path).open())
        in_file = {int(f.metadata[FIELD_ID]): f.name for f in parquet.schema_arrow
                   if f.metadata and FIELD_ID in f.metadata}
        if set(ids) <= set(in_file):
            columns = [in_file[i] for i in ids]
            for rows in parquet.iter_batches(batch_size=chunk_rows, columns=columns, use_threads=False):
                yield rows.rename_columns([ids[i] for i in ids])
            return
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    scan = ArrowScan(table.metadata, table.io, schema.select(*names), AlwaysTrue())
    for rows in scan.to_record_batches([task]):
        yield rows.select(names)


def _chunks(
    table: Table, tasks: list[FileScanTask], names: list[str], vector: str, model_id: str,
    exclude_batch: str | None, exclude_uris: Sequence[str], chunk_rows: int,
) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """Rows passing :func:`model_filter` in chunks of ``chunk_rows / 2`` to ``chunk_rows`` rows (but the last)."""
    excluded = pa.array(sorted(set(exclude_uris)), pa.string()) if exclude_uris else None
    pending: list[tuple[pa.Table, np.ndarray]] = []
    held = 0
    for task in tasks:
        for rows in _file_batches(table, task, names, chunk_rows):
            mask = _row_mask(rows, model_id, exclude_batch, excluded)
            if mask is not None:
                rows = rows.filter(mask)
            if rows.num_rows == 0:
                continue
            piece = pa.Table.from_batches([rows.drop_columns([vector])]), vectors_of(rows.column(vector))
            if rows.num_rows >= chunk_rows // 2:  # large enough: handed on as it is (no copy)
                yield piece
                continue
            pending.append(piece)  # small pieces (small files, row group tails) are merged: large products
            held += rows.num_rows
            if held >= chunk_rows // 2:
                yield _merge(pending)
                pending, held = [], 0
    if pending:
        yield _merge(pending)


def _merge(pieces: list[tuple[pa.Table, np.ndarray]]) -> tuple[pa.Table, np.ndarray]:
    if len(pieces) == 1:
        return pieces[0]
    return pa.concat_tables([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])


def _ahead(items: Iterator, depth: int = 1) -> Iterator:
    """``items`` produced on a daemon thread up to ``depth`` items ahead of the consumer; its exceptions re-raised
    here; the thread stops when the consumer stops early."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((True, done))
        except BaseException as err:  # handed to the consumer
            box.put((False, err))

    worker = threading.Thread(target=produce, name="vector-scan", daemon=True)
    worker.start()
    try:
        while True:
            ok, item = box.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()


def model_rows(
    lake: tables.Lake,
    model_id: str,
    *,
    columns: Sequence[str] = ("image_uri",),
    vector: str = "features",
    exclude_batch: str | None = None,
    exclude_uris: Sequence[str] = (),
    chunk_rows: int = CHUNK_ROWS,
    table: Table | None = None,
) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """The current ``features`` rows of ``model_id`` (minus ``exclude_batch`` / ``exclude_uris``) as chunks of
    ``(pa.Table of columns, vectors float32 (m, d))``, m <= ``chunk_rows``; read on a background thread one
    chunk ahead (module doc). No ``features`` table: nothing. ``table``: the loaded ``features`` table (saves a
    catalog load).

    Raises:
        ValueError: a null or ragged vector (:func:`vectors_of`).
    """
    if table is None:
        try:
            table = lake.table(tables.FEATURES, create=False)
        except NoSuchTableError:
            return iter(())
    where = model_filter(model_id, exclude_batch, exclude_uris)
    names = list(dict.fromkeys([*columns, "image_uri", "model_id", "batch_id", vector]))
    tasks = list(table.scan(row_filter=where, selected_fields=tuple(names)).plan_files())
    chunks = _chunks(table, tasks, names, vector, model_id, exclude_batch, exclude_uris, chunk_rows)
    return _ahead(chunks)


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
    (metadata only: ``features`` is partitioned by ``identity(model_id)``); equals :func:`spark_jobs.tables.model_ids`,
    which it calls instead when a file has delete files or is not partitioned by model."""
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
