"""reconcile and flush: lost S3 events, crashes between claim and job start, images that must not wait for ever."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas.config import get_settings
from lambdas.dal import ManifestTable
from lambdas.handlers import flush, ingest, reconcile
from tests.helpers.aws_fixtures import load_event, sqs_event, upload
from tests.helpers.manifest import JobRunWatch, ingest_objects, read_manifest, send_job_state, table


class SimulatedCrash(Exception):
    """Stands for the Lambda dying (timeout, OOM) at the injected point."""


def crash_first_start_job_run() -> list[str]:
    """Make the next StartJobRun call die before reaching the service; returns the crashed client tokens."""
    from lambdas import aws

    crashes: list[str] = []

    def crash_once(params: dict[str, Any], **_: Any) -> None:
        if not crashes:
            crashes.append(params["clientToken"])
            raise SimulatedCrash("Lambda died before StartJobRun returned")

    aws.client("emr-serverless").meta.events.register_first(
        "provide-client-params.emr-serverless.StartJobRun", crash_once
    )
    return crashes


def set_batches(monkeypatch: pytest.MonkeyPatch, threshold: int, max_images: int) -> None:
    monkeypatch.setenv("BATCH_THRESHOLD", str(threshold))
    monkeypatch.setenv("BATCH_MAX_IMAGES", str(max_images))
    get_settings.cache_clear()


def test_crash_between_claim_and_job_start_is_redriven_by_reconcile(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN threshold 5 and a crash injected in the first StartJobRun call (after the batch is claimed & sealed)
    set_batches(monkeypatch, 5, 20)
    watch = JobRunWatch().install()
    crashes = crash_first_start_job_run()
    objects = upload([f"images/Training/Cherry/{i}.jpg" for i in range(5)])

    # WHEN the 5 notifications arrive (the 5th seals the batch, then the invocation crashes)
    response = ingest.handler(sqs_event(events_dir, objects), LocalLambdaContext("ingest"))

    # THEN SQS will retry the crashed message; the batch holds the slot with no job run; nothing is lost
    assert len(response["batchItemFailures"]) == 1
    [batch] = table().all_batches()
    assert batch["status"] == "STARTING" and "job_run_id" not in batch
    assert table().get_slot()["holder"] == batch["batch_id"]
    assert watch.job_run_ids == []
    assert len(read_manifest(batch)) == 5

    # WHEN SQS redelivers the failed message (a duplicate now) and then reconcile runs
    ingest.handler(sqs_event(events_dir, objects[-1:]), LocalLambdaContext("ingest"))
    result = reconcile.handler(load_event(events_dir, "scheduled_event.json"), LocalLambdaContext("reconcile"))

    # THEN reconcile started the job run with the same attempt's client token (AWS would dedupe a second start)
    assert crashes == [f"{batch['batch_id']}-a1"]
    assert len(result["redriven"]) == 1 and result["missing_recorded"] == 0
    assert watch.client_tokens == [f"{batch['batch_id']}-a1"]  # the crashed call never reached the service
    assert len(watch.job_run_ids) == 1
    batch = table().get_batch(batch["batch_id"])
    assert batch["status"] == "RUNNING" and batch["job_run_id"] == watch.job_run_ids[0]
    # AND every image is still in the batch, none pending, and SUCCESS completes it
    assert table().counter() == (0, 1)
    assert send_job_state(events_dir, "SUCCESS", batch["job_run_id"])["action"] == "succeeded"
    assert {i["status"] for i in table().batch_images(batch["batch_id"])} == {"DONE"}
    assert len(table().batch_images(batch["batch_id"])) == 5


def test_crash_in_the_middle_of_claiming_is_resumed_by_reconcile(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN threshold 120 (claimed in transactions of 99 + 21) and a crash right after the first claim transaction
    set_batches(monkeypatch, 120, 1000)
    original = ManifestTable.claim_images
    calls = []

    def claim_then_crash(self: ManifestTable, batch_id: str, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        claimed = original(self, batch_id, candidates)
        calls.append(len(claimed))
        if len(calls) == 1:
            raise SimulatedCrash("Lambda died between two claim transactions")
        return claimed

    monkeypatch.setattr(ManifestTable, "claim_images", claim_then_crash)
    watch = JobRunWatch().install()
    objects = upload([f"images/Training/Date/{i}.jpg" for i in range(120)])

    # WHEN the notifications arrive and the sealing invocation crashes mid-claim
    failures = []
    for start in range(0, 120, 10):
        failures += ingest.handler(sqs_event(events_dir, objects[start : start + 10]), LocalLambdaContext("i"))[
            "batchItemFailures"
        ]
    [batch] = table().all_batches()
    assert len(failures) == 1 and calls == [99]
    assert (batch["status"], batch["claimed"], batch["remaining"]) == ("CLAIMING", 99, 21)

    # WHEN reconcile runs
    result = reconcile.handler({}, LocalLambdaContext("reconcile"))

    # THEN it finishes the claim (21 more), writes the manifest of all 120 images, seals and starts the batch
    assert result["claiming_resumed"] == [batch["batch_id"]] and result["sealed"] == [batch["batch_id"]]
    assert calls == [99, 21]
    batch = table().get_batch(batch["batch_id"])
    assert (batch["status"], batch["image_count"]) == ("RUNNING", 120)
    assert sorted(r["key"] for r in read_manifest(batch)) == sorted(o.key for o in objects)
    assert table().counter() == (0, 1)
    assert len(watch.job_run_ids) == 1


def test_lost_events_are_recorded_by_reconcile_and_flush_seals_the_rest(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN threshold 10 = BATCH_MAX_IMAGES, 27 images (+ a non-image) in S3 but only 4 notifications delivered
    set_batches(monkeypatch, 10, 10)
    watch = JobRunWatch().install()
    objects = upload([f"images/Test/Fig {i % 3}/{i}.jpg" for i in range(27)] + ["images/Test/Fig 0/notes.txt"])
    ingest_objects(events_dir, objects[:4])
    assert table().counter() == (4, 0)

    # WHEN reconcile runs
    result = reconcile.handler(load_event(events_dir, "scheduled_event.json"), LocalLambdaContext("reconcile"))

    # THEN the 23 missing images are recorded, two batches of 10 sealed and started in one job run (issue 19: a run
    # takes every sealed batch waiting), 7 still pending
    assert (result["listed"], result["missing_recorded"]) == (28, 23)
    assert len(result["sealed"]) == 2 and len(result["started"]) == 1
    assert table().counter() == (7, 2)

    # WHEN the scheduled flush runs
    flushed = flush.handler(load_event(events_dir, "scheduled_event.json"), LocalLambdaContext("flush"))

    # THEN the 7 waiting images are sealed into a third batch, which waits for the job run slot
    assert len(flushed["sealed"]) == 1 and flushed["started"] == []
    batches = table().all_batches()
    assert [(b["image_count"], b["status"]) for b in batches] == [(10, "RUNNING"), (10, "RUNNING"), (7, "SEALED")]
    assert table().counter() == (0, 3)
    # AND as SUCCESS events arrive, the job runs run one at a time, in sealing order: the first two batches, then
    # the third
    for _ in range(2):
        running = {b["job_run_id"] for b in table().all_batches() if b["status"] == "RUNNING"}
        [job_run_id] = running
        watch.finished(job_run_id)
        send_job_state(events_dir, "SUCCESS", job_run_id)
    assert watch.client_tokens == [f"{batches[0]['batch_id']}-a1", f"{batches[2]['batch_id']}-a1"]
    assert [b["status"] for b in table().all_batches()] == ["SUCCEEDED"] * 3
    assert watch.overlaps == []
    manifests = [r["key"] for b in table().all_batches() for r in read_manifest(b)]
    assert sorted(manifests) == sorted(o.key for o in objects[:27])
    # AND a second reconcile finds nothing to do
    again = reconcile.handler({}, LocalLambdaContext("reconcile"))
    assert again["missing_recorded"] == 0 and again["sealed"] == [] and again["started"] == []


def test_reconcile_applies_a_terminal_state_whose_event_was_lost(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two batches of 5: the first RUNNING (moto already reports its job run SUCCESS), the second waiting,
    # and RECONCILE_LOST_EVENT_MINUTES=1500 (moto truncates job run timestamps to midnight, so 25 h covers them)
    monkeypatch.setenv("RECONCILE_LOST_EVENT_MINUTES", "1500")
    set_batches(monkeypatch, 5, 5)
    watch = JobRunWatch().install()
    ingest_objects(events_dir, upload([f"images/Test/Guava/{i}.jpg" for i in range(10)]))
    first, second = table().all_batches()
    assert (first["status"], second["status"]) == ("RUNNING", "SEALED")

    # WHEN reconcile runs while the EventBridge event could still come
    result = reconcile.handler({}, LocalLambdaContext("reconcile"))
    # THEN it leaves the running batch alone
    assert result["recovered"] is None and table().get_batch(first["batch_id"])["status"] == "RUNNING"

    # WHEN it runs 2 days later and the event never came
    import datetime as dt

    import lambdas.service.base

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    monkeypatch.setattr(lambdas.service.base, "utc_now_dt", lambda: later)
    result = reconcile.handler({}, LocalLambdaContext("reconcile"))

    # THEN it applies the SUCCESS itself and the next batch starts
    assert result["recovered"] == "succeeded"
    assert table().get_batch(first["batch_id"])["status"] == "SUCCEEDED"
    assert table().get_batch(second["batch_id"])["status"] == "RUNNING"
    assert len(watch.job_run_ids) == 2

    # AND with RECONCILE_LOST_EVENT_MINUTES=0 (local moto runs) it never polls job runs
    monkeypatch.setenv("RECONCILE_LOST_EVENT_MINUTES", "0")
    get_settings.cache_clear()
    assert reconcile.handler({}, LocalLambdaContext("reconcile"))["recovered"] is None
    assert table().get_batch(second["batch_id"])["status"] == "RUNNING"


def test_sqs_retry_of_a_crash_after_recording_finishes_the_seal(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN threshold 5 and a crash injected once, right after the 5th image is recorded (before sealing)
    set_batches(monkeypatch, 5, 20)
    import lambdas.pipeline

    original, crashed = lambdas.pipeline.Pipeline.seal_pending, []

    def crash_once(self: Any, **kwargs: Any) -> list[str]:
        if not crashed:
            crashed.append(True)
            raise SimulatedCrash("Lambda died after recording the image")
        return original(self, **kwargs)

    monkeypatch.setattr(lambdas.pipeline.Pipeline, "seal_pending", crash_once)
    objects = upload([f"images/Training/Kiwi/{i}.jpg" for i in range(5)])

    # WHEN the 5 notifications arrive (the 5th crashes) and SQS redelivers the failed one
    first = ingest.handler(sqs_event(events_dir, objects), LocalLambdaContext("ingest"))
    assert len(first["batchItemFailures"]) == 1 and table().counter() == (5, 0)
    retry = ingest.handler(sqs_event(events_dir, objects[-1:]), LocalLambdaContext("ingest"))

    # THEN the retry (a duplicate) still seals the batch of 5 and starts it
    assert retry == {"batchItemFailures": []}
    [batch] = table().all_batches()
    assert (batch["status"], batch["image_count"]) == ("RUNNING", 5)
    assert table().counter() == (0, 1)


def test_a_start_stuck_longer_than_the_repair_bound_is_redriven_by_the_next_flush(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a batch whose starter died inside StartJobRun (STARTING, slot held, no job run)
    import datetime as dt

    from lambdas.pipeline import STALE_START_SECONDS, get_pipeline

    set_batches(monkeypatch, 5, 20)
    watch = JobRunWatch().install()
    crashes = crash_first_start_job_run()
    ingest.handler(
        sqs_event(events_dir, upload([f"images/Training/Fig/{i}.jpg" for i in range(5)])), LocalLambdaContext("ingest")
    )
    [batch] = table().all_batches()
    assert batch["status"] == "STARTING" and crashes == [f"{batch['batch_id']}-a1"]
    # WHEN a flush runs while the starter could still be inside its call (2 minutes later)
    pipeline = get_pipeline()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=STALE_START_SECONDS - 60)
    pipeline.clock = lambda: later  # the injected clock returns timezone-aware datetimes
    # THEN it leaves the batch alone
    assert pipeline.flush().started == [] and watch.job_run_ids == []
    # WHEN a flush runs after the repair bound (STALE_START_SECONDS = REPAIR_AFTER_SECONDS, 3 minutes)
    later += dt.timedelta(seconds=120)
    outcome = pipeline.flush()
    # THEN the batch is started with the same attempt and client token (no reconcile needed), nothing lost
    assert [run.client_token for run in outcome.started] == [f"{batch['batch_id']}-a1"]
    batch = table().get_batch(batch["batch_id"])
    assert batch["status"] == "RUNNING" and batch["attempts"] == 1 and batch["job_run_id"] == watch.job_run_ids[0]
    assert len(table().batch_images(batch["batch_id"])) == 5
