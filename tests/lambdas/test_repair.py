"""Issue 18 items 7–9: repair without reconcile. Faults injected on an injected clock; the tick runs every minute.

Promise (README "Latency"): a photo is featurized within max wait + one tick + one job run + the repair bound
(REPAIR_AFTER_SECONDS), whatever single fault happens. Here the job run is instant (moto), so the tests check that
the photo's batch is (re)started within max wait + one tick + the repair bound of the fault.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from lambdas.config import get_settings
from lambdas.logic.keys import ImageRef
from lambdas.pipeline import Pipeline, get_pipeline
from lambdas.service.base import REPAIR_AFTER_SECONDS
from tests.helpers.aws_fixtures import BUCKET
from tests.helpers.manifest import table

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
TICK = 60  # seconds between two ticks (tickRateMinutes = 1)


class SimulatedCrash(Exception):
    """The Lambda dies inside a call (timeout, out of memory): no handler code runs after it."""


class FaultyEmr:
    """The pipeline's EMR Serverless client, whose next StartJobRun calls raise the given errors."""

    def __init__(self, real: Any, faults: list[Exception]) -> None:
        self.real, self.faults, self.tokens = real, list(faults), []

    def start_job_run(self, **request: Any) -> dict[str, Any]:
        self.tokens.append(request["clientToken"])
        if self.faults:
            raise self.faults.pop(0)
        return self.real.start_job_run(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartJobRun")


def read_timeout() -> ReadTimeoutError:
    return ReadTimeoutError(endpoint_url="https://emr-serverless.eu-west-3.amazonaws.com/applications/x/jobruns")


@pytest.fixture
def pipeline(moto_aws, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """Threshold 3, max wait 600 s, MAX_ATTEMPTS 3; the clock starts at T0."""
    monkeypatch.setenv("BATCH_THRESHOLD", "3")
    monkeypatch.setenv("BATCH_MAX_WAIT_SECONDS", "600")
    get_settings.cache_clear()
    service = get_pipeline()
    at(service, 0)
    return service


def at(pipeline: Pipeline, seconds: float) -> None:
    now = T0 + dt.timedelta(seconds=seconds)
    pipeline.clock = lambda: now


def ingest_three(pipeline: Pipeline) -> None:
    for i in range(3):
        pipeline.ingest(ImageRef(BUCKET, f"images/Training/Fig/{i}.jpg", f"e{i}", 10, sequencer=f"0{i + 1}"))


def tick_until_running(pipeline: Pipeline, *, until: float) -> float:
    """Run the tick every minute from T0 + 60 s until the (one) batch is RUNNING; returns when (s after T0)."""
    seconds = 0.0
    while seconds < until:
        seconds += TICK
        at(pipeline, seconds)
        pipeline.tick()
        if [b["status"] for b in table().all_batches()] == ["RUNNING"]:
            return seconds
    raise AssertionError(f"not running {until} s after the fault: {table().all_batches()}")


@pytest.mark.parametrize("faults", [[throttled()], [throttled()] * 4, [read_timeout()], [read_timeout()] * 3])
def test_a_throttled_or_timed_out_start_is_retried_by_the_tick_and_never_quarantines(pipeline, faults) -> None:
    # GIVEN StartJobRun throttled or timing out (after botocore's retries) on its next calls, MAX_ATTEMPTS = 3
    emr = FaultyEmr(pipeline.emr, faults)
    pipeline.emr = emr
    # WHEN 3 images seal a batch at T0 (its first start fails), then the tick runs every minute
    ingest_three(pipeline)
    [batch] = table().all_batches()
    assert batch["status"] == "STARTING" and table().get_slot()["holder"] == batch["batch_id"]
    started = tick_until_running(pipeline, until=3600)
    # THEN one fault is repaired by the next tick; any number of them: within the backoff, never quarantined,
    # always the same attempt and clientToken (a timed-out call that did start a job run is not started twice)
    assert started <= (TICK if len(faults) == 1 else REPAIR_AFTER_SECONDS + len(faults) * TICK)
    batch = table().get_batch(batch["batch_id"])
    assert (batch["status"], batch["attempts"], batch["failures"]) == ("RUNNING", 1, 0)
    assert set(emr.tokens) == {f"{batch['batch_id']}-a1"} and len(emr.tokens) == len(faults) + 1


def test_a_starter_that_died_inside_start_job_run_is_redriven_within_the_repair_bound(pipeline) -> None:
    # GIVEN the Lambda dies inside StartJobRun (the batch stays STARTING, slot held, nothing recorded)
    pipeline.emr = FaultyEmr(pipeline.emr, [SimulatedCrash("Lambda timed out inside StartJobRun")])
    with pytest.raises(SimulatedCrash):
        ingest_three(pipeline)
    [batch] = table().all_batches()
    assert batch["status"] == "STARTING"
    # WHEN the tick runs every minute
    started = tick_until_running(pipeline, until=3600)
    # THEN the batch runs within the repair bound + one tick, with its first attempt
    assert started <= REPAIR_AFTER_SECONDS + TICK
    assert table().get_batch(batch["batch_id"])["attempts"] == 1


def test_a_seal_whose_manifest_put_failed_is_finished_by_the_tick(pipeline, monkeypatch) -> None:
    # GIVEN the manifest PutObject failing once during a seal: the batch stays CLAIMING with the counter at 0
    real_put, failures = pipeline.s3.put_object, []

    def put_object(**kwargs: Any) -> Any:
        if kwargs["Key"].endswith(".jsonl") and not failures:
            failures.append(kwargs["Key"])
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}}, "PutObject"
            )
        return real_put(**kwargs)

    monkeypatch.setattr(pipeline.s3, "put_object", put_object)
    with pytest.raises(ClientError):
        ingest_three(pipeline)
    [batch] = table().all_batches()
    assert batch["status"] == "CLAIMING" and table().counts().pending == 0
    # AND the SQS redelivery of the last event (a duplicate) does not finish it
    pipeline.ingest(ImageRef(BUCKET, "images/Training/Fig/2.jpg", "e2", 10, sequencer="03"))
    assert table().get_batch(batch["batch_id"])["status"] == "CLAIMING"
    # WHEN the tick runs every minute
    started = tick_until_running(pipeline, until=3600)
    # THEN the tick seals it (its manifest lists the 3 images) and starts it within the repair bound + one tick
    assert started <= REPAIR_AFTER_SECONDS + TICK
    assert int(table().get_batch(batch["batch_id"])["image_count"]) == 3


