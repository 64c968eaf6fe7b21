"""Which versions of a batch are still live when the job commits, checked against the lake's own records.

A batch's manifest names S3 object versions (``VersionStamp(sequencer, event_time or last_modified, version_id)``,
docs/contracts.md "Version order"). By the time the job commits, a version may be dead: erased (a delete event or
a ``fruits erase`` request after it), or superseded (a newer version of the key already has a ``features`` row),
for instance when an old batch is re-run (``fruits start-job --batch-id``) or a job run is late. The lake keeps
what is needed to tell, per image URI:

* the ``erasures`` ledger (:data:`spark_jobs.lakehouse.tables.ERASURES`): the stamp of each erasure of the URI, and
  prefix erasures; a version not newer than an erasure's stamp is **erased**;
* the stamps kept on the ``features`` and ``rejects`` rows (``sequencer``, ``event_time``, ``last_modified``,
  ``version_id``) of every model: a version older than one of them is **superseded**.

Only the rows of the batch's URIs are read (an ``In(image_uri, …)`` filter, pruned by the files' column
statistics) plus the prefix erasures (rare, an operator's action): never a scan of all history. A version with no
stamp at all (a manifest of local files without times) is older than every erasure, and equal to another stampless
version (the latest commit wins, as before stamps existed).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping

import pyarrow as pa
from pyiceberg.expressions import BooleanExpression, EqualTo, In, Or

from lambdas.contracts import VersionStamp, is_newer
from spark_jobs.lakehouse import tables
from spark_jobs.manifest import iso_utc

ERASED, SUPERSEDED = "erased", "superseded"
SCOPE_URI, SCOPE_PREFIX = "uri", "prefix"
# URIs per In(...) literal set: bounds the size of one filter expression (a batch is at most 1,000 images).
IN_CHUNK = 1000


def uri_filter(uris: Iterable[str]) -> BooleanExpression:
    """``image_uri IN (…)`` over non-empty ``uris`` (``EqualTo`` for one), chunked into ``Or`` of ``In`` sets."""
    ordered = sorted(set(uris))
    parts: list[BooleanExpression] = [
        In("image_uri", set(ordered[i : i + IN_CHUNK])) if len(ordered[i : i + IN_CHUNK]) > 1
        else EqualTo("image_uri", ordered[i]) for i in range(0, len(ordered), IN_CHUNK)
    ]
    out = parts[0]
    for part in parts[1:]:
        out = Or(out, part)
    return out


def row_stamp(row: Mapping[str, object]) -> VersionStamp:
    """The stamp of a ``features`` row (or of a ledger row): its ``sequencer``, ``event_time`` / ``time``, else
    ``last_modified``, and ``version_id`` (rows written before stamps existed give ``VersionStamp()``, the oldest)."""
    time = row.get("time")
    if time is None:
        moment = row.get("event_time") or row.get("last_modified")
        time = iso_utc(moment) if isinstance(moment, dt.datetime) else moment
    # type: ignore[arg-type]
    return VersionStamp(row.get("sequencer") or None, time or None, row.get("version_id") or None)


def erasure_stamps(lake: tables.Lake, uris: Iterable[str]) -> dict[str, list[VersionStamp]]:
    """``image_uri`` -> stamps of the ledger's erasures of it (its own and those of a prefix it starts with)."""
    wanted = set(uris)
    if not wanted or not lake.exists(tables.ERASURES):
        return {}
    table = lake.table(tables.ERASURES, create=False)
    where = Or(uri_filter(wanted), EqualTo("scope", SCOPE_PREFIX))
    rows = table.scan(row_filter=where, selected_fields=("image_uri", "scope", "sequencer", "time", "version_id"))
    out: dict[str, list[VersionStamp]] = defaultdict(list)
    for row in rows.to_arrow().to_pylist():
        stamp = row_stamp(row)
        if row["scope"] == SCOPE_PREFIX:
            for uri in wanted:
                if uri.startswith(row["image_uri"]):
                    out[uri].append(stamp)
        elif row["image_uri"] in wanted:
            out[row["image_uri"]].append(stamp)
    return dict(out)


