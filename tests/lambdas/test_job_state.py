"""job_state handler: SUCCESS / FAILED / CANCELLED / non-terminal events drive batches and the job run slot.

moto quirk: its job runs report SUCCESS as soon as they are started and it ignores ``clientToken``; the tests
never poll moto for state, they drive ``job_state`` with the real-shaped EventBridge fixtures instead.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas.config import get_settings
from lambdas.handlers import job_state
from lambdas.logic.keys import ImageRef
from lambdas.pipeline import JobStateAction, Pipeline, get_pipeline
from tests.helpers.aws_fixtures import BUCKET, Obj, load_event
from tests.helpers.manifest import JobRunWatch, ingest_objects, send_job_state, table

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


def images(n: int, start: int = 0) -> list[Obj]:
    return [Obj(f"images/Test/Lemon/{i}_100.jpg", f"{i:032x}", 100 + i) for i in range(start, start + n)]


def test_failed_job_run_is_retried_then_quarantined_with_images_attached(
    small_batches, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two sealed batches of 5 images (MAX_ATTEMPTS=3); the first one is running attempt 1 alone (the second
    # was sealed while it ran)
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
        # THEN each time the next job run takes both sealed batches (issue 19), led by the first (the oldest), with
        # a new attempt and client token
        assert result["action"] == "retry"
        assert watch.client_tokens[-1] == f"{first}-a{attempt + 1}"
        args = watch.requests[-1]["jobDriver"]["sparkSubmit"]["entryPointArguments"]
        assert [args[i + 1] for i, arg in enumerate(args) if arg == "--batch-id"] == [first, second]
        batch = table().get_batch(first)
        assert (batch["status"], batch["attempts"], batch["failures"]) == ("RUNNING", attempt + 1, attempt)
        other = table().get_batch(second)
        assert (other["status"], other["attempts"], other["failures"]) == ("RUNNING", attempt, attempt - 1)

    # WHEN the third attempt fails too
    job_run_id = table().get_batch(first)["job_run_id"]
    watch.finished(job_run_id)
    result = send_job_state(events_dir, "FAILED", job_run_id)

    # THEN the first batch is quarantined (its own third failure), its 5 images still attached to it; the second
    # (2 failures of its own) goes back and runs alone, its third attempt
    assert result["action"] == "quarantined"
    batch = table().get_batch(first)
    assert (batch["status"], batch["attempts"], batch["failures"]) == ("QUARANTINED", 3, 3)
    assert sorted(run["state"] for run in batch["job_runs"].values()) == ["CANCELLED", "FAILED", "FAILED"]
    attached = table().batch_images(first)
    assert len(attached) == 5 and {i["status"] for i in attached} == {"CLAIMED"}
    assert watch.client_tokens == [f"{first}-a1", f"{first}-a2", f"{first}-a3", f"{second}-a3"]
    other = table().get_batch(second)
    assert (other["status"], other["attempts"], other["failures"]) == ("RUNNING", 3, 2)
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


def test_refused_job_starts_never_quarantine_the_batch_and_reach_the_metrics_for_the_alarms(
    small_batches, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN EMR Serverless refusing every StartJobRun (e.g. the execution role cannot be passed), MAX_ATTEMPTS=3
    # (issue 18: a refused start is not a job run that ran and failed, so it never counts toward the quarantine)
    from botocore.exceptions import ClientError

    from lambdas import aws
    from lambdas.handlers import flush

    refusals: list[str] = []

    def refuse(params: dict, **_: object) -> None:
        if len(refusals) < 4:
            refusals.append(params["clientToken"])
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "StartJobRun")

    aws.client("emr-serverless").meta.events.register_first("provide-client-params.emr-serverless.StartJobRun", refuse)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    pipeline = get_pipeline()
    monkeypatch.setattr(flush, "get_pipeline", lambda: pipeline)
    # WHEN 5 images seal a batch (first start refused), then flushes retry it as its backoff allows (3 refusals more)
    at(pipeline, 0)
    ingest_objects(events_dir, images(5))
    [batch] = table().all_batches()
    for seconds in (10, 31, 95, 300):
        at(pipeline, seconds)
        flush.handler(load_event(events_dir, "scheduled_event.json"), LocalLambdaContext("flush"))
    # THEN every refusal kept the batch STARTING with its slot and attempt 1 (same clientToken), never quarantined
    assert refusals == [f"{batch['batch_id']}-a1"] * 4
    stuck = table().get_batch(batch["batch_id"])
    assert (stuck["status"], stuck["failures"], stuck["attempts"], stuck["start_errors"]) == ("STARTING", 0, 1, 4)
    assert table().get_slot()["holder"] == batch["batch_id"]
    # AND every refusal reached the metric the alarm watches, no quarantine
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert sum(sum(e.get("JobRunStartFailures", [])) for e in emf) == 4
    assert sum(sum(e.get("BatchesQuarantined", [])) for e in emf) == 0
    # WHEN EMR accepts again and the retry is due
    at(pipeline, 300 + 181)
    flush.handler(load_event(events_dir, "scheduled_event.json"), LocalLambdaContext("flush"))
    # THEN the batch runs, its images still attached
    batch = table().get_batch(batch["batch_id"])
    assert (batch["status"], batch["attempts"], batch["failures"]) == ("RUNNING", 1, 0)
    assert len(table().batch_images(batch["batch_id"])) == 5


def at(pipeline: Pipeline, seconds: float) -> None:
    """Set the pipeline's injected clock (timezone-aware datetimes) to T0 + ``seconds``."""
    now = T0 + dt.timedelta(seconds=seconds)
    pipeline.clock = lambda: now


