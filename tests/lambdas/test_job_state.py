"""job_state handler: SUCCESS / FAILED / CANCELLED / non-terminal events drive batches and the job run slot.

moto quirk: its job runs report SUCCESS as soon as they are started and it ignores ``clientToken``; the tests
never poll moto for state, they drive ``job_state`` with the real-shaped EventBridge fixtures instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas.config import get_settings
from lambdas.handlers import job_state
from tests.helpers.aws_fixtures import Obj, load_event
from tests.helpers.manifest import JobRunWatch, ingest_objects, send_job_state, table


@pytest.fixture
def small_batches(moto_aws, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATCH_THRESHOLD", "5")
    monkeypatch.setenv("BATCH_MAX_IMAGES", "20")
    get_settings.cache_clear()
    return moto_aws


def images(n: int, start: int = 0) -> list[Obj]:
    return [Obj(f"images/Test/Lemon/{i}_100.jpg", f"{i:032x}", 100 + i) for i in range(start, start + n)]


def test_failed_job_run_is_retried_then_quarantined_with_images_attached(
    small_batches, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two sealed batches of 5 images (MAX_ATTEMPTS=3); the first one is running attempt 1
    watch = JobRunWatch().install()
    ingest_objects(events_dir, images(10))
    first, second = (b["batch_id"] for b in table().all_batches())
    assert watch.client_tokens == [f"{first}-a1"]
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()

    # WHEN its job runs fail twice (FAILED, then CANCELLED)
    for attempt, state in ((1, "FAILED"), (2, "CANCELLED")):
        job_run_id = table().get_batch(first)["job_run_id"]
        watch.finished(job_run_id)
        result = send_job_state(events_dir, state, job_run_id)
        # THEN each time the same batch gets a new attempt with a new client token (it is the oldest sealed)
        assert result["action"] == "retry"
        assert watch.client_tokens[-1] == f"{first}-a{attempt + 1}"
        batch = table().get_batch(first)
        assert (batch["status"], batch["attempts"], batch["failures"]) == ("RUNNING", attempt + 1, attempt)

    # WHEN the third attempt fails too
    job_run_id = table().get_batch(first)["job_run_id"]
    watch.finished(job_run_id)
    result = send_job_state(events_dir, "FAILED", job_run_id)

    # THEN the batch is quarantined, its 5 images are still attached to it, and the next batch starts
    assert result["action"] == "quarantined"
    batch = table().get_batch(first)
    assert (batch["status"], batch["attempts"], batch["failures"]) == ("QUARANTINED", 3, 3)
    assert sorted(run["state"] for run in batch["job_runs"].values()) == ["CANCELLED", "FAILED", "FAILED"]
    attached = table().batch_images(first)
    assert len(attached) == 5 and {i["status"] for i in attached} == {"CLAIMED"}
    assert watch.client_tokens == [f"{first}-a1", f"{first}-a2", f"{first}-a3", f"{second}-a1"]
    assert watch.overlaps == []
    # AND the failures and the quarantine were emitted as metrics for the alarm
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert sum(sum(e.get("JobRunsFailed", [])) for e in emf) == 3
    assert sum(sum(e.get("BatchesQuarantined", [])) for e in emf) == 1


def test_success_marks_images_done_and_duplicates_are_no_ops(small_batches, events_dir: Path) -> None:
    # GIVEN one running batch of 5 images
    watch = JobRunWatch().install()
    ingest_objects(events_dir, images(5))
    [batch] = table().all_batches()
    job_run_id = batch["job_run_id"]

    # WHEN RUNNING (non-terminal), then SUCCESS twice, arrive
    running = send_job_state(events_dir, "RUNNING", job_run_id)
    first = send_job_state(events_dir, "SUCCESS", job_run_id)
    again = send_job_state(events_dir, "SUCCESS", job_run_id)

    # THEN RUNNING is ignored, the first SUCCESS completes the batch, the duplicate changes nothing
    assert running["action"] == "ignored" and "non_terminal" in running["reason"]
    assert first["action"] == "succeeded" and again["action"] == "stale"
    assert table().get_batch(batch["batch_id"])["status"] == "SUCCEEDED"
    assert {i["status"] for i in table().batch_images(batch["batch_id"])} == {"DONE"}
    assert table().get_slot().get("holder") is None
    assert len(watch.requests) == 1


def test_other_applications_unknown_job_runs_and_other_events_are_ignored(small_batches, events_dir: Path) -> None:
    # GIVEN one running batch
    ingest_objects(events_dir, images(5))
    [batch] = table().all_batches()

    # WHEN events arrive for another application, an unknown job run, and a non-EMR event
    other_app = send_job_state(events_dir, "SUCCESS", batch["job_run_id"], application_id="00fsotherapp0001")
    unknown = send_job_state(events_dir, "FAILED", "00fsunknownrun01")
    scheduled = job_state.handler(load_event(events_dir, "scheduled_event.json"), LocalLambdaContext("job-state"))

    # THEN nothing changes
    assert other_app["reason"] == "other_application"
    assert unknown["action"] == "unknown_job_run"
    assert scheduled["action"] == "ignored"
    assert table().get_batch(batch["batch_id"])["status"] == "RUNNING"


def test_refused_job_starts_quarantine_the_batch_with_metrics_for_the_alarms(
    small_batches, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN EMR Serverless refusing every StartJobRun (e.g. the execution role cannot be passed), MAX_ATTEMPTS=3
    from botocore.exceptions import ClientError

    from lambdas import aws
    from lambdas.handlers import flush

    def refuse(params: dict, **_: object) -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "StartJobRun")

    aws.client("emr-serverless").meta.events.register_first("provide-client-params.emr-serverless.StartJobRun", refuse)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    # WHEN 5 images seal a batch (first start refused), then two flushes retry it (refused again)
    ingest_objects(events_dir, images(5))
    [batch] = table().all_batches()
    for _ in range(2):
        flush.handler(load_event(events_dir, "scheduled_event.json"), LocalLambdaContext("flush"))
    # THEN the batch is quarantined after 3 refused starts, its images still attached, the slot free
    batch = table().get_batch(batch["batch_id"])
    assert (batch["status"], batch["failures"]) == ("QUARANTINED", 3)
    assert len(table().batch_images(batch["batch_id"])) == 5
    assert not table().get_slot().get("holder")
    # AND every refusal and the quarantine reached the metrics the alarms watch
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert sum(sum(e.get("JobRunStartFailures", [])) for e in emf) == 3
    assert sum(sum(e.get("BatchesQuarantined", [])) for e in emf) == 1
