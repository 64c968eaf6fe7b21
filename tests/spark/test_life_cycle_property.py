"""Property test of the job's commit (issue 18): any order of uploads, overwrites, deletes, erasure requests, batch
runs, re-runs of old batches and late runs leaves one row per live key with its newest content and an exact PCA.

The commit part of the job (:func:`spark_jobs.job.commit_batch`) is driven with synthetic feature vectors (no Spark,
no model), so hundreds of random histories run in about a minute. The oracle: a key's row is the newest version
among those of the batch runs so far, unless it could not be decoded (one version in five: a rejects row) or an
erasure applied so far is not older than it
(docs/contracts.md "Version order"); the PCA state equals a batch PCA of the rows at rest.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdas.contracts import VersionStamp, is_newer
from spark_jobs.featurize.models import ModelSpec
from spark_jobs.featurize.one_pass import FEATURES_ARROW_SCHEMA, REJECTS_ARROW_SCHEMA, BatchFeatures
from spark_jobs.job import JobConfig, commit_batch, commit_run
from spark_jobs.lakehouse import erasure, tables
from spark_jobs.manifest import merge_manifests, parse_manifest
from spark_jobs.pca import versions as pca
from spark_jobs.pca.stats import SufficientStats

DIM = 6  # feature vector length of the synthetic model (the commit path does not depend on 2,048)
K = 3
KEYS = ["s3://data/images/Kiwi/a#1.jpg", "s3://data/images/Kiwi/b?.jpg", "s3://data/images/Lemon/c d.jpg"]
SPEC = ModelSpec("projection", image_size=8, seed=7)
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Version:
    """One S3 object version: its key, number (its vector's seed), event second and sequencer."""

    key: str
    number: int
    second: int

    @property
    def time(self) -> dt.datetime:
        return EPOCH + dt.timedelta(seconds=self.second)

    def stamp(self) -> VersionStamp:
        return VersionStamp(f"{self.second:016X}", self.time.isoformat(), f"v{self.number}")

    def vector(self) -> np.ndarray:
        return np.random.default_rng(self.number).normal(size=DIM).astype(np.float32)

    @property
    def corrupt(self) -> bool:
        """One version in five cannot be decoded (a rejects row): it is still the key's newest version."""
        return self.second % 5 == 4


@dataclass
class World:
    """The bucket's history and what the lake must hold (the oracle)."""

    root: Path
    clock: int = 0
    versions: dict[str, list[Version]] = field(default_factory=dict)
    queued: list[dict] = field(default_factory=list)  # erase lines of deletes not sealed yet
    sealed: list[tuple[str, list[Version], list[dict]]] = field(default_factory=list)
    run_versions: dict[str, list[Version]] = field(default_factory=dict)  # versions of batch runs so far
    applied: dict[str, list[VersionStamp]] = field(default_factory=dict)  # erasures applied so far

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    @property
    def lake(self) -> str:
        return str(self.root / "lake")

    def upload(self, key: str) -> None:
        self.versions.setdefault(key, []).append(Version(key, self.tick() * 10 + KEYS.index(key), self.clock))

    def delete(self, key: str) -> None:
        second = self.tick()
        self.queued.append({"image_uri": key, "sequencer": f"{second:016X}",
                            "time": (EPOCH + dt.timedelta(seconds=second)).isoformat(), "version_id": None,
                            "reason": "deleted"})

    def seal(self, picks: list[tuple[int, float, bool]]) -> None:
        """A batch of one version per picked key (any version, even an old one) and the queued erasures."""
        chosen, listed = [], set()
        for index, where, by_listing in picks:
            versions = self.versions.get(KEYS[index % len(KEYS)])
            if versions and all(v.key != versions[0].key for v in chosen):
                chosen.append(versions[min(int(where * len(versions)), len(versions) - 1)])
                if by_listing:
                    listed.add(chosen[-1])
        if not chosen and not self.queued:
            return
        batch_id = f"b{len(self.sealed):06d}"
        manifest = self.root / f"{batch_id}.jsonl"
        lines = []
        for v in chosen:
            stamp = v.stamp()
            event = v not in listed
            lines.append({"image_uri": v.key, "version_id": stamp.version_id, "label": "x", "size": 1,
                          "event_time": stamp.time if event else None, "sequencer": stamp.sequencer if event else None,
                          "last_modified": None if event else v.time.replace(microsecond=0).isoformat()})
        manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
        if self.queued:
            (self.root / f"{batch_id}.erase.jsonl").write_text("".join(json.dumps(e) + "\n" for e in self.queued))
        self.sealed.append((batch_id, chosen, list(self.queued)))
        self.queued = []

    def run(self, which: int) -> None:
        """Run (or re-run) sealed batch ``which``: the job's commit over synthetic feature vectors."""
        if not self.sealed:
            return
        batch_id, chosen, erase_lines = self.sealed[which % len(self.sealed)]
        manifest = self.root / f"{batch_id}.jsonl"
        records = parse_manifest(manifest.read_bytes())
        commit_batch(JobConfig(str(manifest), self.lake, batch_id, "projection:7", K, 8, 4), SPEC, "numpy",
                     synthetic_features(chosen), records)
        self.ran(chosen, erase_lines)

    def run_group(self, first: int, count: int) -> None:
        """One job run of ``count`` sealed batches from ``first`` (seal order, wrapping, each once): the manifests
        merged (a key in two of them: its newest version, once), one commit (:func:`spark_jobs.job.commit_run`)."""
        if not self.sealed:
            return
        picked = sorted({(first + i) % len(self.sealed) for i in range(count)})
        group = [self.sealed[i] for i in picked]
        parsed = [(b, parse_manifest((self.root / f"{b}.jsonl").read_bytes())) for b, _, _ in group]
        merged = merge_manifests(parsed)
        version_of = {(b, v.key): v for b, chosen, _ in group for v in chosen}
        featurized = [version_of[(merged.owner[r["image_uri"]], r["image_uri"])] for r in merged.records]
        config = JobConfig.for_run([(b, str(self.root / f"{b}.jsonl")) for b, _, _ in group], self.lake,
                                   weights="projection:7", pca_k=K, image_size=8, infer_batch_size=4)
        commit_run(config, SPEC, "numpy", synthetic_features(featurized), parsed)
        for _, chosen, erase_lines in group:
            self.ran(chosen, erase_lines)

    def ran(self, chosen: list[Version], erase_lines: list[dict]) -> None:
        """The oracle's record of a committed batch: its versions and its erasure lines."""
        for v in chosen:
            self.run_versions.setdefault(v.key, []).append(v)
        for line in erase_lines:
            self.applied.setdefault(line["image_uri"], []).append(
                VersionStamp(line["sequencer"], line["time"], line["version_id"]))

    def erase_request(self, key: str) -> None:
        """``fruits erase URI`` at this moment of the history (its stamp: no sequencer, the request time)."""
        stamp = VersionStamp(None, (EPOCH + dt.timedelta(seconds=self.tick())).isoformat(), None)
        erasure.erase_images(self.lake, [key], stamps={key: stamp})
        self.applied.setdefault(key, []).append(stamp)

    def expected(self) -> dict[str, Version]:
        """Key -> the version the lake must hold (keys absent: no row)."""
        out = {}
        for key, versions in self.run_versions.items():
            newest = max(versions, key=lambda v: v.second)
            if not newest.corrupt and all(is_newer(newest.stamp(), e) for e in self.applied.get(key, ())):
                out[key] = newest
        return out


def synthetic_features(chosen: list[Version]) -> BatchFeatures:
    """What the executors would return for ``chosen``: a feature row per decodable version, a reject otherwise."""
    good = [v for v in chosen if not v.corrupt]
    x = np.stack([v.vector() for v in good]) if good else np.zeros((0, DIM), dtype=np.float32)
    features = pa.Table.from_pydict({
        "image_uri": [v.key for v in good], "label": ["x"] * len(good),
        "content_sha256": [f"sha-{v.number}" for v in good], "width": [8] * len(good),
        "height": [8] * len(good), "features": [list(row) for row in x],
    }, schema=FEATURES_ARROW_SCHEMA)
    bad = [v.key for v in chosen if v.corrupt]
    rejects = pa.Table.from_pydict({"image_uri": bad, "reason": ["corrupt"] * len(bad)}, schema=REJECTS_ARROW_SCHEMA)
    stats = SufficientStats.from_array(x.astype(np.float64)) if good else SufficientStats.empty(DIM)
    return BatchFeatures(features, rejects, stats, len(chosen))


OPS = st.one_of(
    st.tuples(st.just("upload"), st.integers(0, len(KEYS) - 1)),
    st.tuples(st.just("delete"), st.integers(0, len(KEYS) - 1)),
    st.tuples(st.just("seal"), st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.floats(0, 0.999),
                                                  st.booleans()), min_size=1, max_size=3)),
    st.tuples(st.just("run"), st.integers(0, 5)),
    st.tuples(st.just("erase"), st.integers(0, len(KEYS) - 1)),
)


