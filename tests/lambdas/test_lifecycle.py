"""Image life cycle on the manifest side: removed objects, overwrites ordered by the S3 event sequencer."""

from __future__ import annotations

import json
from pathlib import Path

from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas import aws
from lambdas.handlers import ingest
from lambdas.logic.keys import ImageRef
from lambdas.pipeline import get_pipeline
from tests.helpers.aws_fixtures import BUCKET, Obj, sqs_event
from tests.helpers.manifest import read_manifest, send_job_state, table

KEY = "images/Training/Kiwi/k.jpg"


def s3_notification(events_dir: Path, event_name: str, key: str, sequencer: str, etag: str = "") -> dict:
    """An SQS event carrying one S3 notification ``event_name`` for ``key`` (removals have no eTag / size)."""
    event = sqs_event(events_dir, [Obj(key, etag or "none", 10)])
    body = json.loads(event["Records"][0]["body"])
    record = body["Records"][0]
    record["eventName"] = event_name
    record["s3"]["object"]["sequencer"] = sequencer
    if event_name.startswith("ObjectRemoved:"):
        del record["s3"]["object"]["eTag"], record["s3"]["object"]["size"]
    event["Records"][0]["body"] = json.dumps(body)
    return event


def deliver(event: dict) -> None:
    assert ingest.handler(event, LocalLambdaContext("ingest")) == {"batchItemFailures": []}


def erase_lines(batch: dict) -> list[dict]:
    key = batch["manifest_uri"].removeprefix(f"s3://{BUCKET}/").removesuffix(".jsonl") + ".erase.jsonl"
    body = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines()]


def test_an_image_deleted_before_featurization_is_never_in_a_manifest(moto_aws, events_dir: Path) -> None:
    # GIVEN two images recorded from their ObjectCreated events (threshold 100: nothing sealed yet)
    deliver(s3_notification(events_dir, "ObjectCreated:Put", KEY, "0000A1", etag="e-k"))
    deliver(s3_notification(events_dir, "ObjectCreated:Put", "images/Training/Kiwi/other.jpg", "0000A2", etag="e-o"))
    # WHEN the first object is deleted, then everything pending is flushed
    deliver(s3_notification(events_dir, "ObjectRemoved:Delete", KEY, "0000B1"))
    outcome = get_pipeline().flush()
    # THEN the batch's manifest holds only the other image, and nothing needs erasing
    [batch] = table().all_batches()
    assert outcome.sealed == [batch["batch_id"]]
    assert [r["key"] for r in read_manifest(batch)] == ["images/Training/Kiwi/other.jpg"]
    assert table().counts().erasures == 0 and table().pending_erasures() == []


def test_an_image_deleted_after_it_was_featurized_is_in_the_next_erase_jsonl(moto_aws, events_dir: Path) -> None:
    # GIVEN an image featurized by a batch that SUCCEEDED
    deliver(s3_notification(events_dir, "ObjectCreated:Put", KEY, "0000A1", etag="e-k"))
    pipeline = get_pipeline()
    [run] = pipeline.flush().started
    assert send_job_state(events_dir, "SUCCESS", run.job_run_id)["action"] == "succeeded"
    # WHEN its object is deleted (delete marker), the event delivered twice, then a flush runs
    for _ in range(2):
        deliver(s3_notification(events_dir, "ObjectRemoved:DeleteMarkerCreated", KEY, "0000B1"))
    assert table().counts().erasures == 1
    outcome = pipeline.flush()
    # THEN a batch of 0 images is sealed that carries the erasure (one line, per the contract)
    [sealed] = outcome.sealed
    batch = table().get_batch(sealed)
    assert batch["image_count"] == 0 and read_manifest(batch) == []
    assert erase_lines(batch) == [
        {
            "image_uri": f"s3://{BUCKET}/{KEY}",
            "sequencer": "0000B1",
            "reason": "deleted",
            "time": "2026-11-22T02:40:11.512Z",  # the delete event's eventTime
            "version_id": None,  # unversioned bucket: no delete marker id
        }
    ]
    assert table().counts().erasures == 0


def test_events_out_of_order_only_the_newest_version_is_featurized(moto_aws, events_dir: Path) -> None:
    # GIVEN key K overwritten: content B (sequencer ...A2) arrives BEFORE content A (sequencer ...A1)
    deliver(s3_notification(events_dir, "ObjectCreated:Put", KEY, "0000A2", etag="etag-b"))
    late = get_pipeline().ingest(ImageRef(BUCKET, KEY, "etag-a", 10, sequencer="A1", event_time="2026-11-25T02:00Z"))
    # THEN the late, older version is recorded as superseded and never pending
    assert late.recorded and late.superseded == 1 and late.pending == 1
    # WHEN a third version C arrives in order (sequencer ...A3) and everything is flushed
    deliver(s3_notification(events_dir, "ObjectCreated:Put", KEY, "0000A3", etag="etag-c"))
    get_pipeline().flush()
    # THEN the manifest holds only C, with its sequencer and event time; B was superseded while pending
    [batch] = table().all_batches()
    [line] = read_manifest(batch)
    assert (line["etag"], line["sequencer"]) == ('"etag-c"', "0000A3") and line["event_time"]
    fates = {v["etag"]: (v["status"], v.get("fate")) for v in table().key_versions(BUCKET, KEY)}
    assert fates == {
        "etag-a": ("SUPERSEDED", "superseded"),
        "etag-b": ("CLAIMED", "superseded"),
        "etag-c": ("CLAIMED", None),
    }
