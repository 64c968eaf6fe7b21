"""Issue 19: one job run takes every sealed batch waiting (seal order, JOB_MAX_IMAGES, 99 batches at most), and the
job state events, retries, quarantine, re-driven starts and erasures hold for runs of several batches.

moto quirk (as in test_job_state): its job runs report SUCCESS at once and it ignores ``clientToken``; the tests drive
``job_state`` with the real-shaped EventBridge fixtures and watch every StartJobRun request.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdas import aws
from lambdas.config import get_settings, settings_from_env
from lambdas.dal import BatchStatus
from lambdas.dal.records import Batch
from lambdas.logic.job_request import MAX_RUN_BATCHES, build_start_job_run_request, plan_run
from lambdas.logic.keys import ImageRef
from lambdas.pipeline import JobStateAction, Pipeline, get_pipeline
from tests.helpers.aws_fixtures import BUCKET, Obj
from tests.helpers.manifest import JobRunWatch, ingest_objects, read_manifest, send_job_state, table

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


def images(n: int, start: int = 0) -> list[Obj]:
    return [Obj(f"images/Test/Lime/{i}_100.jpg", f"{i:032x}", 100 + i) for i in range(start, start + n)]


def run_batches(request: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``(batch id, manifest URI)`` pairs a StartJobRun request sends, in order."""
    args = request["jobDriver"]["sparkSubmit"]["entryPointArguments"]
    ids = [args[i + 1] for i, arg in enumerate(args) if arg == "--batch-id"]
    manifests = [args[i + 1] for i, arg in enumerate(args) if arg == "--manifest"]
    assert len(ids) == len(manifests)
    return list(zip(ids, manifests, strict=True))


def three_waiting(events_dir: Path) -> tuple[JobRunWatch, str, list[str]]:
    """A first batch of 5 running alone, then 3 batches of 5 sealed while it runs: (watch, its job run id, the 3)."""
    watch = JobRunWatch().install()
    ingest_objects(events_dir, images(5))
    [first] = table().all_batches()
    ingest_objects(events_dir, images(15, start=5))
    waiting = [b["batch_id"] for b in table().all_batches()[1:]]
    assert [table().get_batch(b)["status"] for b in waiting] == ["SEALED"] * 3
    return watch, first["job_run_id"], waiting


def emf(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]


def values(documents: list[dict[str, Any]], name: str) -> list[float]:
    return [v for document in documents for v in document.get(name, [])]


