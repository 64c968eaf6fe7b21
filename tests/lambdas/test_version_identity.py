"""Issue 18 (items 2, 3, 4, 6): the identity of a photo is its S3 version, ordered by lambdas.contracts.is_newer."""

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
T = "2026-12-01T12:00:0{}.000Z"


def created(version: str, etag: str, sequencer: str, second: int) -> ImageRef:
    """The ObjectCreated event of one version of KEY (versioned bucket: it carries the version id)."""
    return ImageRef(BUCKET, KEY, etag, 10, version, sequencer=sequencer, event_time=T.format(second))


def removed(marker: str, sequencer: str, second: int) -> ImageRef:
    """The ObjectRemoved:DeleteMarkerCreated event of KEY (its version id is the delete marker's)."""
    return ImageRef(BUCKET, KEY, "", 0, marker, sequencer=sequencer, event_time=T.format(second))


def sealed_lines() -> list[dict]:
    """Flush, then the manifest lines of the batch just sealed."""
    [batch_id] = get_pipeline().flush().sealed
    return read_manifest(table().get_batch(batch_id))


def test_a_then_b_then_a_again_featurizes_the_live_version(moto_aws) -> None:
    # GIVEN key K written with bytes A (v1), then B (v2), then A again (v3): three versions, in order
    pipeline = get_pipeline()
    for ref in (created("v1", "etag-a", "01", 1), created("v2", "etag-b", "02", 2), created("v3", "etag-a", "03", 3)):
        assert pipeline.ingest(ref).recorded
    # WHEN everything pending is sealed
    lines = sealed_lines()
    # THEN the manifest holds the live version v3 (bytes equal to v1 are still the newest version)
    assert [(line["version_id"], line["etag"], line["sequencer"]) for line in lines] == [("v3", '"etag-a"', "03")]


def test_delete_then_reupload_of_the_same_bytes_is_featurized_again(moto_aws, events_dir: Path) -> None:
    # GIVEN version v1 (bytes A) featurized by a batch that SUCCEEDED
    pipeline = get_pipeline()
    assert pipeline.ingest(created("v1", "etag-a", "01", 1)).recorded
    [run] = pipeline.flush().started
    assert send_job_state(events_dir, "SUCCESS", run.job_run_id)["action"] == "succeeded"
    # WHEN the object is deleted, then the same bytes are uploaded again (v2), and the events are delivered twice
    for _ in range(2):
        pipeline.remove(removed("dm1", "02", 2))
        pipeline.ingest(created("v2", "etag-a", "03", 3))
    # THEN the next batch featurizes v2 and carries the erasure of the delete (its time and marker id)
    [batch_id] = pipeline.flush().sealed
    batch = table().get_batch(batch_id)
    assert [(line["version_id"], line["etag"]) for line in read_manifest(batch)] == [("v2", '"etag-a"')]
    erase_key = batch["manifest_uri"].removeprefix(f"s3://{BUCKET}/").removesuffix(".jsonl") + ".erase.jsonl"
    body = aws.client("s3").get_object(Bucket=BUCKET, Key=erase_key)["Body"].read().decode()
    [erasure] = [json.loads(line) for line in body.splitlines()]
    assert erasure == {
        "image_uri": f"s3://{BUCKET}/{KEY}",
        "sequencer": "02",
        "reason": "deleted",
        "time": T.format(2),
        "version_id": "dm1",
    }


def test_a_listed_version_wins_over_a_late_event_of_an_older_version(moto_aws) -> None:
    # GIVEN the live object of K found by listing (reconcile/backfill: no event, LastModified = now)
    aws.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b"bytes B")
    pipeline = get_pipeline()
    assert pipeline.backfill().recorded == 1
    # WHEN the late event of an older version (bytes A, written long before) arrives
    late = pipeline.ingest(ImageRef(BUCKET, KEY, "etag-a", 10, sequencer="00A1", event_time="2026-01-01T00:00:00Z"))
    # THEN it is recorded as superseded, and the sealed manifest holds the listed version, with its LastModified
    assert late.superseded == 1
    [line] = sealed_lines()
    assert line["etag"] != '"etag-a"' and line["sequencer"] is None and line["last_modified"]
    # AND listing the bucket again records nothing more
    assert pipeline.backfill().recorded == 0


def test_the_same_version_listed_after_its_event_is_not_recorded_twice(moto_aws) -> None:
    # GIVEN an object recorded from its event
    put = aws.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b"bytes A")
    etag = put["ETag"].strip('"')
    written = aws.client("s3").head_object(Bucket=BUCKET, Key=KEY)["LastModified"]  # S3's eventTime ~ LastModified
    event = ImageRef(BUCKET, KEY, etag, 7, sequencer="00B1", event_time=written.isoformat().replace("+00:00", "Z"))
    pipeline = get_pipeline()
    assert pipeline.ingest(event).recorded
    # WHEN the bucket is listed (reconcile) and the event is delivered again
    assert pipeline.backfill().recorded == 0
    assert pipeline.ingest(event).duplicate
    # THEN one image is pending
    assert table().counts().pending == 1


def test_a_record_naming_another_bucket_is_refused_not_recorded_not_retried(moto_aws, events_dir: Path) -> None:
    # GIVEN a notification that names a bucket other than DATA_BUCKET
    event = sqs_event(events_dir, [Obj(KEY, "etag-x", 10, sequencer="01")], bucket="someone-elses-bucket")
    # WHEN the ingest Lambda processes it
    response = ingest.handler(event, LocalLambdaContext("ingest"))
    # THEN it is acknowledged (no retry) and nothing is recorded
    assert response == {"batchItemFailures": []}
    assert table().counts().pending == 0 and table().key_versions("someone-elses-bucket", KEY) == []
    # AND the service says why
    outcome = get_pipeline().ingest(ImageRef("someone-elses-bucket", KEY, "etag-x", 10))
    assert outcome.skipped == "other_bucket" and not outcome.recorded
