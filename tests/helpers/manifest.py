"""Test helpers: read the manifest table and S3 manifests, watch EMR Serverless job run starts."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from lambdas import aws
from lambdas.dal import ManifestTable
from lambdas.dal.codec import from_item
from tests.helpers.aws_fixtures import BUCKET, TABLE


def table() -> ManifestTable:
    return ManifestTable(TABLE, aws.client("dynamodb"))


def scan(kind: str) -> list[dict[str, Any]]:
    """Every item of ``type`` ``kind`` (image | batch | job_run), straight from the table."""
    items = []
    for page in aws.client("dynamodb").get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True):
        items += [from_item(raw) for raw in page["Items"]]
    return [item for item in items if item and item.get("type") == kind]


def read_manifest(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON-lines manifest of a sealed batch, parsed from S3."""
    prefix = f"s3://{BUCKET}/"
    assert batch["manifest_uri"].startswith(prefix)
    body = aws.client("s3").get_object(Bucket=BUCKET, Key=batch["manifest_uri"][len(prefix) :])["Body"].read()
    return [json.loads(line) for line in body.decode("utf-8").splitlines()]


@dataclass
class JobRunWatch:
    """botocore event hooks on the pipeline's EMR Serverless client: every StartJobRun, and overlap checks.

    A job run counts as active from its StartJobRun until the test delivers its terminal event (``finished``).
    """

    requests: list[dict[str, Any]] = field(default_factory=list)
    job_run_ids: list[str] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    max_active: int = 0
    overlaps: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail_next: int = 0

    def install(self) -> JobRunWatch:
        events = aws.client("emr-serverless").meta.events
        events.register("provide-client-params.emr-serverless.StartJobRun", self._before)
        events.register("after-call.emr-serverless.StartJobRun", self._after)
        return self

    def _before(self, params: dict[str, Any], **_: Any) -> None:
        with self.lock:
            if self.active:
                self.overlaps.append(f"{params['clientToken']} started while {sorted(self.active)} active")
            self.requests.append(json.loads(json.dumps(params)))

    def _after(self, parsed: dict[str, Any], http_response: Any, **_: Any) -> None:
        if http_response.status_code >= 300:
            return
        with self.lock:
            self.job_run_ids.append(parsed["jobRunId"])
            self.active.add(parsed["jobRunId"])
            self.max_active = max(self.max_active, len(self.active))

    def finished(self, job_run_id: str) -> None:
        with self.lock:
            self.active.discard(job_run_id)

    @property
    def client_tokens(self) -> list[str]:
        return [request["clientToken"] for request in self.requests]


def ingest_objects(events_dir: Any, objects: list[Any]) -> None:
    """Deliver the objects' notifications to the ingest handler in SQS batches of 10 (all must succeed)."""
    from fruits.local.lambda_runtime import LocalLambdaContext
    from lambdas.handlers import ingest
    from tests.helpers.aws_fixtures import sqs_event

    for start in range(0, len(objects), 10):
        response = ingest.handler(sqs_event(events_dir, objects[start : start + 10]), LocalLambdaContext("ingest"))
        assert response == {"batchItemFailures": []}


def send_job_state(events_dir: Any, state: str, job_run_id: str, application_id: str | None = None) -> dict[str, Any]:
    """Deliver a real-shaped EMR Serverless job run state change to the job_state handler."""
    from fruits.local.lambda_runtime import LocalLambdaContext
    from lambdas.config import get_settings
    from lambdas.handlers import job_state
    from tests.helpers.aws_fixtures import job_state_event

    app_id = application_id or get_settings().emr_application_id
    return job_state.handler(job_state_event(events_dir, state, job_run_id, app_id), LocalLambdaContext("job-state"))