SEAL = st.tuples(st.just("seal"), st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.floats(0, 0.999),
                                                     st.booleans()), min_size=1, max_size=3))
RUNS = st.tuples(st.just("runs"), st.tuples(st.integers(0, 5), st.integers(2, 4)))
RUN_OPS = st.one_of(OPS, SEAL, SEAL, RUNS, RUNS, RUNS)  # more seals and runs of several batches than OPS alone
UPLOAD_ALL = [("upload", index) for index in range(len(KEYS))]


def play(ops: list[tuple[str, Any]]) -> None:
    """Play a history on a new lake, then check the lake against the oracle (:meth:`World.expected`)."""
    with tempfile.TemporaryDirectory(prefix="i18j-prop-") as root:
        world = World(Path(root))
        ran = False
        try:
            for op, arg in ops:
                if op == "upload":
                    world.upload(KEYS[arg])
                elif op == "delete":
                    world.delete(KEYS[arg])
                elif op == "seal":
                    world.seal(arg)
                elif op == "run":
                    ran = ran or bool(world.sealed)
                    world.run(arg)
                elif op == "runs":
                    ran = ran or bool(world.sealed)
                    world.run_group(*arg)
                else:
                    world.erase_request(KEYS[arg])
            if not ran:
                return
            # THEN the lake holds exactly one row per live key, with its newest version's content
            lake = tables.Lake.at(world.lake)
            rows = tables.scan(lake, tables.FEATURES, model_id=SPEC.model_id).to_pylist()
            expected = world.expected()
            assert sorted(r["image_uri"] for r in rows) == sorted(expected), (ops, rows)
            for row in rows:
                version = expected[row["image_uri"]]
                assert row["content_sha256"] == f"sha-{version.number}", ops
                assert row["version_id"] == f"v{version.number}"
                np.testing.assert_array_equal(np.asarray(row["features"], dtype=np.float32), version.vector())
            # AND the PCA state equals a batch PCA of those rows (within 1e-9 relative)
            state = pca.load_version(world.lake, SPEC.model_id).state
            x = np.asarray([r["features"] for r in rows], dtype=np.float32).reshape(-1, DIM).astype(np.float64)
            batch_pca = SufficientStats.from_array(x) if rows else SufficientStats.empty(DIM)
            assert state.n == batch_pca.n, ops
            scale = max(1.0, float(np.abs(batch_pca.m2).max()) if rows else 1.0)
            np.testing.assert_allclose(state.mean, batch_pca.mean, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(state.m2, batch_pca.m2, rtol=1e-9, atol=1e-9 * scale)
        finally:
            tables.reset_catalogs()


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=3, max_size=12))
def test_any_history_leaves_one_row_per_live_key_with_its_newest_content_and_an_exact_pca(ops) -> None:
    # GIVEN a random history of uploads/overwrites, deletes, seals, batch runs and re-runs, erasure requests
    # WHEN the job commits each run of it  THEN (play) one row per live key, newest content, exact PCA
    play(ops)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(RUN_OPS, min_size=6, max_size=14))
