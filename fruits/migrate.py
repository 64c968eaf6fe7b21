"""Migrate a Parquet lake written before the Iceberg tables (``features/batch_id=<id>/``, ``rejects/batch_id=<id>/``,
``batches/<id>.json``) into the tables, in place; a legacy ``pca/`` tree is compacted by :mod:`fruits.migrate_pca`
(``fruits migrate-lake`` runs both).

Each (batch_id, model_id) becomes one batch-run commit (:func:`spark_jobs.lakehouse.tables.replace_batch_rows`), so the
migration can be re-run safely. Old rejects have no ``model_id``: it is taken from the batch report (or the
batch's features rows). The result is checked: row counts and content hashes of every table equal the source.
The legacy Parquet folders are left in place unless ``remove_legacy`` (they are outside the tables' data/).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from fruits.lake_maintenance import content_hash
from spark_jobs.job import batch_row
from spark_jobs.lakehouse import tables


class MigrationError(RuntimeError):
    """The folder is not a legacy lake, or the tables do not equal the source after the migration."""


@dataclass(frozen=True)
class MigrationResult:
    """Rows migrated per table, and the content hash both sides share."""

    features: int
    rejects: int
    batches: int
    features_sha256: str


def has_legacy_tables(root: Path) -> bool:
    """True when ``root`` holds a legacy Parquet ``features/batch_id=*/`` folder."""
    return any(root.glob("features/batch_id=*"))


def _legacy_rows(root: Path, name: str) -> pa.Table | None:
    folders = sorted(root.glob(f"{name}/batch_id=*"))
    if not folders:
        return None
    parts = []
    for folder in folders:
        batch_id = folder.name.split("=", 1)[1]
        for path in sorted(folder.glob("*.parquet")):
            table = ds.dataset(path, format="parquet").to_table()
            parts.append(table.append_column("batch_id", pa.array([batch_id] * table.num_rows, pa.string())))
    return pa.concat_tables(parts, promote_options="permissive") if parts else None


def _timestamps_utc(rows: pa.Table) -> pa.Table:
    index = rows.schema.get_field_index("ingested_at")
    if index < 0:
        return rows
    column = rows.column(index).cast(pa.timestamp("us", tz="UTC"))  # INT96 (ns) or micros, UTC either way
    return rows.set_column(index, pa.field("ingested_at", column.type), column)


def migrate_lake(root: Path, catalog: str | None = None, *, remove_legacy: bool = False) -> MigrationResult:
    """Turn the legacy Parquet lake at ``root`` into the Iceberg tables of the same lake (see module doc).

    Raises:
        MigrationError: no legacy ``features/batch_id=*`` folder, or the tables differ from the source.
    """
    source = _legacy_rows(root, "features")
    if source is None:
        raise MigrationError(f"{root} has no legacy features/batch_id=*/ folder: nothing to migrate")
    source = _timestamps_utc(source)
    lake = tables.Lake.at(str(root), catalog)
    reports = {p.stem: json.loads(p.read_text()) for p in sorted((root / "batches").glob("*.json"))}
    model_of_batch: dict[str, str] = {}
    for batch_id, model_id in zip(source.column("batch_id").to_pylist(), source.column("model_id").to_pylist(),
                                  strict=True):
        model_of_batch.setdefault(batch_id, model_id)
    for batch_id, report in reports.items():
        model_of_batch.setdefault(batch_id, report.get("model_id", "unknown"))
    pairs = sorted(set(zip(source.column("batch_id").to_pylist(), source.column("model_id").to_pylist(), strict=True)))
    for batch_id, model_id in pairs:
        mask = pc.and_(pc.equal(source.column("batch_id"), batch_id),
                               pc.equal(source.column("model_id"), model_id))
        tables.replace_batch_rows(lake, tables.FEATURES, source.filter(mask), batch_id=batch_id, model_id=model_id,
                                  summary={"fruits.operation": "migrate"})
    rejects = _legacy_rows(root, "rejects")
    n_rejects = 0
    if rejects is not None and rejects.num_rows:
        models = [model_of_batch.get(b, "unknown") for b in rejects.column("batch_id").to_pylist()]
        rejects = rejects.append_column("model_id", pa.array(models, pa.string()))
        for batch_id in sorted(set(rejects.column("batch_id").to_pylist())):
            part = rejects.filter(pc.equal(rejects.column("batch_id"), batch_id))
            tables.replace_batch_rows(lake, tables.REJECTS, part, batch_id=batch_id,
                                      model_id=model_of_batch.get(batch_id, "unknown"))
        n_rejects = rejects.num_rows
    for batch_id, report in reports.items():
        committed = source.filter(pc.equal(source.column("batch_id"), batch_id)).column("ingested_at")
        when = committed[0].as_py() if len(committed) else None
        row = batch_row({**report, "images_per_second": report.get("images_per_second", 0.0)}, when)
        tables.replace_batch_rows(lake, tables.BATCHES, row, batch_id=batch_id, model_id=report["model_id"])
    migrated = tables.scan(lake, tables.FEATURES)
    added = [name for name in migrated.column_names if name not in source.column_names]  # e.g. event_time
    if any(migrated.column(name).null_count != migrated.num_rows for name in added):
        raise MigrationError(f"columns the Parquet lake did not have are not null after migration: {added}")
    migrated = migrated.drop_columns(added)
    expected_hash = content_hash(source.select(migrated.column_names).cast(migrated.schema))
    actual_hash = content_hash(migrated)
    if migrated.num_rows != source.num_rows or actual_hash != expected_hash:
        raise MigrationError(f"features differ after migration: {migrated.num_rows} rows vs {source.num_rows}")
    if n_rejects != tables.scan(lake, tables.REJECTS).num_rows:
        raise MigrationError("rejects differ after migration")
    if remove_legacy:
        for name in ("features", "rejects"):
            for folder in root.glob(f"{name}/batch_id=*"):
                shutil.rmtree(folder)
    return MigrationResult(migrated.num_rows, n_rejects, len(reports), actual_hash)
