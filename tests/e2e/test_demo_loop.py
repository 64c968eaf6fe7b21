"""End to end: the `fruits demo` loop on real photos — moto + real handlers + real Spark entry point.

GIVEN 60 real Fruits-360 photos spread over the classes plus one corrupt file, threshold 20, 2 waves,
WHEN the demo loop runs (upload → SQS → ingest → manifest → batches → job runs on local Spark → job_state),
THEN every photo is processed exactly once: 60 rows in lake/features, the corrupt file in lake/rejects with
its reason, batches of at least the threshold except the flushed remainder, the manifest all done.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from fruits.local.demo import DemoConfig, run_demo
from fruits.local.images import list_images
from tests.cdk.conftest import synthesized  # noqa: F401  (the synthesized stack: a fixture)
from tests.helpers.lambda_policy_audit import LocalNames, audit, record_handler_calls

pytestmark = pytest.mark.slow

N_PHOTOS = 60
THRESHOLD = 20


@pytest.fixture(scope="module")
def demo_handler_calls() -> dict:
    """Every AWS call the five handlers make during ``demo_run`` (filled by it), as IAM calls by handler
    (docs/iam-calls.md). Only that demo's: other tests of this module run demos of their own, on other resources."""
    return {}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, demo_handler_calls):
    # GIVEN a Training folder with 60 real photos (every class) and one text file named .jpg
    root = tmp_path_factory.mktemp("photos") / "Training"
    for photo in list_images(sample_dir / "Training", limit=N_PHOTOS):
        target = root / photo.parent.name / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
    corrupt = root / "Banana" / "corrupt_upload.jpg"
    corrupt.write_text("this is not a JPEG")
    lake = tmp_path_factory.mktemp("lake") / "lake"
    config = DemoConfig(
        images=root, lake=lake, waves=2, threshold=THRESHOLD, limit=None, weights="random", pca_k=8, master="local[2]"
    )
    # WHEN the whole loop runs
    with record_handler_calls() as calls:
        result = run_demo(config, Console(quiet=True))
    demo_handler_calls.update(calls)
    return config, result