def test_any_history_with_job_runs_of_several_batches_keeps_the_same_guarantees(ops) -> None:
    # GIVEN a random history as above where job runs also take several sealed batches at once (issue 19), regrouped
    # from run to run, a key possibly in two batches of a run at different versions, erasure lines in any of them
    # (every key uploaded first, so the first seals have versions to pick; a last run of up to 4 batches)
    # WHEN the job commits each run  THEN (play) one row per live key, newest content, exact PCA
    play([*UPLOAD_ALL, *ops, ("runs", (0, 4))])


# --- the defects of issue 18 one by one (the job side), on the same synthetic commit --------------------------------


def rows_of(world: World) -> dict[str, str]:
    """image_uri -> version_id of the model's current features rows (asserts one row per key)."""
    rows = tables.scan(tables.Lake.at(world.lake), tables.FEATURES, model_id=SPEC.model_id).to_pylist()
    uris = [r["image_uri"] for r in rows]
    assert len(uris) == len(set(uris)), uris
    return {r["image_uri"]: r["version_id"] for r in rows}


def report_of(world: World, batch_index: int) -> dict:
    from spark_jobs.lakehouse.reports import read_report

    return read_report(world.lake, world.sealed[batch_index][0])


def test_a_rerun_of_an_old_batch_does_not_resurrect_an_erased_photo(tmp_path: Path) -> None:
    # GIVEN key A featurized in batch 0, then deleted: the erasure travels with batch 1 and is applied
    world = World(tmp_path)
    world.upload(KEYS[0])
    world.seal([(0, 0.0, False)])
    world.run(0)
    world.delete(KEYS[0])
    world.seal([])
    world.run(1)
    assert rows_of(world) == {}
    # WHEN batch 0 is re-run (`fruits start-job --batch-id <old>`: its version is still readable in S3)
    world.run(0)
    # THEN the erased photo has no row, and the report says it was dropped as erased
    assert rows_of(world) == {}
    assert report_of(world, 0)["stale"] == {"images": 1, "by_reason": {"erased": 1}}
    assert report_of(world, 0)["counts"]["featurized"] == 0
    assert pca.load_version(world.lake, SPEC.model_id).state.n == 0
    # AND the same after a `fruits erase` request of a key featurized later
    world.upload(KEYS[1])
    world.seal([(1, 0.0, False)])
    world.run(2)
    world.erase_request(KEYS[1])
    world.run(2)
    assert rows_of(world) == {}


