"""Lake table maintenance: compaction of a model's small files, snapshot expiry with retention, content hash.

Iceberg keeps every data file a snapshot still references: a row deleted by a re-run or an erasure is gone from
the current snapshot at once, but its bytes stay in older data files until the snapshots that reference them
are expired and the unreferenced files are deleted (:func:`expire_snapshots`). Sources: Apache Iceberg
"Maintenance" (https://iceberg.apache.org/docs/latest/maintenance/), PyIceberg ``Table.maintenance``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import fs as pafs
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

from spark_jobs.lakehouse import tables

MB = 1024 * 1024
DEFAULT_RETENTION_DAYS = 30  # snapshots (and the deleted rows they hold) older than this can be expired


def content_hash(rows: pa.Table) -> str:
    """sha256 over every row of ``rows`` in a canonical order (sorted by every scalar column), hex.

    List columns (feature vectors) are hashed by their flattened float32 values and list lengths, other
    columns by their Python values: two tables have the same hash iff they hold the same rows.
    """
    scalar = [name for name in rows.column_names if not pa.types.is_list(rows.schema.field(name).type)
              and not pa.types.is_large_list(rows.schema.field(name).type)]
    ordered = rows.sort_by([(name, "ascending") for name in scalar]) if rows.num_rows else rows
    digest = hashlib.sha256()
    for name in sorted(ordered.column_names):
        column = ordered.column(name).combine_chunks() if ordered.num_rows else ordered.column(name)
        digest.update(name.encode())
        if name in scalar:
            digest.update(repr(column.to_pylist()).encode())
        else:
            digest.update(pc.list_value_length(column).to_numpy(zero_copy_only=False).tobytes())
            digest.update(pc.list_flatten(column).to_numpy(zero_copy_only=False).astype("float32").tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class CompactionResult:
    """Files of a model before/after, rows, and the content hashes checked equal."""

    model_id: str
    files_before: int
    files_after: int
    rows: int
    content_sha256: str


def _month_range(months_since_epoch: int) -> tuple[dt.datetime, dt.datetime]:
    year, month = divmod(months_since_epoch, 12)
    start = dt.datetime(1970 + year, month + 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


def compact(lake: tables.Lake, model_id: str, target_mb: int = 128) -> CompactionResult:
    """Rewrite each (model_id, month) partition of ``features`` that has several data files into files of about
    ``target_mb`` MiB (PyIceberg bins by in-memory Arrow size, so files on disk come out smaller), one
    transaction per partition; rows unchanged (content hash compared, else the rewrite is not committed).

    Driver memory: one partition (one model, one month) of rows at a time.

    Raises:
        LookupError: no rows of ``model_id``. RuntimeError: the rewritten rows differ (nothing committed).
    """
    table = lake.table(tables.FEATURES)
    before_rows = tables.scan(lake, tables.FEATURES, model_id=model_id)
    if before_rows.num_rows == 0:
        raise LookupError(f"no features rows of model_id {model_id!r}")
    before_hash = content_hash(before_rows)
    files = table.inspect.data_files()
    mine = [p for p in files.column("partition").to_pylist() if p["model_id"] == model_id]
    files_before = len(mine)
    months = sorted({p["ingested_month"] for p in mine}, key=lambda m: (m is None, m))
    for month in months:
        if sum(1 for p in mine if p["ingested_month"] == month) < 2 or month is None:
            continue
        start, end = _month_range(month)
        where = And(EqualTo("model_id", model_id),
                    And(GreaterThanOrEqual("ingested_at", start.isoformat()), LessThan("ingested_at", end.isoformat())))
        rows = table.scan(row_filter=where).to_arrow()
        with table.transaction() as tx:
            tx.set_properties({"write.target-file-size-bytes": str(target_mb * MB)})
            tx.overwrite(rows, overwrite_filter=where,
                         snapshot_properties={"fruits.operation": "compact", "fruits.model_id": model_id})
        table = lake.table(tables.FEATURES)
    after_rows = tables.scan(lake, tables.FEATURES, model_id=model_id)
    after_hash = content_hash(after_rows)
    if after_hash != before_hash:  # pragma: no cover - would be a PyIceberg bug; the check is the contract
        raise RuntimeError(f"compaction changed the rows of {model_id}: {before_hash} != {after_hash}")
    after_files = [p for p in table.inspect.data_files().column("partition").to_pylist() if p["model_id"] == model_id]
    return CompactionResult(model_id, files_before, len(after_files), after_rows.num_rows, after_hash)


@dataclass(frozen=True)
class ExpiryResult:
    """Per table: snapshots expired, data files deleted (no longer referenced by any snapshot)."""

    table: str
    snapshots_expired: int
    files_deleted: int


def _data_files_on_storage(location: str) -> list[str]:
    filesystem, root = pafs.FileSystem.from_uri(f"{location.rstrip('/')}/data")
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return []
    scheme = location.split("://", 1)[0] + "://" if "://" in location else ""
    return [f"{scheme}{info.path}" for info in infos if info.type == pafs.FileType.File]


def expire_snapshots(lake: tables.Lake, retention_days: int = DEFAULT_RETENTION_DAYS,
                     now: dt.datetime | None = None) -> list[ExpiryResult]:
    """Expire snapshots older than ``retention_days`` in every lake table, then delete the data files that no
    remaining snapshot references (so deleted rows really disappear). The current snapshot is always kept.

    Raises:
        ValueError: ``retention_days`` < 0.
    """
    if retention_days < 0:
        raise ValueError(f"retention must be >= 0 days, got {retention_days}")
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=retention_days)
    results = []
    for name in tables.TABLES:
        if not lake.exists(name):
            continue
        table = lake.table(name, create=False)
        current = table.current_snapshot()
        keep = current.snapshot_id if current is not None else None
        old = [s.snapshot_id for s in table.snapshots()
               if s.timestamp_ms < cutoff.timestamp() * 1000 and s.snapshot_id != keep]
        if old:
            table.maintenance.expire_snapshots().by_ids(old).commit()
            table = lake.table(name, create=False)
        referenced = {_plain(p) for p in table.inspect.all_data_files().column("file_path").to_pylist()}
        stale = [p for p in _data_files_on_storage(table.location()) if _plain(p) not in referenced]
        for path in stale:
            filesystem, file_path = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)
            filesystem.delete_file(file_path)
        results.append(ExpiryResult(name, len(old), len(stale)))
    return results


def _plain(path: str) -> str:
    return path.removeprefix("file://")


# newest checkpoint states kept by expire_pca (spark_jobs.pca.versions.CHECKPOINT_EVERY apart)
DEFAULT_PCA_CHECKPOINTS = 3


@dataclass(frozen=True)
class PcaExpiryResult:
    """Per model: PCA state and fit files deleted, and the bytes they held."""

    model_id: str
    states_deleted: int
    fits_deleted: int
    bytes_deleted: int


def _version_files(names: list[str]) -> dict[int, list[str]]:
    by_version: dict[int, list[str]] = {}
    for name in names:
        if name.startswith("v") and name[1:7].isdigit() and not name.endswith(".json"):
            by_version.setdefault(int(name[1:7]), []).append(name)
    return by_version


def expire_pca(
    lake: tables.Lake, retention_days: int = DEFAULT_RETENTION_DAYS, keep_checkpoints: int = DEFAULT_PCA_CHECKPOINTS,
    now: dt.datetime | None = None,
) -> list[PcaExpiryResult]:
    """Delete PCA files of versions created before the retention (``<lake>/pca/<model_id>/``, format 2):

    * a full state (``.state``) unless it is the latest landed version's or one of the newest ``keep_checkpoints``
      checkpoints' (spark_jobs.pca.versions module doc);
    * a fit (``.fit.npz``: components, mean) unless its version is the latest, a kept checkpoint, or carried by a
      current ``features`` row (``pca_version``; a row stays projectable with the version it was written with).

    Version JSONs (a few KB: the record of each version) and legacy files (``fruits migrate-lake`` converts them)
    are kept; versions younger than the retention are never touched (snapshots that time travel to may carry them).

    Raises:
        ValueError: ``retention_days`` or ``keep_checkpoints`` < 0.
    """
    from spark_jobs import storage
    from spark_jobs.pca import versions as pca

    if retention_days < 0 or keep_checkpoints < 0:
        raise ValueError(f"retention days and checkpoints must be >= 0, got {retention_days}, {keep_checkpoints}")
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=retention_days)
    root = storage.join(lake.uri, "pca")
    results = []
    for model_id in storage.list_dirs(root):
        latest = pca.latest_version(lake.uri, model_id)
        if latest is None:
            continue
        rows = tables.scan(lake, tables.FEATURES, model_id=model_id, columns=("pca_version",))
        carried = {v for v in rows.column("pca_version").to_pylist() if v is not None}
        folder = pca.model_dir(lake.uri, model_id)
        files = _version_files(storage.list_names(folder))
        metas = {}
        for version in files:
            try:
                metas[version] = pca.read_metadata(lake.uri, model_id, version)
            except FileNotFoundError:  # a version killed before its JSON: orphan files
                metas[version] = {"format": pca.FORMAT, "created_at": "1970-01-01T00:00:00+00:00"}
        checkpoints = sorted(v for v, m in metas.items() if m.get("checkpoint") and v <= latest)
        kept = {latest, *checkpoints[len(checkpoints) - keep_checkpoints:]} if keep_checkpoints else {latest}
        states = fits = freed = 0
        for version, names in files.items():
            meta = metas[version]
            old = dt.datetime.fromisoformat(meta.get("created_at") or "1970-01-01T00:00:00+00:00") < cutoff
            if pca.is_legacy(meta) or version in kept or not old:
                continue
            for name in names:
                is_state = name.endswith(".state")
                if is_state or (name.endswith(".fit.npz") and version not in carried):
                    uri = storage.join(folder, name)
                    freed += storage.size(uri)
                    storage.delete(uri)
                    states, fits = states + is_state, fits + (not is_state)
        results.append(PcaExpiryResult(model_id, states, fits, freed))
    return results