def test_a_sealed_batch_is_started_by_the_tick_when_the_slot_is_free(pipeline, monkeypatch) -> None:
    # GIVEN a batch sealed by a flush whose invocation died before starting it (slot free, nothing pending)
    ingest = ImageRef(BUCKET, "images/Training/Fig/solo.jpg", "e", 10, sequencer="01")
    pipeline.ingest(ingest)
    monkeypatch.setattr(Pipeline, "_start_next_quietly", lambda self, outcome: None)
    pipeline.flush()
    monkeypatch.undo()
    [batch] = table().all_batches()
    assert batch["status"] == "SEALED" and table().counts().pending == 0
    # WHEN the next tick runs
    started = tick_until_running(pipeline, until=TICK)
    # THEN it starts the batch
    assert started == TICK


def test_a_lost_terminal_event_frees_the_slot_by_the_tick(pipeline, monkeypatch) -> None:
    # GIVEN a RUNNING batch whose SUCCESS event never comes, a second batch waiting, and the bound of 3 minutes
    # (moto reports every job run SUCCESS at once, updatedAt at midnight: the real clock, 10 minutes on, is late)
    monkeypatch.setenv("RECONCILE_LOST_EVENT_MINUTES", "3")
    get_settings.cache_clear()
    service = get_pipeline()
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    service.clock = lambda: now
    for i in range(6):
        service.ingest(ImageRef(BUCKET, f"images/Training/Fig/{i}.jpg", f"e{i}", 10, sequencer=f"0{i + 1}"))
    first, second = table().all_batches()
    assert (first["status"], second["status"]) == ("RUNNING", "SEALED")
    # WHEN the tick runs
    outcome = service.tick()
    # THEN it applies the job run's terminal state read with GetJobRun, and starts the next batch
    assert outcome.recovered is not None and outcome.recovered.action == "succeeded"
    assert table().get_batch(first["batch_id"])["status"] == "SUCCEEDED"
    assert table().get_batch(second["batch_id"])["status"] == "RUNNING"