def committed_stamps(lake: tables.Lake, uris: Iterable[str]) -> dict[str, list[VersionStamp]]:
    """``image_uri`` -> stamps of the ``features`` and ``rejects`` rows of it, every model (a newest version that
    could not be decoded is still the newest: its ``rejects`` row supersedes older versions too)."""
    wanted = set(uris)
    out: dict[str, list[VersionStamp]] = defaultdict(list)
    if not wanted:
        return {}
    fields = ("image_uri", "sequencer", "event_time", "last_modified", "version_id")
    for name in (tables.FEATURES, tables.REJECTS):
        if not lake.exists(name):
            continue
        table = lake.table(name)  # writer access: an older table gains the stamp columns first
        rows: pa.Table = table.scan(row_filter=uri_filter(wanted), selected_fields=fields).to_arrow()
        for row in rows.to_pylist():
            out[row["image_uri"]].append(row_stamp(row))
    return dict(out)


def stale_versions(lake: tables.Lake, stamps: Mapping[str, VersionStamp]) -> dict[str, str]:
    """The versions of ``stamps`` (``image_uri`` -> the batch's version of it) that are no longer live.

    Returns:
        ``image_uri`` -> ``"erased"`` (the ledger holds an erasure of it whose stamp is not older than the
        version: ``not is_newer(version, erasure)``) or ``"superseded"`` (a ``features`` or ``rejects`` row of the
        key, any model, holds a strictly newer version: ``is_newer(row, version)``). Live versions are absent.
    """
    erased = erasure_stamps(lake, stamps)
    rows = committed_stamps(lake, stamps)
    stale: dict[str, str] = {}
    for uri, stamp in stamps.items():
        if any(not is_newer(stamp, erasure) for erasure in erased.get(uri, ())):
            stale[uri] = ERASED
        elif any(is_newer(row, stamp) for row in rows.get(uri, ())):
            stale[uri] = SUPERSEDED
    return stale


def record_erasures(
    lake: tables.Lake, stamps: Mapping[str, VersionStamp], *, erasure_id: str,
    reasons: Mapping[str, str | None] | None = None, prefix: str | None = None,
    prefix_stamp: VersionStamp | None = None,
) -> int:
    """Append the erasures to the ledger in one Iceberg commit (before any row is deleted, so a job run or re-run
    that commits later sees them); returns the ledger rows written. Appending twice (a retried erasure) only
    repeats a row: the ledger's meaning is the newest stamp per key.

    Args:
        stamps: ``image_uri`` -> the erasure's stamp. reasons: ``image_uri`` -> ``deleted`` | ``request`` (default
            ``request``). prefix / prefix_stamp: a prefix erasure (stamp default: now).
    """
    reasons = reasons or {}
    now = dt.datetime.now(dt.UTC)
    records = [
        {"image_uri": uri, "scope": SCOPE_URI, "sequencer": s.sequencer, "time": s.time, "version_id": s.version_id,
         "reason": reasons.get(uri) or "request", "erasure_id": erasure_id, "recorded_at": now}
        for uri, s in sorted(stamps.items())
    ]
    if prefix:
        s = prefix_stamp or VersionStamp(None, iso_utc(now), None)
        records.append({"image_uri": prefix, "scope": SCOPE_PREFIX, "sequencer": s.sequencer, "time": s.time,
                        "version_id": s.version_id, "reason": "request", "erasure_id": erasure_id, "recorded_at": now})
    if not records:
        return 0
    table = lake.table(tables.ERASURES)
    rows = tables.to_table_schema(pa.Table.from_pylist(records), tables.ERASURES, table.schema())
    table.append(rows, snapshot_properties={"fruits.erasure_id": erasure_id})
    return len(records)
