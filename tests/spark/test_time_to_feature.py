"""Rows carry the S3 event time and sequencer; batch reports give time-to-feature; older tables are evolved."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.schema import Schema

from spark_jobs.job import JobConfig, run_batch
from spark_jobs.lakehouse import tables
from spark_jobs.lakehouse.time_to_feature import time_to_feature
from spark_jobs.manifest import ManifestError, parse_manifest

from .conftest import FAST_WEIGHTS, copy_subset

T0 = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)


def test_time_to_feature_gives_percentiles_of_commit_minus_event_time() -> None:
    # GIVEN 20 images that arrived 1..20 s before the commit, and one found by listing (no event time)
    committed = T0 + dt.timedelta(seconds=20)
    events = [T0 + dt.timedelta(seconds=s) for s in range(20)] + [None]
    # WHEN summarised THEN p50/p95/max are numpy's linear percentiles of 1..20 s, the listed image left out
    assert time_to_feature(events, committed) == {"images": 20, "p50": 10.5, "p95": 19.05, "max": 20.0}
    # AND a batch without event times has no statistics
    assert time_to_feature([None], committed) == {"images": 0, "p50": None, "p95": None, "max": None}


def test_manifest_event_times_are_parsed_and_checked() -> None:
    # GIVEN a manifest line with an S3 event time ("Z" suffix) and sequencer, and one without
    lines = [{"image_uri": "s3://b/a.jpg", "event_time": "2026-11-25T02:00:00.123Z", "sequencer": "0A1B"},
             {"image_uri": "s3://b/b.jpg"}]
    records = parse_manifest("\n".join(map(json.dumps, lines)).encode())
    # THEN the time is an aware UTC datetime, absent fields are None
    assert records[0]["event_time"] == T0.replace(microsecond=123000) and records[0]["sequencer"] == "0A1B"
    assert records[1]["event_time"] is None and records[1]["sequencer"] is None
    # AND a malformed time is a clear manifest error naming the record
    with pytest.raises(ManifestError, match="record 1: event_time 'yesterday'"):
        parse_manifest(json.dumps({"image_uri": "s3://b/a.jpg", "event_time": "yesterday"}).encode())


def test_a_batch_run_stores_event_times_and_reports_time_to_feature(spark, sample_dir: Path, tmp_path) -> None:
    # GIVEN 6 photos announced by S3 10, 20, ... 60 s before the job, one of them without an event (listing)
    photos = copy_subset(sample_dir, tmp_path / "in", ["Banana", "Kiwi"], per_class=3)
    now = dt.datetime.now(dt.UTC)
    lines = []
    for i, p in enumerate(photos):
        event = None if i == 5 else (now - dt.timedelta(seconds=10 * (i + 1))).isoformat().replace("+00:00", "Z")
        lines.append({"image_uri": str(p), "label": p.parent.name, "event_time": event, "sequencer": f"{i:04X}"})
    manifest = tmp_path / "b1.jsonl"
    manifest.write_text("\n".join(map(json.dumps, lines)) + "\n")
    # WHEN the batch runs
    report = run_batch(spark, JobConfig(str(manifest), str(tmp_path / "lake"), "b1", FAST_WEIGHTS, 4, 224, 8))
    # THEN each row carries its event time and sequencer (null for the listed photo)
    rows = tables.scan(tables.Lake.at(str(tmp_path / "lake")), tables.FEATURES).to_pylist()
    by_uri = {r["image_uri"]: r for r in rows}
    assert len(rows) == 6
    for i, p in enumerate(photos):
        row = by_uri[str(p)]
        assert row["sequencer"] == f"{i:04X}"
        if i == 5:
            assert row["event_time"] is None
        else:
            expected = (row["ingested_at"] - row["event_time"]).total_seconds()
            assert expected == pytest.approx(10 * (i + 1), abs=120)  # the job's own run time is added
    # AND the report's time-to-feature is commit time minus event time over the 5 announced photos
    ttf = report["time_to_feature_seconds"]
    ingested = rows[0]["ingested_at"]
    worst = max((ingested - r["event_time"]).total_seconds() for r in rows if r["event_time"] is not None)
    assert ttf["images"] == 5 and ttf["max"] == pytest.approx(worst, abs=1e-3)
    assert 10 <= ttf["p50"] <= ttf["p95"] <= ttf["max"]


def test_a_features_table_written_before_the_event_columns_is_evolved_in_place(tmp_path) -> None:
    # GIVEN a lake whose features table was created without event_time/sequencer (nor the later version_id /
    # last_modified), holding one row
    lake = tables.Lake.at(str(tmp_path / "lake"))
    later = ["event_time", "sequencer", "version_id", "last_modified"]
    old_fields = [f for f in tables.FEATURES_SCHEMA.fields if f.name not in later]
    catalog = tables.load_catalog(lake.catalog)
    catalog.create_namespace_if_not_exists(lake.namespace)
    old = catalog.create_table((lake.namespace, tables.FEATURES), schema=Schema(*old_fields),
                               location=str(tmp_path / "lake" / "features"))
    row = {"image_uri": "s3://b/old.jpg", "model_id": "m", "batch_id": "b0", "ingested_at": T0,
           "features": [0.5] * 4, "pca": [0.1], "pca_version": 1}
    old.append(pa.Table.from_pylist([row], schema=Schema(*old_fields).as_arrow()))
    assert tables.missing_columns(old, tables.FEATURES) == later
    # WHEN a reader scans it THEN the new columns read null and the table is left as it is (readers never commit)
    read = tables.scan(lake, tables.FEATURES).to_pylist()
    assert len(read) == 1 and read[0]["event_time"] is None and read[0]["sequencer"] is None
    assert tables.scan(lake, tables.FEATURES, columns=("sequencer", "image_uri")).column_names == [
        "sequencer", "image_uri"]
    assert tables.missing_columns(lake.table(tables.FEATURES, create=False), tables.FEATURES) == later
    # WHEN a writer loads it
    table = lake.table(tables.FEATURES)
    # THEN the columns were added (a schema change, no data rewritten): the old row reads null in them
    assert tables.missing_columns(table, tables.FEATURES) == []
    current = tables.scan(lake, tables.FEATURES).to_pylist()
    assert len(current) == 1 and current[0]["event_time"] is None and current[0]["sequencer"] is None
    # AND new rows with event times are appended next to it
    new = dict(row, image_uri="s3://b/new.jpg", batch_id="b1", event_time=T0, sequencer="0A")
    tables.replace_batch_rows(lake, tables.FEATURES, pa.Table.from_pylist([new]), batch_id="b1", model_id="m")
    times = {r["image_uri"]: r["event_time"] for r in tables.scan(lake, tables.FEATURES).to_pylist()}
    assert times == {"s3://b/old.jpg": None, "s3://b/new.jpg": T0}


def _codecs(lake_dir: Path, table: str) -> dict[str, set[str]]:
    """Parquet codec of each column chunk's file, by data file name (every column chunk of every row group)."""
    import pyarrow.parquet as pq

    out: dict[str, set[str]] = {}
    for path in (lake_dir / table / "data").rglob("*.parquet"):
        meta = pq.ParquetFile(path).metadata
        out[path.name] = {meta.row_group(g).column(c).compression for g in range(meta.num_row_groups)
                          for c in range(meta.num_columns)}
    return out


