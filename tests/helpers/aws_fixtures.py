"""Fixtures and event builders for the ingestion tests (a pytest plugin registered in ``tests/conftest.py``):
env settings, moto (S3, DynamoDB, EMR Serverless), S3/SQS/EventBridge event builders.

moto notes (quirks handled here, not hidden):

* its in-process backends are not atomic per request (``TransactWriteItems`` snapshots the whole table with
  ``deepcopy`` and restores it on a failed condition, which would undo other threads' writes). Real DynamoDB
  applies each request atomically, so ``api_calls`` serialises each boto3 request with one lock; the
  interleaving *between* requests, which the pipeline's conditions and transactions must survive, stays
  concurrent (8 threads really interleave their calls). Measured without the lock: moto lost writes and the
  1,000-event test sealed 9 batches instead of 10.
* that whole-table ``deepcopy`` makes every transaction O(table size): 1,000 recorded images took ~190 s.
  ``moto_aws`` installs :func:`fruits.local.moto_compat.install_fast_transaction_rollback`: a snapshot of only
  the items the transaction names (it cannot touch any other), restored when moto cancels the transaction.
* moto's EMR Serverless lists the job runs of an application that has none as "Application … does not exist";
  ``moto_aws`` installs every fix of :mod:`fruits.local.moto_compat` (:func:`~fruits.local.moto_compat.install`),
  like the demo's moto server, so both see the same AWS behaviour.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import botocore.client
import pytest

from fruits.local import moto_compat
from lambdas import aws, resources
from lambdas.config import get_settings

BUCKET = "fruits-data"
TABLE = "fruits-manifest"
ROLE_ARN = "arn:aws:iam::123456789012:role/fruits-emr-job-role"


@dataclass
class ApiCalls:
    """Every boto3 request made during a test: ``(service, operation, params)``; each runs under one lock."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def named(self, operation: str) -> list[dict[str, Any]]:
        return [params for _, op, params in self.calls if op == operation]

    def count(self, service: str | None = None) -> int:
        return sum(1 for svc, _, _ in self.calls if service is None or svc == service)


@pytest.fixture
def api_calls(monkeypatch: pytest.MonkeyPatch) -> ApiCalls:
    recorder = ApiCalls()
    original = botocore.client.BaseClient._make_api_call

    def make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        with recorder.lock:
            recorder.calls.append((self.meta.service_model.service_name, operation_name, copy.deepcopy(api_params)))
            return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
    return recorder