def test_a_rerun_of_an_old_batch_does_not_revert_an_overwrite(tmp_path: Path) -> None:
    # GIVEN key A at version 1 featurized in batch 0, then overwritten (version 2) and featurized in batch 1
    world = World(tmp_path)
    world.upload(KEYS[0])
    world.seal([(0, 0.0, False)])
    world.run(0)
    world.upload(KEYS[0])
    world.seal([(0, 0.99, False)])
    world.run(1)
    newest = world.versions[KEYS[0]][-1]
    assert rows_of(world) == {KEYS[0]: f"v{newest.number}"}
    # WHEN batch 0 is re-run, and a batch holding version 1 again runs late
    world.run(0)
    world.seal([(0, 0.0, False)])
    world.run(2)
    # THEN the key still has one row, the newer content, and the PCA counts that row only
    assert rows_of(world) == {KEYS[0]: f"v{newest.number}"}
    assert report_of(world, 2)["stale"] == {"images": 1, "by_reason": {"superseded": 1}}
    assert pca.load_version(world.lake, SPEC.model_id).state.n == 1


def test_a_reupload_after_an_erasure_is_featurized_and_a_rerun_of_the_erasure_keeps_it(tmp_path: Path) -> None:
    # GIVEN key A featurized, deleted (erasure applied by batch 1), then uploaded again (same key, newer version)
    world = World(tmp_path)
    world.upload(KEYS[0])
    world.seal([(0, 0.0, False)])
    world.run(0)
    world.delete(KEYS[0])
    world.seal([])
    world.run(1)
    world.upload(KEYS[0])
    world.seal([(0, 0.99, False)])
    # WHEN the re-upload's batch runs, then the erasure batch is re-run
    world.run(2)
    world.run(1)
    # THEN the re-upload has its row (its version is newer than the delete)
    assert rows_of(world) == {KEYS[0]: f"v{world.versions[KEYS[0]][-1].number}"}
    assert pca.load_version(world.lake, SPEC.model_id).state.n == 1