def plain_scan(lake: Path, table: str) -> pa.Table:
    """A plain PyIceberg scan of a lake table (no project code): the SQLite catalog "fruits" the demo writes."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("fruits", uri=f"sqlite:///{lake / 'catalog.db'}")
    return catalog.load_table(("fruits_lake", table)).scan().to_arrow()


def test_every_photo_lands_exactly_once(demo_run) -> None:
    config, result = demo_run
    # THEN the upload, the manifest and the lake agree: 61 uploaded, 60 featurized once, 1 rejected
    assert result.uploaded == N_PHOTOS + 1
    assert result.recorded == N_PHOTOS + 1
    features = plain_scan(config.lake, "features")
    uris = features.column("image_uri").to_pylist()
    assert len(uris) == N_PHOTOS
    assert len(set(uris)) == N_PHOTOS
    assert all(uri.startswith("s3://") and "/images/Training/" in uri for uri in uris)
    assert set(features.column("model_id").to_pylist()) == {"resnet50-random0-224"}
    assert {len(v) for v in features.column("features").to_pylist()} == {2048}
    assert {len(v) for v in features.column("pca").to_pylist()} == {8}
    assert result.featurized == N_PHOTOS


def test_corrupt_file_is_rejected_with_reason(demo_run) -> None:
    config, result = demo_run
    rejects = plain_scan(config.lake, "rejects").to_pylist()
    assert len(rejects) == 1
    assert rejects[0]["image_uri"].endswith("/Banana/corrupt_upload.jpg")
    assert rejects[0]["reason"] == "not_an_image"
    assert result.rejected == 1


def test_batches_follow_the_threshold_and_the_flush(demo_run) -> None:
    config, result = demo_run
    reports = [json.loads(p.read_text()) for p in sorted((config.lake / "batches").glob("*.json"))]
    sizes = [r["counts"]["listed"] for r in reports]
    # every photo in exactly one batch; all but the flushed last batch reached the threshold
    assert sum(sizes) == N_PHOTOS + 1
    assert all(size >= THRESHOLD for size in sizes[:-1])
    assert len(reports) == len(result.batch_reports) == len({r["batch_id"] for r in reports})
    assert len(reports) == (N_PHOTOS + 1) // THRESHOLD + (1 if sizes[-1] < THRESHOLD else 0)
    assert all(run.state == "SUCCESS" for run in result.job_runs)
    # PCA versions increase by one per successful job run (a job run takes every sealed batch waiting and commits
    # one PCA version for all of them, issue 19): batches of one run share it, runs follow each other in seal order
    runs = [tuple(r["run"]["batch_ids"]) for r in reports]
    assert [b for run in dict.fromkeys(runs) for b in run] == [r["batch_id"] for r in reports]
    versions = {run: {r["pca_version"] for r in reports if tuple(r["run"]["batch_ids"]) == run} for run in runs}
    assert [v for v in versions.values()] == [{i} for i in range(1, len(versions) + 1)]
    assert len(versions) == len(result.job_runs)
    # AND the batches table has one row per batch run, and each batch's features are in at most 2 data files
    batches = plain_scan(config.lake, "batches")
    assert sorted(batches.column("batch_id").to_pylist()) == [r["batch_id"] for r in reports]
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("fruits", uri=f"sqlite:///{config.lake / 'catalog.db'}")
    files = catalog.load_table(("fruits_lake", "features")).inspect.data_files()
    per_batch = {}
    for path in files.column("file_path").to_pylist():
        ids = set(pq.ParquetFile(path.removeprefix("file://")).read(columns=["batch_id"]).column(0).to_pylist())
        for batch_id in ids:
            per_batch[batch_id] = per_batch.get(batch_id, 0) + 1
    assert set(per_batch) == {r["batch_id"] for r in reports if r["counts"]["featurized"]}
    assert max(per_batch.values()) <= 2


def test_manifest_ends_with_nothing_pending(demo_run) -> None:
    _, result = demo_run
    counts = result.manifest_counts
    assert counts.get("PENDING", 0) == 0
    assert counts.get("CLAIMED", 0) == 0
    assert counts.get("DONE", 0) == N_PHOTOS + 1


def test_report_png_is_written(demo_run) -> None:
    config, result = demo_run
    assert result.report_png == config.lake.resolve() / "report.png"
    assert result.report_png.stat().st_size > 10_000


def test_rows_carry_their_upload_event_and_the_summary_gives_time_to_feature(demo_run) -> None:
    config, result = demo_run
    # THEN every featurized row carries the S3 event time of its upload, before its commit (moto's S3 → SQS events
    # carry no sequencer, unlike S3's: the column stays null here; tests/spark/test_time_to_feature.py checks it)
    rows = plain_scan(config.lake, "features").to_pylist()
    assert all(r["event_time"] is not None for r in rows)
    assert all(r["event_time"] <= r["ingested_at"] for r in rows)
    # AND the demo's time-to-feature covers them, p50 <= p95 <= max
    ttf = result.time_to_feature
    assert ttf["images"] == N_PHOTOS and 0 < ttf["p50"] <= ttf["p95"] <= ttf["max"]
    # AND each batch report gives its own
    reports = [json.loads(p.read_text()) for p in sorted((config.lake / "batches").glob("*.json"))]
    assert sum(r["time_to_feature_seconds"]["images"] for r in reports) == N_PHOTOS


def test_a_poisson_stream_below_the_threshold_is_sealed_by_max_wait(sample_dir: Path, tmp_path: Path) -> None:
    # GIVEN 24 photos arriving at 8/s, a threshold never reached (100) and a max wait of 4 s
    config = DemoConfig(images=sample_dir / "Training", lake=tmp_path / "lake", limit=24, threshold=100,
                        weights="random", pca_k=4, master="local[2]", arrival_rate=8.0, max_wait=4,
                        tick_seconds=1.0, report=False)
    # WHEN the demo runs (no flush in this mode: only the tick's max-wait rule can seal)
    result = run_demo(config, Console(quiet=True))
    # THEN every photo is featurized once, in batches below the threshold
    assert result.uploaded == 24 and result.featurized == 24
    assert all(r["counts"]["listed"] < 100 for r in result.batch_reports)
    # AND p95 time-to-feature <= max wait + tick period + the longest job run (+ 5 s for ingest and polling)
    longest_run = max(run.seconds for run in result.job_runs)
    assert result.time_to_feature["images"] == 24
    assert result.time_to_feature["p95"] <= 4 + 1 + longest_run + 5


def test_every_lambda_call_of_the_demo_is_allowed_by_its_roles_synthesized_policy(
    demo_run, demo_handler_calls, synthesized  # noqa: F811
) -> None:
    # GIVEN the calls the handlers made while the demo ran, and the stack's names for the demo's resources
    application_ids = {c.resource.rsplit("/", 1)[1] for calls in demo_handler_calls.values() for c in calls
                       if c.action == "emr-serverless:StartJobRun"}
    assert len(application_ids) == 1 and {"ingest", "job_state"} <= set(demo_handler_calls)
    role_arn = "arn:aws:iam::123456789012:role/fruits-local-job-execution"
    prefix = "fruits-local"  # fruits.local.provision's default name
    names = LocalNames(f"{prefix}-data", f"{prefix}-manifest", f"{prefix}-ingest", f"{prefix}-job-state-dlq", role_arn,
                       application_ids.pop())
    # WHEN each is evaluated against its function role's synthesized policy / THEN none is denied
    denied, _ = audit(synthesized.resources, synthesized.built.stack, dict(demo_handler_calls), names)
    assert denied == []
