"""The bucket notification as provisioned locally (same rule as the stack) → SQS → the real ingest handler."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from fruits.local.lambda_runtime import drain_queue
from fruits.local.moto_server import moto_server
from fruits.local.provision import LocalResources, lambda_environment, provision
from lambdas import aws
from lambdas.config import get_settings
from lambdas.handlers import ingest
from lambdas.handlers.observability import key_hash
from lambdas.pipeline import get_pipeline


@pytest.fixture
def local_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalResources]:
    """The demo's moto server with the provisioned resources; the Lambda env set as CDK sets it, metrics on."""
    with moto_server():
        res = provision()
        env = lambda_environment(res, lake_uri="/nonexistent-lake", weights="random", threshold=100,
                                 max_images=1000, pca_k=8)  # fmt: skip
        for name, value in {**env, "POWERTOOLS_METRICS_DISABLED": "false"}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        aws.reset_clients()
        drain_queue(res.queue_url, res.queue_arn, ingest.handler)  # the s3:TestEvent sent on configuration
        try:
            yield res
        finally:
            get_settings.cache_clear()
            aws.reset_clients()


def test_uploads_with_image_suffixes_in_any_case_are_notified_and_recorded_at_once(
    local_stack: LocalResources, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the bucket notification as provisioned (every object under images/, no suffix filter)
    res = local_stack
    images = ["images/Training/Kiwi/a.Jpg", "images/Training/Kiwi/b.JPEG", "images/Training/Kiwi/c.PnG",
              "images/Training/Kiwi/d.jpg"]  # fmt: skip
    others = ["images/Training/Kiwi/notes.txt", "manifests/not-an-upload.jpg"]
    capsys.readouterr()

    # WHEN photos with mixed-case suffixes, a text file under images/ and a key outside it are uploaded,
    # and the queue is polled into the real ingest handler (the SQS event source mapping)
    s3 = boto3.client("s3")
    for key in images + others:
        s3.put_object(Bucket=res.bucket, Key=key, Body=f"bytes of {key}".encode())
    polled = drain_queue(res.queue_url, res.queue_arn, ingest.handler)

    # THEN S3 notified every key under images/ (and nothing else), all were acknowledged, the four photos are
    # pending at once (no wait for reconcile), and the text file was skipped with its reason and counted
    assert (polled.received, polled.deleted, polled.failed) == (5, 5, 0)
    status = get_pipeline().status()
    assert status["pending"] == 4 and status["images"]["PENDING"] == 4
    skipped = [(r.uri_sha256, r.reason) for r in caplog.records if r.getMessage() == "skipped object"]  # type: ignore[attr-defined]
    assert skipped == [(key_hash(f"s3://{res.bucket}/images/Training/Kiwi/notes.txt"), "not_an_image_suffix")]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    totals = {name: sum(sum(e.get(name, [])) for e in emf) for name in ("ImagesRecorded", "ObjectsSkipped")}
    assert totals == {"ImagesRecorded": 4, "ObjectsSkipped": 1}


    # WHEN one photo is deleted from the bucket and the queue is polled
    s3.delete_object(Bucket=res.bucket, Key="images/Training/Kiwi/d.jpg")
    polled = drain_queue(res.queue_url, res.queue_arn, ingest.handler)
    # THEN S3 notified the delete through the same queue (the stack's ObjectRemoved rule) and the ingest Lambda
    # marked the image removed: it will never be featurized
    assert (polled.received, polled.deleted, polled.failed) == (1, 1, 0)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert sum(sum(e.get("ImagesRemoved", [])) for e in emf) == 1
