"""``fruits status``: pending age, batches by state, the running job run, quarantine and lake row counts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from fruits.cli.main import main
from lambdas.config import get_settings
from tests.helpers.aws_fixtures import Obj
from tests.helpers.manifest import JobRunWatch, ingest_objects, send_job_state, table


def test_status_shows_what_an_operator_asks_first(
    moto_aws, events_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN threshold 3 and MAX_ATTEMPTS 1: 7 images → batch 1 fails once (quarantined), batch 2 runs, 1 pending;
    # and a local lake whose rejects table holds 2 rows
    from spark_jobs.lakehouse import tables

    lake = tmp_path / "lake"
    for name, value in {"BATCH_THRESHOLD": "3", "BATCH_MAX_IMAGES": "3", "MAX_ATTEMPTS": "1",
                        "LAKE_URI": str(lake)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    JobRunWatch().install()
    ingest_objects(events_dir, [Obj(f"images/Test/Fig/{i}.jpg", f"{i:032x}", 9) for i in range(7)])
    first, second = table().all_batches()[:2]
    send_job_state(events_dir, "FAILED", first["job_run_id"])
    tables.reset_catalogs()
    rows = pa.table({"image_uri": ["a.jpg", "b.jpg"], "reason": ["empty", "truncated"], "batch_id": ["m1", "m1"],
                     "model_id": ["m", "m"]})  # fmt: skip
    tables.replace_batch_rows(tables.Lake.at(str(lake)), "rejects", rows, batch_id="m1", model_id="m")
    capsys.readouterr()

    # WHEN status runs with --json
    assert main(["status", "--json"]) == 0
    snapshot = json.loads(capsys.readouterr().out)

    # THEN it shows the pending count and the oldest pending image with its age
    assert snapshot["pending"] == 1
    assert snapshot["oldest_pending"]["key"] == "images/Test/Fig/6.jpg" and snapshot["oldest_pending"]["age_s"] >= 0
    # and batches by state, the running job run of batch 2 with its attempt and age, batch 1 quarantined
    assert snapshot["batches_by_status"] == {"QUARANTINED": 1, "RUNNING": 1}
    running = table().get_batch(second["batch_id"])
    assert snapshot["running"]["batch_id"] == second["batch_id"]
    assert snapshot["running"]["job_run_id"] == running["job_run_id"] and snapshot["running"]["attempt"] == 1
    assert snapshot["running"]["age_s"] >= 0
    assert [b["batch_id"] for b in snapshot["quarantined"]] == [first["batch_id"]]
    # and the lake's row counts
    assert snapshot["lake"]["tables"] == {"features": 0, "rejects": 2, "batches": 0}

    # WHEN status prints tables
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    # THEN the same facts are there for a person
    assert "pending images: 1 (oldest recorded" in out
    assert f"job run {running['job_run_id']} for batch {second['batch_id']}" in out
    assert f"quarantined: {first['batch_id']}" in out and "rejects 2 rows" in out


def test_an_unreachable_lake_does_not_hide_the_manifest(
    moto_aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a lake on S3 with no catalog named (the lake cannot be read)
    monkeypatch.setenv("LAKE_URI", "s3://nowhere/lake")
    get_settings.cache_clear()
    # WHEN status runs THEN it still shows the manifest, and the lake's problem on one line
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "pending images: 0" in out and "running: no job run" in out
    assert "lake s3://nowhere/lake: not reachable" in out


def test_status_shows_job_runs_with_their_batches(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN threshold 3: a first batch ran alone, then one job run took the 3 batches sealed behind it (issue 19)
    for name, value in {"BATCH_THRESHOLD": "3", "BATCH_MAX_IMAGES": "3"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    watch = JobRunWatch().install()
    ingest_objects(events_dir, [Obj(f"images/Test/Fig/{i}.jpg", f"{i:032x}", 9) for i in range(12)])
    first, *waiting = (b["batch_id"] for b in table().all_batches())
    send_job_state(events_dir, "SUCCESS", watch.job_run_ids[0])
    job_run_id = watch.job_run_ids[-1]
    capsys.readouterr()

    # WHEN status runs with --json
    assert main(["status", "--json", "--no-lake"]) == 0
    snapshot = json.loads(capsys.readouterr().out)

    # THEN the running job run names its 3 batches and 9 images, and the runs list both job runs with their batches
    running = snapshot["running"]
    assert (running["job_run_id"], running["batch_id"], running["batch_ids"], running["images"]) == (
        job_run_id, waiting[0], waiting, 9
    )  # fmt: skip
    assert [(r["job_run_id"], r["state"], r["batch_ids"], r["images"]) for r in snapshot["runs"]] == [
        (watch.job_run_ids[0], "SUCCESS", [first], 3),
        (job_run_id, "SUBMITTED", waiting, 9),
    ]

    # WHEN status prints tables THEN the running line and the job runs table show the run's batches
    assert main(["status", "--no-lake"]) == 0
    out = capsys.readouterr().out
    assert f"job run {job_run_id} for batch {waiting[0]} + 2 more ({waiting[1]}, {waiting[2]}), 9 images" in out
    assert all(batch_id in out for batch_id in waiting)