def s3_time(seconds: float) -> str:
    """T0 + ``seconds`` as S3 writes an event's ``eventTime``: ISO-8601 UTC, milliseconds, ``Z``."""
    return (T0 + dt.timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_at(pipeline: Pipeline, seconds: float, name: str, *, event: bool = True, sequencer: str = "00A1") -> None:
    """Record image ``name`` at T0 + ``seconds``, with that S3 event time (none when found by listing)."""
    at(pipeline, seconds)
    ref = ImageRef(BUCKET, f"images/Training/Kiwi/{name}.jpg", f"etag-{name}-{sequencer}", 10)
    if event:
        ref = ImageRef(ref.bucket, ref.key, ref.etag, ref.size, sequencer=sequencer, event_time=s3_time(seconds))
    assert pipeline.ingest(ref).recorded


def run_batch(pipeline: Pipeline) -> str:
    """Flush what is pending into one batch and start its job run; returns the job run id."""
    [run] = pipeline.flush().started
    return run.job_run_id


def test_success_reports_each_images_time_from_its_s3_event_to_the_event_handling(moto_aws) -> None:
    # GIVEN an image uploaded at t0 and one at t0 + 30 s, sealed into a batch whose job run started
    pipeline = get_pipeline()
    record_at(pipeline, 0, "a")
    record_at(pipeline, 30, "b")
    job_run_id = run_batch(pipeline)
    app = get_settings().emr_application_id
    # WHEN its SUCCESS event is handled at t0 + 300 s, then delivered again
    at(pipeline, 300)
    first = pipeline.handle_job_state(application_id=app, job_run_id=job_run_id, state="SUCCESS")
    again = pipeline.handle_job_state(application_id=app, job_run_id=job_run_id, state="SUCCESS")
    # THEN the first reports 300 s and 270 s (one value per image), the duplicate reports nothing
    assert first.action is JobStateAction.SUCCEEDED and first.time_to_feature_seconds == [300.0, 270.0]
    assert again.action is JobStateAction.STALE and again.time_to_feature_seconds == []


def test_images_without_an_event_time_superseded_or_removed_are_left_out(moto_aws) -> None:
    # GIVEN one batch of: a (uploaded t0), c (found by listing: no event time), k overwritten at t0 + 60 s (its
    # first version, uploaded t0 + 10 s, superseded while pending) and r (uploaded t0 + 5 s, deleted at t0 + 20 s)
    pipeline = get_pipeline()
    record_at(pipeline, 0, "a")
    record_at(pipeline, 5, "r")
    record_at(pipeline, 10, "k")
    record_at(pipeline, 15, "c", event=False)
    at(pipeline, 20)
    assert pipeline.remove(ImageRef(BUCKET, "images/Training/Kiwi/r.jpg", "", 0, sequencer="00B1")).removed == 1
    record_at(pipeline, 60, "k", sequencer="00A2")
    job_run_id = run_batch(pipeline)
    batch_id = table().get_job_run(job_run_id)["batch_id"]
    assert {i.get("fate") for i in table().batch_images(batch_id)} == {None, "superseded", "removed"}
    # WHEN its SUCCESS event is handled at t0 + 300 s
    at(pipeline, 300)
    outcome = pipeline.handle_job_state(
        application_id=get_settings().emr_application_id, job_run_id=job_run_id, state="SUCCESS"
    )
    # THEN only the live images with an event time count: a (300 s) and k's second version (240 s)
    assert outcome.action is JobStateAction.SUCCEEDED
    assert outcome.time_to_feature_seconds == [300.0, 240.0]


def test_job_state_emits_one_time_to_feature_value_per_image_across_emf_flushes(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a batch of 250 images uploaded at t0 + i s (i = 0..249), running, and metrics on
    for name in ("BATCH_THRESHOLD", "BATCH_MAX_IMAGES"):
        monkeypatch.setenv(name, "1000")
    get_settings.cache_clear()
    pipeline = get_pipeline()
    for i in range(250):
        record_at(pipeline, i, f"p{i:03d}")
    job_run_id = run_batch(pipeline)
    at(pipeline, 600)
    monkeypatch.setattr(job_state, "get_pipeline", lambda: pipeline)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()
    # WHEN the job_state Lambda gets its SUCCESS event at t0 + 600 s, then the same event again
    assert send_job_state(events_dir, "SUCCESS", job_run_id)["action"] == "succeeded"
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert send_job_state(events_dir, "SUCCESS", job_run_id)["action"] == "stale"
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    # THEN all 250 values (600 s down to 351 s) reached stdout as EMF, at most 100 per document (Powertools
    # flushes at 100 values), in seconds, in the Fruits namespace with the service dimension
    documents = [e for e in first if "TimeToFeatureSeconds" in e]
    values = [v for e in documents for v in e["TimeToFeatureSeconds"]]
    assert sorted(values) == [float(600 - i) for i in range(249, -1, -1)]
    assert [len(e["TimeToFeatureSeconds"]) for e in documents] == [100, 100, 50]
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Fruits" and document["service"] == "fruits-ingestion"
        assert {"Name": "TimeToFeatureSeconds", "Unit": "Seconds"} in directive["Metrics"]
    # AND the duplicate event emitted none
    assert not [e for e in again if "TimeToFeatureSeconds" in e]
