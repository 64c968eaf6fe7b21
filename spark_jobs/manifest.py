"""Read a batch manifest (JSON lines or Parquet, any URI :mod:`spark_jobs.storage` reads) into a DataFrame.

The manifest lists only the batch's images (docs/contracts.md, "Batch manifest"); the job reads nothing else.
It is small (at most ``BATCH_MAX_IMAGES`` lines of metadata), so it is parsed on the driver and distributed.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from lambdas.contracts import VersionStamp, is_newer
from spark_jobs import storage

MANIFEST_SCHEMA = T.StructType(
    [
        T.StructField("image_uri", T.StringType(), False),
        T.StructField("label", T.StringType(), True),
        T.StructField("size", T.LongType(), True),
        T.StructField("etag", T.StringType(), True),
        T.StructField("version_id", T.StringType(), True),
    ]
)

# Photos per Spark task of a job run (partitions_for): 4 tasks of an executor featurize 500 photos.
IMAGES_PER_PARTITION = 125


class ManifestError(ValueError):
    """The manifest is unreadable or malformed (line number in the message)."""


def parse_manifest(data: bytes) -> list[dict]:
    """Manifest bytes -> records (``image_uri``, ``label``, ``size``, ``etag``, ``version_id``, ``event_time``,
    ``sequencer``, ``last_modified``), first wins on dupes. ``event_time`` and ``last_modified`` become
    timezone-aware ``datetime`` (UTC) or None (older manifests have no ``last_modified``).

    Parquet is recognised by its ``PAR1`` magic, anything else is JSON lines (blank lines ignored).

    Raises:
        ManifestError: a line is not a JSON object, has no string ``image_uri`` or a bad ``event_time``.
    """
    if data[:4] == b"PAR1":
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
    else:
        rows = []
        for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ManifestError(f"manifest line {number}: invalid JSON ({err.msg})") from None
    records: dict[str, dict] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not isinstance(row.get("image_uri"), str) or not row["image_uri"]:
            raise ManifestError(f"manifest record {number}: expected an object with a string image_uri")
        size = row.get("size")
        records.setdefault(
            row["image_uri"],
            {
                "image_uri": row["image_uri"],
                "label": row.get("label"),
                "size": int(size) if size is not None else None,
                "etag": row.get("etag"),
                "version_id": row.get("version_id"),
                "event_time": _event_time(row.get("event_time"), number),
                "sequencer": row.get("sequencer") or None,
                "last_modified": _event_time(row.get("last_modified"), number, "last_modified"),
            },
        )
    return list(records.values())


def _event_time(value: object, number: int, name: str = "event_time") -> dt.datetime | None:
    """An ISO-8601 time (``"2026-11-25T02:00:00.123Z"``) -> aware UTC datetime; None when absent."""
    if value is None or value == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ManifestError(f"manifest record {number}: {name} {value!r} is not ISO-8601") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def iso_utc(time: dt.datetime | None) -> str | None:
    """An aware datetime -> ISO-8601 UTC text (``2026-11-25T02:00:00.123000+00:00``; whole seconds first, as
    :func:`lambdas.contracts.is_newer` compares them); None for None."""
    return None if time is None else time.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class Arrival:
    """Which S3 version of an image the manifest recorded and when S3 announced it: the event's time (aware UTC)
    and sequencer (hex), the listing's ``last_modified`` (aware UTC, when found by listing) and the version id."""

    event_time: dt.datetime | None
    sequencer: str | None
    last_modified: dt.datetime | None = None
    version_id: str | None = None

    @property
    def stamp(self) -> VersionStamp:
        """The version's place among the events of its key (docs/contracts.md "Version order"):
        ``VersionStamp(sequencer, event_time or last_modified, version_id)``."""
        return VersionStamp(self.sequencer, iso_utc(self.event_time or self.last_modified), self.version_id or None)


def arrivals(records: list[dict]) -> dict[str, Arrival]:
    """``image_uri`` -> :class:`Arrival` of parsed manifest records (:func:`parse_manifest`)."""
    return {
        r["image_uri"]: Arrival(r.get("event_time"), r.get("sequencer"), r.get("last_modified"), r.get("version_id"))
        for r in records
    }


@dataclass(frozen=True)
class RunManifests:
    """The merged manifests of a job run (:func:`merge_manifests`).

    Attributes:
        records: one parsed record per distinct image URI of the run (:func:`parse_manifest` fields), the newest
            version when two batches list the URI; what the executors featurize.
        owner: ``image_uri`` -> the batch whose version is featurized (its rows carry that batch id).
        listed: batch id -> the distinct URIs its own manifest lists (its ``listed`` count).
        superseded: batch id -> the URIs it listed whose version lost to a newer one in another batch of the run.
    """

    records: list[dict]
    owner: dict[str, str]
    listed: dict[str, list[str]]
    superseded: dict[str, list[str]]


