"""Count or age, whichever first: BATCH_MAX_WAIT_SECONDS seals a small backlog (ingest and the scheduled tick)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas.config import get_settings
from lambdas.handlers import tick
from lambdas.logic.keys import ImageRef
from lambdas.pipeline import Pipeline, get_pipeline
from tests.helpers.aws_fixtures import BUCKET
from tests.helpers.manifest import read_manifest, table

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


def settings(monkeypatch: pytest.MonkeyPatch, *, threshold: int, max_wait: int) -> None:
    monkeypatch.setenv("BATCH_THRESHOLD", str(threshold))
    monkeypatch.setenv("BATCH_MAX_IMAGES", "1000")
    monkeypatch.setenv("BATCH_MAX_WAIT_SECONDS", str(max_wait))
    get_settings.cache_clear()


def at(pipeline: Pipeline, seconds: float) -> Callable[[], dt.datetime]:
    """Set the pipeline's injected clock (timezone-aware datetimes) to T0 + ``seconds``."""
    now = T0 + dt.timedelta(seconds=seconds)
    pipeline.clock = lambda: now
    return pipeline.clock


def record(pipeline: Pipeline, names: list[str]) -> None:
    for name in names:
        outcome = pipeline.ingest(ImageRef(BUCKET, f"images/Training/Kiwi/{name}.jpg", f"etag-{name}", 10))
        assert outcome.recorded


def test_three_images_are_sealed_when_the_oldest_has_waited_max_wait_not_before(moto_aws, monkeypatch) -> None:
    # GIVEN threshold 100, max wait 900 s and 3 images recorded at t0
    settings(monkeypatch, threshold=100, max_wait=900)
    pipeline = get_pipeline()
    at(pipeline, 0)
    record(pipeline, ["a", "b", "c"])
    assert table().all_batches() == []
    # WHEN the tick runs 1 s before the max wait
    at(pipeline, 899)
    early = pipeline.tick()
    # THEN nothing is sealed, and the tick reports the oldest image's wait
    assert early.sealed == [] and early.pending == 3 and early.oldest_pending_age_seconds == pytest.approx(899)
    # WHEN it runs at t0 + 900 s
    at(pipeline, 900)
    due = pipeline.tick()
    # THEN the 3 images are sealed in one batch (reason max_wait) and its job run starts
    assert len(due.sealed) == 1 and len(due.started) == 1
    [batch] = table().all_batches()
    assert batch["reason"] == "max_wait" and int(batch["image_count"]) == 3
    assert sorted(r["key"].rsplit("/", 1)[1] for r in read_manifest(batch)) == ["a.jpg", "b.jpg", "c.jpg"]
    assert pipeline.tick().pending == 0


def test_an_ingest_after_the_max_wait_seals_without_waiting_for_the_tick(moto_aws, monkeypatch) -> None:
    # GIVEN 2 images recorded at t0 (threshold 100, max wait 900 s)
    settings(monkeypatch, threshold=100, max_wait=900)
    pipeline = get_pipeline()
    at(pipeline, 0)
    record(pipeline, ["a", "b"])
    # WHEN a third image arrives at t0 + 901 s
    at(pipeline, 901)
    outcome = pipeline.ingest(ImageRef(BUCKET, "images/Training/Kiwi/c.jpg", "etag-c", 10))
    # THEN that ingest seals all three (the age rule is checked by every ingest)
    assert len(outcome.sealed) == 1
    [batch] = table().all_batches()
    assert int(batch["image_count"]) == 3


def test_with_max_wait_off_only_the_threshold_seals(moto_aws, monkeypatch) -> None:
    # GIVEN max wait 0 (off), threshold 5 and 3 images recorded at t0
    settings(monkeypatch, threshold=5, max_wait=0)
    pipeline = get_pipeline()
    at(pipeline, 0)
    record(pipeline, ["a", "b", "c"])
    # WHEN the tick runs a day later
    at(pipeline, 86_400)
    # THEN nothing is sealed
    assert pipeline.tick().sealed == [] and table().all_batches() == []
    # WHEN 2 more images arrive
    record(pipeline, ["d", "e"])
    # THEN the threshold seals the 5 (reason threshold)
    [batch] = table().all_batches()
    assert batch["reason"] == "threshold" and int(batch["image_count"]) == 5


def test_the_tick_costs_two_reads_and_two_queries_when_nothing_is_pending(moto_aws, monkeypatch) -> None:
    # GIVEN an empty manifest
    settings(monkeypatch, threshold=100, max_wait=900)
    pipeline = get_pipeline()
    moto_aws.calls.clear()
    # WHEN the tick runs
    outcome = pipeline.tick()
    # THEN it read the counter, looked for stuck CLAIMING batches, read the job run slot and, the slot being free,
    # looked for a SEALED batch to start (issue 18: the repair), and reports no age
    assert [op for _, op, _ in moto_aws.calls] == ["GetItem", "Query", "GetItem", "Query"]
    assert outcome.pending == 0 and outcome.oldest_pending_age_seconds is None


def test_tick_handler_returns_the_oldest_age_and_seals(moto_aws, monkeypatch) -> None:
    # GIVEN 1 image recorded at t0 and the handler's pipeline at t0 + 1,000 s (max wait 900 s)
    settings(monkeypatch, threshold=100, max_wait=900)
    pipeline = get_pipeline()
    at(pipeline, 0)
    record(pipeline, ["a"])
    at(pipeline, 1000)
    monkeypatch.setattr(tick, "get_pipeline", lambda: pipeline)
    # WHEN the scheduled event invokes the tick Lambda
    result = tick.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, LocalLambdaContext("tick"))
    # THEN it reports the wait and the batch it sealed and started
    assert result["oldest_pending_age_seconds"] == pytest.approx(1000)
    assert len(result["sealed"]) == 1 and len(result["started"]) == 1


def test_ingests_read_the_oldest_pending_image_at_most_once_a_minute_and_still_seal_on_time(
    moto_aws, monkeypatch
) -> None:
    # GIVEN threshold 100, max wait 120 s, and a pipeline counting its GSI queries for the oldest pending image
    settings(monkeypatch, threshold=100, max_wait=120)
    pipeline = get_pipeline()
    queries = []
    original = pipeline.table.pending_images
    monkeypatch.setattr(pipeline.table, "pending_images", lambda limit: queries.append(limit) or original(limit))
    # WHEN 20 images are ingested within the first 30 s
    for i in range(20):
        at(pipeline, i * 1.5)
        record(pipeline, [f"p{i}"])
    # THEN the oldest pending image was read once (the first ingest), not once per ingest
    assert len(queries) == 1 and table().all_batches() == []
    # AND an ingest after the max wait re-reads it and seals the 21 images (no tick needed)
    at(pipeline, 121)
    record(pipeline, ["late"])
    [batch] = table().all_batches()
    assert batch["reason"] == "max_wait" and int(batch["image_count"]) == 21
    assert queries[:2] == [1, 1]  # then the seal's own claim query