def test_features_are_written_uncompressed_and_an_older_zstd_table_moves_to_it(tmp_path) -> None:
    # GIVEN a features table created with the earlier codec (zstd for every table), holding one row
    root = tmp_path / "lake"
    lake = tables.Lake.at(str(root))
    old = lake.table(tables.FEATURES)
    with old.transaction() as transaction:  # as tables were created before this change
        transaction.set_properties({tables.CODEC_PROPERTY: "zstd"})
    row = {"image_uri": "s3://b/old.jpg", "model_id": "m", "batch_id": "b0", "ingested_at": T0,
           "features": [0.5] * 4, "pca": [0.1], "pca_version": 1}
    old.append(tables.to_table_schema(pa.Table.from_pylist([row]), tables.FEATURES, old.schema()))
    (old_file,) = _codecs(root, tables.FEATURES)
    # WHEN a reader loads it THEN nothing is committed (readers never write)
    assert lake.table(tables.FEATURES, create=False).properties[tables.CODEC_PROPERTY] == "zstd"
    # WHEN a batch run writes its rows (writer access)
    new = dict(row, image_uri="s3://b/new.jpg", batch_id="b1")
    tables.replace_batch_rows(lake, tables.FEATURES, pa.Table.from_pylist([new]), batch_id="b1", model_id="m")
    # THEN the table's codec is uncompressed, the new file is written so and the old file keeps zstd
    assert lake.table(tables.FEATURES, create=False).properties[tables.CODEC_PROPERTY] == "uncompressed"
    codecs = _codecs(root, tables.FEATURES)
    assert codecs.pop(old_file) == {"ZSTD"}
    assert list(codecs.values()) == [{"UNCOMPRESSED"}]
    # AND both rows read back
    assert {r["image_uri"] for r in tables.scan(lake, tables.FEATURES).to_pylist()} == {"s3://b/old.jpg",
                                                                                          "s3://b/new.jpg"}
    # AND a table other than features keeps zstd when created
    assert lake.table(tables.REJECTS).properties[tables.CODEC_PROPERTY] == "zstd"