def test_three_sealed_batches_go_in_one_job_run_and_its_success_marks_them_all(
    small_batches, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a first batch running alone and 3 batches of 5 sealed behind it, metrics on
    watch, first_run, waiting = three_waiting(events_dir)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()

    # WHEN the first job run succeeds
    watch.finished(first_run)
    assert send_job_state(events_dir, "SUCCESS", first_run)["action"] == "succeeded"

    # THEN one job run takes the 3 waiting batches: one request with 3 (manifest, batch id) pairs in seal order,
    # then the job's other arguments; clientToken and tags of the lead (the oldest), plus the batch count
    request = watch.requests[-1]
    assert run_batches(request) == [(b, f"s3://{BUCKET}/manifests/{b}.jsonl") for b in waiting]
    args = request["jobDriver"]["sparkSubmit"]["entryPointArguments"]
    assert args[12:] == ["--lake", f"s3://{BUCKET}/lake", "--weights", "random:7", "--pca-k", "16"]
    assert request["clientToken"] == f"{waiting[0]}-a1" and request["name"] == f"fruits-{waiting[0]}-a1"
    assert request["tags"] == {"project": "fruits", "batch_id": waiting[0], "attempt": "1", "batches": "3"}
    job_run_id = watch.job_run_ids[-1]
    for batch_id in waiting:
        batch = table().get_batch(batch_id)
        assert (batch["status"], batch["job_run_id"], batch["attempts"]) == ("RUNNING", job_run_id, 1)
        assert batch["run_lead"] == waiting[0] and batch["run_token"] == f"{waiting[0]}-a1"
    assert table().get_slot()["holder"] == waiting[0]
    assert table().get_job_run(job_run_id)["batch_ids"] == waiting
    # AND the start reported the run's 15 images and an empty backlog behind it
    started = emf(capsys)
    assert values(started, "ImagesPerJobRun") == [15.0] and values(started, "SealedBacklogImages") == [0.0]

    # WHEN that job run succeeds (the event delivered twice)
    watch.finished(job_run_id)
    result = send_job_state(events_dir, "SUCCESS", job_run_id)
    again = send_job_state(events_dir, "SUCCESS", job_run_id)

    # THEN every batch of the run SUCCEEDED, their 15 images DONE, the slot is free; the duplicate changed nothing
    assert (result["action"], result["batch_id"], result["batch_ids"]) == ("succeeded", waiting[0], waiting)
    assert again["action"] == "stale"
    assert [table().get_batch(b)["status"] for b in waiting] == ["SUCCEEDED"] * 3
    done = [image for b in waiting for image in table().batch_images(b)]
    assert len(done) == 15 and {image["status"] for image in done} == {"DONE"}
    assert table().get_slot().get("holder") is None and len(watch.requests) == 2
    # AND one time-to-feature value per image of the 3 batches, once; Fruits namespace, service dimension
    finished = emf(capsys)
    assert len(values(finished, "TimeToFeatureSeconds")) == 15
    [directive] = next(d for d in started if "ImagesPerJobRun" in d)["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Fruits" and directive["Dimensions"] == [["service"]]
    assert {"Name": "ImagesPerJobRun", "Unit": "Count"} in directive["Metrics"]
    assert {"Name": "SealedBacklogImages", "Unit": "Count"} in directive["Metrics"]
    # AND the status lists the run with its batches
    runs = get_pipeline().status()["runs"]
    assert [(r["job_run_id"], r["batch_ids"], r["images"], r["state"]) for r in runs] == [
        (first_run, [table().all_batches()[0]["batch_id"]], 5, "SUCCESS"),
        (job_run_id, waiting, 15, "SUCCESS"),
    ]


@pytest.mark.parametrize(
    ("cap", "want"),
    [
        (10, [[1, 2], [3]]),  # 2 batches of 5 fit in 10 images, the third waits for the next run
        (3, [[1], [2], [3]]),  # the oldest batch always goes, even alone above the cap
    ],
)
def test_a_job_run_takes_whole_batches_in_seal_order_up_to_job_max_images(
    small_batches, events_dir: Path, monkeypatch: pytest.MonkeyPatch, cap: int, want: list[list[int]]
) -> None:
    # GIVEN JOB_MAX_IMAGES = cap, a first batch running and 3 batches of 5 sealed behind it
    monkeypatch.setenv("JOB_MAX_IMAGES", str(cap))
    get_settings.cache_clear()
    watch, job_run_id, waiting = three_waiting(events_dir)

    # WHEN every job run succeeds in turn
    for _ in range(5):
        watch.finished(job_run_id)
        send_job_state(events_dir, "SUCCESS", job_run_id)
        if len(watch.job_run_ids) == 1 or table().get_slot().get("holder") is None:
            break
        job_run_id = watch.job_run_ids[-1]

    # THEN the runs after the first took whole batches in seal order, as many as the cap allows, one at a time
    runs = [[batch_id for batch_id, _ in run_batches(request)] for request in watch.requests[1:]]
    assert runs == [[waiting[i - 1] for i in run] for run in want]
    assert watch.overlaps == [] and watch.max_active == 1
    assert all(b["status"] == "SUCCEEDED" for b in table().all_batches())


def test_a_run_of_three_batches_that_fails_once_succeeds_on_retry_with_nothing_lost_or_doubled(
    small_batches, events_dir: Path
) -> None:
    # GIVEN a job run of the 3 waiting batches
    watch, first_run, waiting = three_waiting(events_dir)
    watch.finished(first_run)
    send_job_state(events_dir, "SUCCESS", first_run)
    failing = watch.job_run_ids[-1]

    # WHEN it fails
    watch.finished(failing)
    result = send_job_state(events_dir, "FAILED", failing)

    # THEN all 3 batches go back and are retried at once, together (the oldest sealed): attempt 2 of the same lead
    assert (result["action"], result["batch_ids"]) == ("retry", waiting)
    retry = watch.requests[-1]
    assert retry["clientToken"] == f"{waiting[0]}-a2" and run_batches(retry) == run_batches(watch.requests[-2])
    for batch_id in waiting:
        batch = table().get_batch(batch_id)
        assert (batch["status"], batch["attempts"], batch["failures"]) == ("RUNNING", 2, 1)
        assert batch["job_runs"][failing]["state"] == "FAILED"

    # WHEN the retry succeeds
    retried = watch.job_run_ids[-1]
    watch.finished(retried)
    assert send_job_state(events_dir, "SUCCESS", retried)["action"] == "succeeded"

    # THEN every batch SUCCEEDED, each image DONE in exactly one batch, each manifest still lists its 5 images
    assert [table().get_batch(b)["status"] for b in waiting] == ["SUCCEEDED"] * 3
    done = [image for b in waiting for image in table().batch_images(b)]
    assert len(done) == 15 == len({image["key"] for image in done}) and {i["status"] for i in done} == {"DONE"}
    keys = [line["key"] for b in waiting for line in read_manifest(table().get_batch(b))]
    assert sorted(keys) == sorted(obj.key for obj in images(15, start=5))
    assert watch.overlaps == [] and table().counter() == (0, 4)


def test_each_batch_of_a_run_is_quarantined_after_its_own_max_attempts(
    small_batches, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN MAX_ATTEMPTS=2, a batch that already failed once alone, then a job run of it and a fresh batch
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    watch = JobRunWatch().install()
    ingest_objects(events_dir, images(5))
    [old] = table().all_batches()
    ingest_objects(events_dir, images(5, start=5))
    fresh = table().all_batches()[1]["batch_id"]
    failing = old["job_run_id"]
    watch.finished(failing)
    send_job_state(events_dir, "FAILED", failing)
    together = watch.job_run_ids[-1]
    assert [b for b, _ in run_batches(watch.requests[-1])] == [old["batch_id"], fresh]

    # WHEN that job run fails
    watch.finished(together)
    result = send_job_state(events_dir, "FAILED", together)

    # THEN the batch at its 2nd failure is quarantined (images attached), the fresh one (1st failure) runs again alone
    assert (result["action"], result["batch_ids"]) == ("quarantined", [old["batch_id"], fresh])
    quarantined = table().get_batch(old["batch_id"])
    assert (quarantined["status"], quarantined["failures"]) == ("QUARANTINED", 2)
    assert {i["status"] for i in table().batch_images(old["batch_id"])} == {"CLAIMED"}
    retried = table().get_batch(fresh)
    assert (retried["status"], retried["failures"], retried["attempts"]) == ("RUNNING", 1, 2)
    assert watch.client_tokens[-1] == f"{fresh}-a2" and run_batches(watch.requests[-1])[0][0] == fresh


def test_duplicate_and_out_of_order_events_of_a_run_change_nothing(small_batches, events_dir: Path) -> None:
    # GIVEN a job run of the 3 waiting batches that failed, and its retry running
    watch, first_run, waiting = three_waiting(events_dir)
    send_job_state(events_dir, "SUCCESS", first_run)
    failed = watch.job_run_ids[-1]
    send_job_state(events_dir, "FAILED", failed)
    retry = watch.job_run_ids[-1]
    before = [table().get_batch(b) for b in waiting]

    # WHEN the FAILED event comes again, then a late SUCCESS and a CANCELLED of the failed run (out of order)
    results = [send_job_state(events_dir, state, failed) for state in ("FAILED", "SUCCESS", "CANCELLED")]

    # THEN each is stale: the retry still runs, failures counted once, no job run started
    assert [r["action"] for r in results] == ["stale"] * 3
    assert [table().get_batch(b) for b in waiting] == before
    assert len(watch.requests) == 3

    # WHEN the retry's SUCCESS comes, then a FAILED of the same job run after it
    assert send_job_state(events_dir, "SUCCESS", retry)["action"] == "succeeded"
    assert send_job_state(events_dir, "FAILED", retry)["action"] == "stale"

    # THEN the batches stay SUCCEEDED with 1 failure each, and nothing else starts
    for batch_id in waiting:
        batch = table().get_batch(batch_id)
        assert (batch["status"], batch["failures"], batch["attempts"]) == ("SUCCEEDED", 1, 2)
    assert len(watch.requests) == 3 and table().get_slot().get("holder") is None


def at(pipeline: Pipeline, seconds: float) -> None:
    """Set the pipeline's injected clock (timezone-aware) to T0 + ``seconds``."""
    now = T0 + dt.timedelta(seconds=seconds)
    pipeline.clock = lambda: now


def test_a_deferred_start_re_drives_the_same_batches_with_the_same_client_token(
    small_batches, events_dir: Path
) -> None:
    # GIVEN 3 batches waiting behind a running one, and EMR Serverless refusing the next StartJobRun once
    pipeline = get_pipeline()
    at(pipeline, 0)
    watch, first_run, waiting = three_waiting(events_dir)
    refused: list[dict[str, Any]] = []

    def refuse_once(params: dict[str, Any], **_: Any) -> None:
        if not refused:
            refused.append(json.loads(json.dumps(params)))
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "StartJobRun")

    aws.client("emr-serverless").meta.events.register_first(
        "provide-client-params.emr-serverless.StartJobRun", refuse_once
    )
    # WHEN the first run succeeds: the next run (the 3 batches) is refused
    outcome = pipeline.handle_job_state(
        application_id=get_settings().emr_application_id, job_run_id=first_run, state="SUCCESS"
    )
    # THEN the run keeps the slot: its 3 batches STARTING with attempt 1, the lead records the error, not a failure
    assert outcome.start_failures == 1 and outcome.started == []
    assert [b for b, _ in run_batches(refused[0])] == waiting
    for batch_id in waiting:
        batch = table().get_batch(batch_id)
        assert (batch["status"], batch["attempts"], batch["failures"]) == ("STARTING", 1, 0)
    assert table().get_slot()["holder"] == waiting[0] and table().get_batch(waiting[0])["start_errors"] == 1
    # WHEN more images seal a 4th batch meanwhile, then the tick runs once the backoff (30 s) passed
    at(pipeline, 10)
    ingest_objects(events_dir, images(5, start=20))
    at(pipeline, 31)
    tick = pipeline.tick()
    # THEN it re-drives exactly the refused request (same batches, same clientToken); the 4th batch waits
    assert len(tick.started) == 1 and watch.requests[-1] == refused[0]
    assert tick.started[0].batch_ids == waiting and tick.started[0].images == 15
    assert tick.sealed_backlog_images == 5
    for batch_id in waiting:
        batch = table().get_batch(batch_id)
        assert (batch["status"], batch["attempts"], batch["job_run_id"]) == ("RUNNING", 1, watch.job_run_ids[-1])
    assert table().all_batches()[-1]["status"] == "SEALED"


def test_a_run_started_by_a_crashed_starter_is_adopted_from_its_tags(small_batches, events_dir: Path) -> None:
    # GIVEN 3 batches waiting, and a starter that dies right after StartJobRun returned (nothing recorded)
    _, first_run, waiting = three_waiting(events_dir)
    started: list[str] = []

    class Crash(Exception):
        """The Lambda dying between StartJobRun and recording its job run."""

    def crash_after(parsed: dict[str, Any], **_: Any) -> None:
        if not started:
            started.append(parsed["jobRunId"])
            raise Crash()

    aws.client("emr-serverless").meta.events.register_first("after-call.emr-serverless.StartJobRun", crash_after)
    pipeline = get_pipeline()
    app = get_settings().emr_application_id
    with pytest.raises(Crash):
        pipeline.handle_job_state(application_id=app, job_run_id=first_run, state="SUCCESS")
    assert [table().get_batch(b)["status"] for b in waiting] == ["STARTING"] * 3

    # WHEN the job run's SUCCESS event arrives (its id unknown to the table)
    outcome = pipeline.handle_job_state(application_id=app, job_run_id=started[0], state="SUCCESS")

    # THEN the run is found from its tags (lead, attempt) and all 3 batches succeed with their images
    assert outcome.action is JobStateAction.SUCCEEDED and outcome.batch_ids == waiting
    assert [table().get_batch(b)["status"] for b in waiting] == ["SUCCEEDED"] * 3
    assert outcome.images_done == 15 and len(outcome.time_to_feature_seconds) == 15


def test_an_image_of_a_running_run_removed_goes_to_a_later_batch_as_an_erasure(small_batches, events_dir: Path) -> None:
    # GIVEN a job run of the 3 waiting batches running
    watch, first_run, waiting = three_waiting(events_dir)
    send_job_state(events_dir, "SUCCESS", first_run)
    running = watch.job_run_ids[-1]
    victim = table().batch_images(waiting[1])[0]
    pipeline = get_pipeline()

    # WHEN an image of the run's second batch is deleted, then 5 more images seal a new batch
    removal = pipeline.remove(ImageRef(BUCKET, victim["key"], "", 0, sequencer="FFFFFFFFFFFFFFFFFFFF"))
    ingest_objects(events_dir, images(5, start=40))

    # THEN the erasure is queued and carried by the new batch (sealed behind the slot), nothing else changed
    assert removal.erasure_queued
    later = table().all_batches()[-1]
    assert later["batch_id"] not in waiting and later["status"] == "SEALED"
    key = f"manifests/{later['batch_id']}.erase.jsonl"
    lines = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    assert [json.loads(line)["image_uri"] for line in lines] == [f"s3://{BUCKET}/{victim['key']}"]
    assert [table().get_batch(b)["status"] for b in waiting] == ["RUNNING"] * 3

    # WHEN the run succeeds
    assert send_job_state(events_dir, "SUCCESS", running)["action"] == "succeeded"

    # THEN its live images are DONE (the removed one keeps its fate), and the next run carries the erasure's batch
    done = [i for b in waiting for i in table().batch_images(b)]
    assert {i["status"] for i in done if not i.get("fate")} == {"DONE"} and len(done) == 15
    assert [i.get("fate") for i in done if i["key"] == victim["key"]] == ["removed"]
    assert [b for b, _ in run_batches(watch.requests[-1])] == [later["batch_id"]]
    assert table().get_batch(later["batch_id"])["status"] == "RUNNING"


def test_a_run_of_one_batch_sends_the_request_of_a_job_run_before_runs_took_several() -> None:
    # GIVEN the settings of a deployment
    env = {
        "DATA_BUCKET": "fruits-data",
        "MANIFEST_TABLE": "fruits-manifest",
        "EMR_APPLICATION_ID": "app",
        "JOB_ENTRY_POINT": "s3://fruits-data/code/main.py",
        "EMR_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/r",
    }
    settings = settings_from_env(env)
    # WHEN the request of a run of one batch, and of three, are built
    one = build_start_job_run_request(settings, batch_id="b000001-aa", attempt=1, manifest_uri="s3://m1")
    three = build_start_job_run_request(
        settings, batch_id="b000001-aa", attempt=1, manifest_uri="s3://m1", more=[("b2", "s3://m2"), ("b3", "s3://m3")]
    )
    # THEN one batch: exactly the arguments and tags of a job run before issue 19
    assert one["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "--manifest", "s3://m1", "--lake", "s3://fruits-data/lake", "--batch-id", "b000001-aa",
        "--weights", "imagenet", "--pca-k", "150",
    ]  # fmt: skip
    assert one["tags"] == {"project": "fruits", "batch_id": "b000001-aa", "attempt": "1"}
    # AND three: repeated (manifest, batch id) pairs in order, then the same arguments; the lead's token
    assert three["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "--manifest", "s3://m1", "--batch-id", "b000001-aa", "--manifest", "s3://m2", "--batch-id", "b2",
        "--manifest", "s3://m3", "--batch-id", "b3", "--lake", "s3://fruits-data/lake",
        "--weights", "imagenet", "--pca-k", "150",
    ]  # fmt: skip
    assert three["clientToken"] == one["clientToken"] == "b000001-aa-a1" and three["tags"]["batches"] == "3"


def test_plan_run_takes_a_seal_order_prefix_within_the_image_and_batch_caps() -> None:
    # GIVEN sealed batches (id, images) in seal order
    sealed = [("b1", 400), ("b2", 100), ("b3", 600), ("b4", 10)]
    # THEN the prefix that fits is taken, stopping at the first batch that does not fit (no overtaking)
    assert plan_run(sealed, max_images=1000) == ["b1", "b2"]
    assert plan_run(sealed, max_images=1110) == ["b1", "b2", "b3", "b4"]
    # AND the oldest batch always goes, even alone above the cap; nothing sealed gives no run
    assert plan_run([("b1", 5000), ("b2", 1)], max_images=1000) == ["b1"]
    assert plan_run([], max_images=1000) == []
    # AND at most MAX_RUN_BATCHES (99: a transaction moves one item per batch plus the slot, ≤ 100 items)
    many = [(f"b{i:03d}", 1) for i in range(150)]
    assert MAX_RUN_BATCHES == 99 and plan_run(many, max_images=10**6) == [b for b, _ in many[:99]]
    assert plan_run(many, max_images=10**6, max_batches=2) == ["b000", "b001"]
    with pytest.raises(ValueError):
        plan_run(sealed, max_images=0)


def test_a_run_of_more_batches_than_a_transaction_holds_is_refused(small_batches) -> None:
    # GIVEN 100 batch records WHEN the slot is asked for all of them THEN ValueError (nothing written)
    batches = [Batch(batch_id=f"b{i:06d}-00000000", status=BatchStatus.SEALED) for i in range(MAX_RUN_BATCHES + 1)]
    with pytest.raises(ValueError, match="1 to 99 batches"):
        table().acquire_run(batches, token="b000000-00000000-a1", now=T0)
    assert table().get_slot() == {}


def test_dry_run_shows_the_next_run_with_every_waiting_batch(small_batches, events_dir: Path) -> None:
    # GIVEN 3 batches waiting behind a running one
    watch, _, waiting = three_waiting(events_dir)
    # WHEN the next start's request is asked for (fruits start-job --dry-run)
    request = get_pipeline().dry_run_request()
    # THEN it is the run of all 3 with the lead's next token, and nothing was started
    assert [b for b, _ in run_batches(request)] == waiting and request["clientToken"] == f"{waiting[0]}-a1"
    assert len(watch.requests) == 1 and [table().get_batch(b)["status"] for b in waiting] == ["SEALED"] * 3
    # AND a dry run of one batch is the request of that batch alone
    assert [b for b, _ in run_batches(get_pipeline().dry_run_request(waiting[1]))] == [waiting[1]]


def test_the_tick_reports_the_images_waiting_in_sealed_batches_behind_the_slot(
    small_batches, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a job run holding the slot and 3 batches of 5 sealed behind it, metrics on
    from fruits.local.lambda_runtime import LocalLambdaContext
    from lambdas.handlers import tick

    three_waiting(events_dir)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()
    # WHEN the scheduled tick runs
    result = tick.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, LocalLambdaContext("tick"))
    # THEN it emits SealedBacklogImages = 15 (Count, Fruits namespace) and starts nothing (the slot is busy)
    documents = emf(capsys)
    assert values(documents, "SealedBacklogImages") == [15.0] and result["sealed_backlog_images"] == 15
    assert result["started"] == [] and values(documents, "ImagesPerJobRun") == []
    [directive] = next(d for d in documents if "SealedBacklogImages" in d)["_aws"]["CloudWatchMetrics"]
    assert (
        directive["Namespace"] == "Fruits" and {"Name": "SealedBacklogImages", "Unit": "Count"} in directive["Metrics"]
    )
