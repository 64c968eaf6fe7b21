"""Issue 18: a property-style test of the Lambdas' version life cycle (hypothesis, moto, a fresh table per example).

Random interleavings, for two keys of a versioned bucket, of: upload (new bytes, or bytes of an earlier version),
delete (delete marker), delivery of a pending S3 event in any order (late, reordered), duplicate delivery of an
event, a listing of the bucket (reconcile's backfill: no version id, LastModified), flush (seal + start) and a job
run's SUCCESS. Then every remaining event is delivered and everything flushed. Checked:

1. every sealed manifest lists only versions that were their key's newest known event when sealed (no delivered
   or listed event of the key, upload or delete, is newer by ``lambdas.contracts.is_newer``);
2. the newest version of every live key is in exactly one manifest (nothing stays pending);
3. a deleted key that was in a manifest gets an erasure line (its delete's sequencer) in a later batch.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdas import aws
from lambdas.config import get_settings
from lambdas.contracts import VersionStamp, is_newer
from lambdas.dal import ManifestTable
from lambdas.logic.keys import ImageRef
from lambdas.pipeline import Pipeline
from tests.helpers.aws_fixtures import BUCKET, create_table

KEYS = ("images/Training/Kiwi/a.jpg", "images/Training/Kiwi/b.jpg")
T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
_TABLES = itertools.count()


@dataclass(frozen=True)
class Event:
    """One S3 event: an upload (``etag``) or a delete (``etag`` None) of ``key``, at second ``n`` after T0."""

    key: str
    n: int
    version_id: str
    etag: str | None

    @property
    def time(self) -> str:
        return (T0 + dt.timedelta(seconds=self.n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @property
    def stamp(self) -> VersionStamp:
        return VersionStamp(f"{self.n:016X}", self.time, self.version_id)

    @property
    def ref(self) -> ImageRef:
        return ImageRef(BUCKET, self.key, self.etag or "", 10, self.version_id, f"{self.n:016X}", self.time)


@dataclass
class World:
    """The S3 truth (versions per key), the events not yet delivered, and what the pipeline has been told."""

    pipeline: Pipeline
    versions: dict[str, list[Event]] = field(default_factory=lambda: {key: [] for key in KEYS})
    undelivered: list[Event] = field(default_factory=list)
    delivered: list[Event] = field(default_factory=list)
    known: dict[str, list[tuple[VersionStamp, str | None]]] = field(default_factory=lambda: {key: [] for key in KEYS})
    manifests: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)  # (batch id, lines) in order
    erasures: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    clock: int = 0

    def tick(self) -> int:
        """The next write's second. 5 s apart: a listing (no version id) tells two writes of the same bytes apart
        only beyond lambdas.identity.LISTING_SKEW_SECONDS."""
        self.clock += 5
        return self.clock


class ListingS3:
    """The pipeline's S3 client whose ListObjectsV2 answers from the model (the live version of each key)."""

    def __init__(self, real: Any, world: World) -> None:
        self.real, self.world = real, world

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        contents = []
        for key in KEYS:
            versions = self.world.versions[key]
            if versions and versions[-1].etag is not None:
                live = versions[-1]
                contents.append(
                    {
                        "Key": key,
                        "ETag": f'"{live.etag}"',
                        "Size": 10,
                        "LastModified": T0 + dt.timedelta(seconds=live.n),
                    }
                )
        return {"Contents": contents, "IsTruncated": False}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def new_world() -> World:
    name = f"prop-{next(_TABLES)}"
    create_table_named(name)
    settings_ = get_settings().model_copy(update={"manifest_table": name, "batch_max_wait_seconds": 0})
    pipeline = Pipeline(
        settings_, ManifestTable(name, aws.client("dynamodb")), aws.client("s3"), aws.client("emr-serverless")
    )
    world = World(pipeline)
    pipeline.s3 = ListingS3(aws.client("s3"), world)
    pipeline.sleep = lambda seconds: None
    pipeline.clock = lambda: T0 + dt.timedelta(seconds=world.clock, hours=1)
    return world


def create_table_named(name: str) -> None:
    import tests.helpers.aws_fixtures as fixtures

    original = fixtures.TABLE
    fixtures.TABLE = name
    try:
        create_table(aws.client("dynamodb"))
    finally:
        fixtures.TABLE = original


def deliver(world: World, event: Event) -> None:
    if event.etag is None:
        world.pipeline.remove(event.ref)
    else:
        world.pipeline.ingest(event.ref)
    world.known[event.key].append((event.stamp, event.etag))


def read_lines(key: str) -> list[dict[str, Any]]:
    try:
        body = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    except aws.client("s3").exceptions.NoSuchKey:
        return []
    return [json.loads(line) for line in body.splitlines()]


