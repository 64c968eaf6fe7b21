"""Issue 18 item 10: every handler treats a malformed event as logged + ignored, or a partial failure (SQS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas.handlers import ingest, job_state
from tests.helpers.aws_fixtures import Obj, job_state_event, sqs_event, upload
from tests.helpers.manifest import table


def without(event: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``event`` with the value at ``path`` removed."""
    event = json.loads(json.dumps(event))
    node = event
    for name in path[:-1]:
        node = node[name]
    del node[path[-1]]
    return event


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: without(e, ("detail",)),
        lambda e: {**e, "detail": "SUCCESS"},
        lambda e: {**e, "detail": None},
        lambda e: without(e, ("detail", "state")),
        lambda e: without(e, ("detail", "jobRunId")),
        lambda e: {**e, "detail": {**e["detail"], "jobRunId": ""}},
        lambda e: {**e, "detail": {**e["detail"], "state": 7}},
        lambda e: without(e, ("source",)),
    ],
    ids=[
        "no_detail",
        "detail_string",
        "detail_null",
        "no_state",
        "no_job_run_id",
        "empty_job_run_id",
        "state_int",
        "no_source",
    ],
)
def test_a_malformed_job_state_event_is_logged_and_ignored(moto_aws, events_dir: Path, damage) -> None:
    # GIVEN a real-shaped SUCCESS event, damaged
    event = damage(job_state_event(events_dir, "SUCCESS", "00f0jobrun", "app-id"))
    # WHEN the job_state Lambda receives it
    result = job_state.handler(event, LocalLambdaContext("job-state"))
    # THEN nothing raises: it is ignored with a reason, and the manifest is untouched
    assert result["action"] == "ignored" and result["reason"]
    assert table().all_batches() == []


def test_a_malformed_s3_record_is_a_partial_failure_and_the_good_one_is_recorded(moto_aws, events_dir: Path) -> None:
    # GIVEN an SQS batch: one good notification, one whose S3 record has no "s3" object, one that is a JSON list
    good = upload(["images/Training/Kiwi/1.jpg"])
    event = sqs_event(events_dir, [*good, Obj("images/Training/Kiwi/2.jpg", "e2", 1), Obj("images/x.jpg", "e3", 1)])
    body = json.loads(event["Records"][1]["body"])
    del body["Records"][0]["s3"]
    event["Records"][1]["body"] = json.dumps(body)
    event["Records"][2]["body"] = "[1, 2]"
    # WHEN the ingest Lambda processes it
    response = ingest.handler(event, LocalLambdaContext("ingest"))
    # THEN the two malformed messages are reported (kept by SQS, then the DLQ), the good image is recorded
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert failed == {event["Records"][1]["messageId"], event["Records"][2]["messageId"]}
    assert table().counts().pending == 1