def test_a_listed_version_then_a_late_event_of_an_older_version_keeps_the_listed_one(tmp_path: Path) -> None:
    # GIVEN versions 1 and 2 of key A; version 2 found by listing (no sequencer) is featurized first
    world = World(tmp_path)
    world.upload(KEYS[0])
    world.upload(KEYS[0])
    world.seal([(0, 0.99, True)])
    world.run(0)
    # WHEN a batch holding the late event of version 1 (with a sequencer) runs
    world.seal([(0, 0.0, False)])
    world.run(1)
    # THEN version 2 keeps the row
    assert rows_of(world) == {KEYS[0]: f"v{world.versions[KEYS[0]][-1].number}"}


def test_the_erasure_ledger_survives_expire_and_still_blocks_a_rerun(tmp_path: Path) -> None:
    from fruits.lake_maintenance import expire_snapshots

    # GIVEN key A featurized in batch 0 and erased by a `fruits erase` request
    world = World(tmp_path)
    world.upload(KEYS[0])
    world.seal([(0, 0.0, False)])
    world.run(0)
    world.erase_request(KEYS[0])
    lake = tables.Lake.at(world.lake)
    before = tables.scan(lake, tables.ERASURES).to_pylist()
    assert [(r["image_uri"], r["scope"], r["reason"]) for r in before] == [(KEYS[0], "uri", "request")]
    # WHEN every snapshot but the current one is expired (retention 0 days)
    results = {r.table: r for r in expire_snapshots(lake, retention_days=0)}
    # THEN the ledger keeps its rows, and a re-run of batch 0 still drops the erased version
    assert tables.ERASURES in results
    assert tables.scan(lake, tables.ERASURES).to_pylist() == before
    world.run(0)
    assert rows_of(world) == {}


def test_a_prefix_erasure_blocks_a_late_run_of_any_key_under_it(tmp_path: Path) -> None:
    # GIVEN keys under images/Kiwi/ sealed in a batch that has not run yet
    world = World(tmp_path)
    world.upload(KEYS[0])
    world.upload(KEYS[2])
    world.seal([(0, 0.0, False), (2, 0.0, False)])
    # WHEN `fruits erase --prefix s3://data/images/Kiwi/` runs, then the batch runs late
    erasure.erase_images(world.lake, prefix="s3://data/images/Kiwi/")
    world.run(0)
    # THEN only the key outside the prefix has a row
    assert set(rows_of(world)) == {KEYS[2]}


def test_a_lake_written_before_the_stamps_keeps_working(tmp_path: Path) -> None:
    # GIVEN a features table created by older code (no version_id / last_modified columns), no erasures table
    from pyiceberg.schema import Schema

    world = World(tmp_path)
    lake = tables.Lake.at(world.lake)
    old_fields = [f for f in tables.FEATURES_SCHEMA.fields if f.name not in ("version_id", "last_modified")]
    catalog = tables.load_catalog(lake.catalog)
    catalog.create_namespace(lake.namespace)
    catalog.create_table((lake.namespace, tables.FEATURES), schema=Schema(*old_fields),
                         partition_spec=tables.SPECS[tables.FEATURES], location=f"{world.lake}/features")
    world.upload(KEYS[0])
    world.seal([(0, 0.0, False)])
    # WHEN a batch runs on it and the key is then erased
    world.run(0)
    assert rows_of(world) == {KEYS[0]: f"v{world.versions[KEYS[0]][0].number}"}
    world.erase_request(KEYS[0])
    # THEN the table gained the columns, and the erasure removed the row
    assert not tables.missing_columns(lake.table(tables.FEATURES, create=False), tables.FEATURES)
    assert rows_of(world) == {}


def test_an_overwrite_by_bytes_that_cannot_be_decoded_leaves_no_stale_row(tmp_path: Path) -> None:
    # GIVEN key A featurized at version 1, then overwritten by a file that cannot be decoded (version 2)
    world = World(tmp_path)
    world.upload(KEYS[0])
    world.seal([(0, 0.0, False)])
    world.run(0)
    while (world.clock + 1) % 5 != 4:
        world.tick()
    world.upload(KEYS[0])
    assert world.versions[KEYS[0]][-1].corrupt
    world.seal([(0, 0.99, False)])
    # WHEN its batch runs, then the old batch is re-run
    world.run(1)
    world.run(0)
    # THEN the key has no features row (its newest version is a rejects row), and the PCA counts nothing
    assert rows_of(world) == {}
    rejects = tables.scan(tables.Lake.at(world.lake), tables.REJECTS).to_pylist()
    assert [(r["image_uri"], r["version_id"]) for r in rejects] == [(KEYS[0], f"v{world.versions[KEYS[0]][-1].number}")]
    assert report_of(world, 0)["stale"] == {"images": 1, "by_reason": {"superseded": 1}}
    assert pca.load_version(world.lake, SPEC.model_id).state.n == 0