def line_stamp(line: dict[str, Any]) -> VersionStamp:
    return VersionStamp(
        line.get("sequencer"), line.get("event_time") or line.get("last_modified"), line.get("version_id")
    )


def same_version(known: tuple[VersionStamp, str | None], line: dict[str, Any]) -> bool:
    """A known event and a manifest line name the same version: same version id, or (one was listed, without a
    version id) the same bytes in the same second."""
    stamp, etag = known
    if stamp.version_id and line.get("version_id"):
        return stamp.version_id == line["version_id"]
    same_second = (stamp.time or "")[:19] == (line.get("event_time") or line.get("last_modified") or "")[:19]
    return same_second and f'"{etag}"' == line.get("etag")


def flush(world: World) -> None:
    for batch_id in world.pipeline.flush().sealed:
        lines = read_lines(f"manifests/{batch_id}.jsonl")
        # property 1: nothing the pipeline knew of the key when sealing is newer than a listed version
        for line in lines:
            newer = [
                k for k in world.known[line["key"]] if is_newer(k[0], line_stamp(line)) and not same_version(k, line)
            ]
            assert newer == [], (batch_id, line, newer)
        world.manifests.append((batch_id, lines))
        world.erasures += [(batch_id, e) for e in read_lines(f"manifests/{batch_id}.erase.jsonl")]


def succeed(world: World) -> None:
    slot = world.pipeline.table.slot()
    batch = world.pipeline.table.batch(slot.holder) if slot.holder else None
    if batch is not None and batch.job_run_id:
        world.pipeline.handle_job_state(
            application_id=world.pipeline.settings.emr_application_id, job_run_id=batch.job_run_id, state="SUCCESS"
        )


OPS = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.sampled_from(("A", "B"))),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.just("")),
    st.tuples(st.just("deliver"), st.integers(0, 7), st.just("")),
    st.tuples(st.just("duplicate"), st.integers(0, 7), st.just("")),
    st.tuples(st.just("list"), st.just(""), st.just("")),
    st.tuples(st.just("flush"), st.just(""), st.just("")),
    st.tuples(st.just("succeed"), st.just(""), st.just("")),
)


@pytest.mark.usefixtures("moto_aws")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=9))
def test_any_interleaving_seals_only_newest_versions_and_ends_exact(ops: list[tuple[str, Any, str]]) -> None:
    # GIVEN a fresh manifest table and a model of the bucket
    world = new_world()
    # WHEN the operations run (uploads and deletes become events delivered later, in any order, maybe twice)
    for op, arg, body in ops:
        if op in ("put", "delete"):
            n = world.tick()
            event = Event(arg, n, f"{'v' if op == 'put' else 'dm'}{n}", f"etag-{body}" if op == "put" else None)
            world.versions[arg].append(event)
            world.undelivered.append(event)
        elif op == "deliver" and world.undelivered:
            event = world.undelivered.pop(arg % len(world.undelivered))
            world.delivered.append(event)
            deliver(world, event)
        elif op == "duplicate" and world.delivered:
            deliver(world, world.delivered[arg % len(world.delivered)])
        elif op == "list":
            world.pipeline.backfill()
            for key in KEYS:
                versions = world.versions[key]
                if versions and versions[-1].etag is not None:
                    world.known[key].append((VersionStamp(None, versions[-1].time, None), versions[-1].etag))
        elif op == "flush":
            flush(world)
        elif op == "succeed":
            succeed(world)
    # AND every remaining event is delivered, job runs end, everything is flushed
    for event in world.undelivered:
        deliver(world, event)
    for _ in range(3):
        succeed(world)
        flush(world)
    # THEN nothing is pending, the newest version of each live key is in exactly one manifest
    assert world.pipeline.table.counts().pending == 0
    for key in KEYS:
        versions = world.versions[key]
        if not versions:
            continue
        newest = versions[-1]
        lines = [(b, line) for b, ls in world.manifests for line in ls if line["key"] == key]
        if newest.etag is not None:
            hits = [
                b
                for b, line in lines
                if line["version_id"] == newest.version_id
                or (
                    line["version_id"] is None
                    and line["etag"] == f'"{newest.etag}"'
                    and (line["last_modified"] or "")[:19] == newest.time[:19]
                )
            ]
            assert len(hits) == 1, (key, newest, lines)
        elif lines:
            # AND a deleted key that was in a manifest gets an erasure line from a later batch
            last_in_manifest = max(b for b, _ in lines)
            erased = [b for b, e in world.erasures if e["image_uri"] == f"s3://{BUCKET}/{key}" and b > last_in_manifest]
            assert erased, (key, lines, world.erasures)