def merge_manifests(parsed: Sequence[tuple[str, list[dict]]]) -> RunManifests:
    """Merge the parsed manifests of a run's batches (``(batch_id, records)`` in seal order).

    A URI in two batches is kept once: the newest version by :func:`lambdas.contracts.is_newer` on the manifests'
    stamps (:attr:`spark_jobs.manifest.Arrival.stamp`); equal stamps: the later batch in seal order (it was
    sealed later). The loser is ``superseded`` in its batch, never featurized.
    """
    chosen: dict[str, tuple[str, dict]] = {}
    listed: dict[str, list[str]] = {}
    for batch_id, records in parsed:
        listed[batch_id] = [r["image_uri"] for r in records]
        for record in records:
            uri = record["image_uri"]
            known = chosen.get(uri)
            if known is None or not is_newer(_stamp(known[1]), _stamp(record)):
                chosen[uri] = (batch_id, record)
    superseded = {b: [u for u in uris if chosen[u][0] != b] for b, uris in listed.items()}
    return RunManifests([record for _, record in chosen.values()], {u: b for u, (b, _) in chosen.items()}, listed,
                        superseded)


def _stamp(record: dict) -> VersionStamp:
    return Arrival(record.get("event_time"), record.get("sequencer"), record.get("last_modified"),
                   record.get("version_id")).stamp


def read_manifest(spark: SparkSession, uri: str, num_partitions: int | None = None) -> DataFrame:
    """Manifest at ``uri`` -> DataFrame of :data:`MANIFEST_SCHEMA`, one row per distinct image URI.

    Args:
        num_partitions: rows are spread round-robin over this many partitions (default: Spark's default
            parallelism, capped by the row count) so every task slot featurizes a share.
    """
    return manifest_frame(spark, parse_manifest(storage.read_bytes(uri)), num_partitions)


def partitions_for(images: int, default_parallelism: int) -> int:
    """Spark partitions (tasks) of a job run of ``images`` photos: ``max(default_parallelism, ceil(images /
    IMAGES_PER_PARTITION))``, at most ``images``, at least 1.

    A big run has more tasks than the executors it starts with, so Spark dynamic allocation asks for more executors
    (it requests ``ceil(pending tasks / task slots per executor)``, up to ``spark.dynamicAllocation.maxExecutors``;
    https://spark.apache.org/docs/latest/job-scheduling.html#resource-allocation-policy): with 4-vCPU executors
    (4 task slots) that is one executor per 4 x :data:`IMAGES_PER_PARTITION` = 500 photos, the rule the capacity
    model uses (``bench/capacity_model.py`` ``images_per_executor``). A small run keeps ``default_parallelism``.
    """
    return max(1, min(images, max(default_parallelism, math.ceil(images / IMAGES_PER_PARTITION))))


def manifest_frame(spark: SparkSession, records: list[dict], num_partitions: int | None = None) -> DataFrame:
    """Parsed manifest records -> DataFrame of :data:`MANIFEST_SCHEMA` (see :func:`read_manifest`), in
    ``num_partitions`` partitions (default: :func:`partitions_for` the number of records)."""
    default = spark.sparkContext.defaultParallelism
    parts = max(1, min(len(records), num_partitions)) if num_partitions else partitions_for(len(records), default)
    rows = [tuple(r[name] for name in MANIFEST_SCHEMA.fieldNames()) for r in records]
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, parts), MANIFEST_SCHEMA)


def erase_manifest_uri(manifest_uri: str) -> str:
    """URI of a batch's erasure list beside its manifest: ``<batch_id>.jsonl`` -> ``<batch_id>.erase.jsonl``."""
    stem = manifest_uri[: -len(".jsonl")] if manifest_uri.endswith(".jsonl") else manifest_uri
    return f"{stem}.erase.jsonl"


@dataclass(frozen=True)
class Erasure:
    """One line of a batch's erasure list: the image URI, the stamp of the delete event (or request) and why."""

    image_uri: str
    stamp: VersionStamp
    reason: str | None = None


def read_erasures(manifest_uri: str, *, default_time: str) -> list[Erasure]:
    """The erasures the batch applies after its commit (docs/contracts.md, "Batch manifest"); [] when the erasure
    list does not exist. One JSON object per line: ``image_uri`` (required), optional ``sequencer``, ``time``
    (ISO-8601 UTC of the delete event / request), ``version_id``, ``reason``.

    Args:
        default_time: ISO-8601 UTC time given to a line without ``sequencer`` and ``time`` (written before lines
            carried them): the job's start, so the erasure covers every version recorded before it.

    Raises:
        ValueError: a line is not a JSON object with a non-empty string ``image_uri``, or its ``time`` is not
            ISO-8601.
    """
    uri = erase_manifest_uri(manifest_uri)
    if not storage.exists(uri):
        return []
    erasures = []
    for number, line in enumerate(storage.read_bytes(uri).decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict) or not isinstance(record.get("image_uri"), str) or not record["image_uri"]:
            raise ValueError(f"{uri}:{number}: expected an object with a non-empty image_uri")
        sequencer = record.get("sequencer") or None
        time = iso_utc(_event_time(record.get("time"), number, "time"))
        if sequencer is None and time is None:
            time = default_time
        stamp = VersionStamp(sequencer, time, record.get("version_id") or None)
        erasures.append(Erasure(record["image_uri"], stamp, record.get("reason")))
    return erasures