@pytest.fixture
def lambda_env(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Settings env vars of docs/contracts.md (EMR_APPLICATION_ID is set by ``aws``), metrics off."""
    env = {
        "DATA_BUCKET": BUCKET,
        "MANIFEST_TABLE": TABLE,
        "EMR_EXECUTION_ROLE_ARN": ROLE_ARN,
        "JOB_ENTRY_POINT": f"s3://{BUCKET}/code/main.py",
        "JOB_PY_FILES": f"s3://{BUCKET}/code/spark_jobs.zip",
        "JOB_WEIGHTS": "random:7",
        "PCA_K": "16",
        "BATCH_THRESHOLD": "100",
        "BATCH_MAX_IMAGES": "1000",
        "MAX_ATTEMPTS": "3",
        "POWERTOOLS_METRICS_DISABLED": "true",
        # moto's job runs report SUCCESS at once: reconcile must not poll them (the local runner sets 0 too)
        "RECONCILE_LOST_EVENT_MINUTES": "0",
        "POWERTOOLS_METRICS_NAMESPACE": "Fruits",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    aws.reset_clients()
    yield env
    get_settings.cache_clear()
    aws.reset_clients()


def create_table(client: Any) -> None:
    """The manifest table as CDK defines it (pk/sk, GSI gsi1 projecting ALL, on-demand)."""
    names = (
        resources.TABLE_PARTITION_KEY,
        resources.TABLE_SORT_KEY,
        resources.GSI1_PARTITION_KEY,
        resources.GSI1_SORT_KEY,
    )
    client.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in names],
        KeySchema=[{"AttributeName": names[0], "KeyType": "HASH"}, {"AttributeName": names[1], "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": resources.GSI1_NAME,
                "KeySchema": [
                    {"AttributeName": names[2], "KeyType": "HASH"},
                    {"AttributeName": names[3], "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


@pytest.fixture
def moto_aws(lambda_env: dict[str, str], api_calls: ApiCalls, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiCalls]:
    """moto started before any client; bucket, table and EMR Serverless application created; settings ready."""
    from moto import mock_aws

    undo = moto_compat.install()
    try:
        with mock_aws():
            aws.reset_clients()
            aws.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
            create_table(aws.client("dynamodb"))
            app = aws.client("emr-serverless").create_application(name="fruits", releaseLabel="emr-7.9.0", type="SPARK")
            monkeypatch.setenv("EMR_APPLICATION_ID", app["applicationId"])
            get_settings.cache_clear()
            api_calls.calls.clear()
            yield api_calls
            aws.reset_clients()
    finally:
        undo()


def load_event(events_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((events_dir / name).read_text())


@dataclass(frozen=True)
class Obj:
    """One uploaded object version; ``sequencer`` and ``event_time`` are its S3 event's (None: the fixture's)."""

    key: str
    etag: str
    size: int
    version_id: str | None = None
    sequencer: str | None = None
    event_time: str | None = None


# S3 gives each event of a key a greater sequencer (AWS S3 "Event message structure"): uploads here do the same.
_SEQUENCERS = itertools.count(0x00673FD0AB0C8E5F21)


def upload(keys: list[str], *, body: bytes | None = None) -> list[Obj]:
    """Put small objects in the moto bucket (distinct bytes per key unless ``body``); returns their real ETags."""
    s3 = aws.client("s3")
    objects = []
    for key in keys:
        data = body if body is not None else f"fake image bytes of {key}".encode()
        response = s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        sequencer = f"{next(_SEQUENCERS):018X}"
        # S3's eventTime is the time of the write (the object's LastModified, to the second)
        event_time = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        objects.append(
            Obj(key, response["ETag"].strip('"'), len(data), response.get("VersionId"), sequencer, event_time)
        )
    return objects


def sqs_event(events_dir: Path, objects: list[Obj], *, bucket: str = BUCKET) -> dict[str, Any]:
    """An SQS event (one message per object) built from the real-shaped fixture; keys URL-encoded as S3 does."""
    template = load_event(events_dir, "sqs_s3_object_created.json")
    record_template = template["Records"][0]
    records = []
    for index, obj in enumerate(objects):
        body = json.loads(record_template["body"])
        s3 = body["Records"][0]["s3"]
        s3["bucket"]["name"] = bucket
        s3["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        s3["object"].update({"key": quote_plus(obj.key, safe="/"), "eTag": obj.etag, "size": obj.size})
        if obj.version_id:
            s3["object"]["versionId"] = obj.version_id
        if obj.sequencer:
            s3["object"]["sequencer"] = obj.sequencer
        if obj.event_time:
            body["Records"][0]["eventTime"] = obj.event_time
        record = copy.deepcopy(record_template)
        record["messageId"] = f"msg-{index:05d}-{abs(hash(obj.key)) % 10**8:08d}"
        record["body"] = json.dumps(body)
        records.append(record)
    return {"Records": records}


def job_state_event(events_dir: Path, state: str, job_run_id: str, application_id: str) -> dict[str, Any]:
    """An EMR Serverless job run state change from the fixture for ``state``, pointed at a real job run id."""
    event = load_event(events_dir, f"emr_job_run_{state.lower()}.json")
    event["detail"]["jobRunId"] = job_run_id
    event["detail"]["applicationId"] = application_id
    event["detail"]["arn"] = event["detail"]["arn"].rsplit("/applications/", 1)[0] + (
        f"/applications/{application_id}/jobruns/{job_run_id}"
    )
    return event
