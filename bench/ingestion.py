"""Benchmark 3 — ingestion cost: AWS API calls per image / per batch and handler milliseconds per record.

Everything runs in-process under ``moto.mock_aws``: the resources are created as the CDK app would
(``fruits.local.provision``), real Fruits-360 JPEGs are uploaded under ``images/``, the bucket notification
puts real S3 event notifications on the SQS queue, and the real ingest handler (``lambdas.handlers.ingest``)
is invoked with real-shaped SQS events of up to ``ingest_batch_size`` records (``fruits.local.lambda_runtime``).
API calls are counted with a botocore ``before-call.*.*`` hook on the handler's own clients (``lambdas.aws``),
so the set-up calls (uploads, queue polling by the "event source mapping") are not counted.
Milliseconds are moto's in-process latency, not AWS's: the call counts are the transferable figure.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import pick_images, ratio, stopwatch, write_result
from bench.config import BenchConfig
from bench.report import summary_row

FAKE_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SECURITY_TOKEN": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "eu-west-3", "AWS_REGION": "eu-west-3"}


@contextmanager
def fake_aws_env(extra: dict[str, str]) -> Iterator[None]:
    """Set fake credentials, the Paris region and ``extra``; restore the whole environment afterwards.

    The Lambda environment set inside (DATA_BUCKET, …) is undone too, so nothing leaks into later code.
    """
    saved = dict(os.environ)
    os.environ.update(FAKE_ENV)
    os.environ.update(extra)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class CallCounter:
    """Counts API operations seen by botocore ``before-call`` events (``service.Operation`` -> count)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, event_name: str, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def attach(self, client: Any) -> None:
        """Hook every API call made by ``client``."""
        client.meta.events.register("before-call.*.*", self)

    def snapshot(self) -> Counter[str]:
        """A copy of the counts so far."""
        return Counter(self.calls)


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Ingest ``cfg.ingest_records`` real images through the real handler; write ``ingestion.json``; return it."""
    from moto import mock_aws

    images = pick_images(cfg.sample_dir, "Training", 1 + cfg.ingest_records // 24, cfg.seed)[: cfg.ingest_records]
    threshold = max(1, cfg.ingest_records // 2)
    with fake_aws_env({"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true",
                       "POWERTOOLS_LOG_LEVEL": "WARNING"}), mock_aws():
        invocations, counter = _ingest(images, threshold, cfg.ingest_batch_size)
    return _report(cfg, images, threshold, invocations, counter)


def _ingest(images: list[Path], threshold: int, batch_size: int) -> tuple[list[dict[str, Any]], CallCounter]:
    import boto3

    from fruits.local.lambda_runtime import LocalLambdaContext, sqs_event
    from fruits.local.provision import lambda_environment, provision
    from lambdas import aws
    from lambdas.config import get_settings

    res = provision("fruits-bench")
    env = lambda_environment(res, lake_uri=f"s3://{res.bucket}/lake", weights="random:0", threshold=threshold,
                             max_images=10 * threshold, pca_k=150)
    os.environ.update(env)
    get_settings.cache_clear()
    aws.reset_clients()
    counter = CallCounter()
    for service in ("dynamodb", "s3", "emr-serverless"):
        counter.attach(aws.client(service))
    from lambdas.handlers import ingest

    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    for path in images:
        s3.put_object(Bucket=res.bucket, Key=f"images/Training/{path.parent.name}/{path.name}",
                      Body=path.read_bytes())
    invocations = []
    while True:
        messages = sqs.receive_message(QueueUrl=res.queue_url, MaxNumberOfMessages=min(batch_size, 10),
                                       AttributeNames=["All"], WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            break
        before = counter.snapshot()
        with stopwatch() as t:
            response = ingest.handler(sqs_event(messages, res.queue_arn), LocalLambdaContext("ingest")) or {}
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        calls = counter.snapshot() - before
        invocations.append({"records": len(messages), "failed": len(failed), "ms": round(1000 * t["seconds"], 2),
                            "calls": dict(calls), "sealed": "s3.PutObject" in calls})
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(QueueUrl=res.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
    aws.reset_clients()
    get_settings.cache_clear()
    return invocations, counter


def _report(cfg: BenchConfig, images: list[Path], threshold: int, invocations: list[dict[str, Any]],
            counter: CallCounter) -> dict[str, Any]:
    records = sum(i["records"] for i in invocations)  # may include the s3:TestEvent of the notification set-up
    n_images = len(images)
    failed = sum(i["failed"] for i in invocations)
    total_calls = sum(counter.calls.values())
    plain = [i for i in invocations if not i["sealed"]]
    sealing = [i for i in invocations if i["sealed"]]
    plain_records = sum(i["records"] for i in plain)
    plain_calls = sum(sum(i["calls"].values()) for i in plain)
    per_record_plain = ratio(plain_calls, plain_records - (records - n_images))
    batches = sum(i["calls"].get("s3.PutObject", 0) for i in invocations)  # one manifest per sealed batch
    seal_extra = None
    if sealing and per_record_plain is not None:
        seal_calls = sum(sum(i["calls"].values()) for i in sealing)
        seal_records = sum(i["records"] for i in sealing)
        seal_extra = round((seal_calls - per_record_plain * seal_records) / max(batches, 1), 1)
    ms_per_record = ratio(sum(i["ms"] for i in invocations), records)
    ms_plain = ratio(sum(i["ms"] for i in plain), plain_records)
    doc = {
        "description": f"{n_images} real JPEG uploads -> S3 notifications -> SQS -> real ingest handler "
                       f"(batches of {cfg.ingest_batch_size} records), BATCH_THRESHOLD={threshold}, all under moto.",
        "summary": [
            summary_row("AWS API calls per image (all)", ratio(total_calls, n_images), "calls",
                        note=f"{total_calls} calls for {n_images} images, {batches} batch(es) sealed"),
            summary_row("AWS API calls per image (invocations that seal nothing)", per_record_plain, "calls"),
            summary_row("extra AWS API calls per sealed batch", seal_extra, "calls",
                        note=f"batch of {threshold} images: claim, manifest, seal, start_job_run"),
            summary_row("handler time per record (all, moto in-process)", ms_per_record, "ms"),
            summary_row("handler time per record (no sealing, moto in-process)", ms_plain, "ms"),
            summary_row("failed records", failed, "", "0", failed == 0),
        ],
        "calls_by_operation": dict(sorted(counter.calls.items())),
        "invocations": invocations,
        "threshold": threshold,
        "images": n_images,
        "sqs_records": records,
        "notes": [f"{records - n_images} extra SQS record(s): the s3:TestEvent sent when the notification is "
                  "configured (skipped by the handler, no API call).",
                  "Counts come from botocore before-call hooks on the handler's clients; retries would add "
                  "calls on AWS (none under moto). Times are moto's, for relative comparison only."],
    }
    write_result("ingestion", doc, cfg.results_dir)
    return doc