def test_manifest_and_erasure_lines_give_each_version_its_stamp(tmp_path: Path) -> None:
    import pytest

    from spark_jobs.manifest import ManifestError, arrivals, read_erasures

    # GIVEN a manifest with an event-recorded image, a listed one and an old line without either
    records = parse_manifest(
        b'{"image_uri": "s3://b/images/a#1.jpg", "version_id": "v1", "event_time": "2026-11-25T02:00:00.123Z",'
        b' "sequencer": "0A"}\n'
        b'{"image_uri": "s3://b/images/b.jpg", "version_id": "v2", "last_modified": "2026-11-25T03:00:00+00:00"}\n'
        b'{"image_uri": "s3://b/images/c.jpg"}\n')
    # WHEN their stamps are read THEN event time (else LastModified), sequencer and version id form them
    stamps = {uri: a.stamp for uri, a in arrivals(records).items()}
    assert stamps["s3://b/images/a#1.jpg"] == VersionStamp("0A", "2026-11-25T02:00:00.123000+00:00", "v1")
    assert stamps["s3://b/images/b.jpg"] == VersionStamp(None, "2026-11-25T03:00:00+00:00", "v2")
    assert stamps["s3://b/images/c.jpg"] == VersionStamp()
    with pytest.raises(ManifestError, match="last_modified"):
        parse_manifest(b'{"image_uri": "s3://b/x.jpg", "last_modified": "yesterday"}\n')
    # GIVEN an erasure list with a stamped delete, a request and a line written before lines carried stamps
    manifest = tmp_path / "b1.jsonl"
    (tmp_path / "b1.erase.jsonl").write_text(
        '{"image_uri": "s3://b/images/a#1.jpg", "sequencer": "0B", "time": "2026-11-25T04:00:00Z", '
        '"version_id": "v1", "reason": "deleted"}\n'
        '{"image_uri": "s3://b/images/b.jpg", "sequencer": null, "time": "2026-11-25T05:00:00Z", "reason": "request"}\n'
        '{"image_uri": "s3://b/images/c.jpg", "sequencer": null, "reason": "deleted"}\n')
    # WHEN read THEN each line has its stamp; the old line gets the job's start time
    erased = read_erasures(str(manifest), default_time="2026-12-01T00:00:00+00:00")
    assert [(e.image_uri, e.stamp, e.reason) for e in erased] == [
        ("s3://b/images/a#1.jpg", VersionStamp("0B", "2026-11-25T04:00:00+00:00", "v1"), "deleted"),
        ("s3://b/images/b.jpg", VersionStamp(None, "2026-11-25T05:00:00+00:00", None), "request"),
        ("s3://b/images/c.jpg", VersionStamp(None, "2026-12-01T00:00:00+00:00", None), "deleted"),
    ]


def test_an_erasure_recorded_while_the_job_commits_still_removes_the_row(tmp_path: Path, monkeypatch) -> None:
    from spark_jobs.lakehouse import liveness

    # GIVEN a sealed batch of key A, and a `fruits erase` of A racing the job: the job's liveness check ran before
    # the erasure was recorded, the erasure's row delete before the job's features commit (so it found no row)
    world = World(tmp_path)
    world.upload(KEYS[0])
    world.seal([(0, 0.0, False)])
    stamp = VersionStamp(None, (EPOCH + dt.timedelta(seconds=world.tick())).isoformat(), None)
    erasure.erase_images(world.lake, [KEYS[0]], stamps={KEYS[0]: stamp})
    monkeypatch.setattr(liveness, "stale_versions", lambda lake, stamps: {})
    # WHEN the job commits
    world.run(0)
    # THEN the post-commit ledger check erases the row it just wrote, and the PCA counts nothing
    assert rows_of(world) == {}
    assert report_of(world, 0)["erased"]["late"] == 1
    assert pca.load_version(world.lake, SPEC.model_id).state.n == 0
