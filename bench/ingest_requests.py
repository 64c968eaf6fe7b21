"""AWS requests per photo through the real ingest handler at the deployed settings, and their cost per million photos.

``python -m bench.ingest_requests [--photos 2000] [--threshold 100]``: under ``moto.mock_aws``, resources provisioned as
the stack defines them (``fruits.local.provision``), ``--photos`` objects uploaded under ``images/`` (ingest reads no
image bytes, so small bodies), the bucket's notifications polled from SQS ten at a time (the event source mapping's
batch size) into ``lambdas.handlers.ingest.handler``. Every boto3 request the handler makes is recorded with its
parameters (botocore ``_make_api_call``), then priced:

* DynamoDB on demand: a transactional write costs 2 write request units (WRU) per item, a standard write 1 WRU,
  a strongly consistent read 1 read request unit (RRU), an eventually consistent one 0.5 (items here are < 1 KB /
  4 KB; "How AWS Pricing Works", DynamoDB). Query is counted as 1 RRU per call (results here are < 4 KB).
* SQS: 1 request per notification S3 sends, 1 ReceiveMessage and 1 DeleteMessageBatch per invocation (the event
  source mapping's polls that return nothing are not counted: they are billed whatever the traffic).
* Lambda: 1 request per invocation; duration is not measurable here (moto's latency is not AWS's), so the
  GB-second cost is given per 100 ms of billed duration.

Prices: US East (N. Virginia) list prices (no eu-west-3 figure was reachable from here; Paris is a little higher,
check https://aws.amazon.com/dynamodb/pricing/ before quoting): DynamoDB on demand 0.625 USD per million WRU and
0.125 USD per million RRU; SQS standard 0.40 USD per million requests; Lambda 0.20 USD per million requests and
0.0000133334 USD per GB-second on arm64.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections import Counter
from typing import Any

PRICES_USD_PER_MILLION = {"wru": 0.625, "rru": 0.125, "sqs_request": 0.40, "lambda_request": 0.20}
LAMBDA_ARM_USD_PER_GB_SECOND = 0.0000133334
LAMBDA_MEMORY_GB = 0.25  # cdk/components/ingestion.py memory_size=256
PRICE_SOURCE = ("US East (N. Virginia) list prices: DynamoDB on-demand WRU/RRU 0.625/0.125 USD per million, SQS "
                "0.40 USD per million requests, Lambda arm64 0.20 USD per million requests + 0.0000133334 USD/GB-s")


def capacity_units(service: str, operation: str, params: dict[str, Any]) -> tuple[float, float]:
    """``(WRU, RRU)`` of one DynamoDB request with items under 1 KB (writes) / 4 KB (reads); (0, 0) otherwise."""
    if service != "dynamodb":
        return 0.0, 0.0
    if operation == "TransactWriteItems":
        return 2.0 * len(params["TransactItems"]), 0.0
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return 1.0, 0.0
    if operation == "BatchWriteItem":
        return float(sum(len(v) for v in params["RequestItems"].values())), 0.0
    if operation == "GetItem":
        return 0.0, 1.0 if params.get("ConsistentRead") else 0.5
    if operation == "BatchGetItem":
        return 0.0, sum(len(v["Keys"]) * (1.0 if v.get("ConsistentRead") else 0.5)
                        for v in params["RequestItems"].values())
    if operation == "TransactGetItems":
        return 0.0, 2.0 * len(params["TransactItems"])
    if operation in ("Query", "Scan"):
        return 0.0, 1.0 if params.get("ConsistentRead") else 0.5
    return 0.0, 0.0


def measure(photos: int, threshold: int) -> dict[str, Any]:
    """Ingest ``photos`` notifications through the real handler; the requests it made and their units."""
    import boto3
    import botocore.client
    from moto import mock_aws

    from bench.ingestion import fake_aws_env
    from fruits.local import moto_compat
    from fruits.local.lambda_runtime import LocalLambdaContext, sqs_event
    from fruits.local.provision import lambda_environment, provision
    from lambdas import aws
    from lambdas.config import get_settings

    recorded: list[tuple[str, str, dict[str, Any]]] = []
    recording = {"on": False}
    original = botocore.client.BaseClient._make_api_call

    def record(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if recording["on"]:
            recorded.append((self.meta.service_model.service_name, operation, copy.deepcopy(params)))
        return original(self, operation, params)

    env = {"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR"}
    invocations = 0
    started = time.perf_counter()
    undo = moto_compat.install()  # as the tests and the demo: moto's transaction rollback is O(table) otherwise
    with fake_aws_env(env), mock_aws():
        botocore.client.BaseClient._make_api_call = record
        try:
            res = provision("fruits-requests")
            os.environ.update(lambda_environment(res, lake_uri=f"s3://{res.bucket}/lake", weights="random:0",
                                                 threshold=threshold, max_images=10 * threshold, pca_k=150))
            get_settings.cache_clear()
            aws.reset_clients()
            from lambdas.handlers import ingest

            s3, sqs = boto3.client("s3"), boto3.client("sqs")
            for index in range(photos):
                s3.put_object(Bucket=res.bucket, Key=f"images/Training/Class{index % 24}/{index}.jpg", Body=b"x")
            while True:
                messages = sqs.receive_message(QueueUrl=res.queue_url, MaxNumberOfMessages=10,
                                               WaitTimeSeconds=0).get("Messages", [])
                if not messages:
                    break
                recording["on"] = True
                response = ingest.handler(sqs_event(messages, res.queue_arn), LocalLambdaContext("ingest")) or {}
                recording["on"] = False
                invocations += 1
                failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
                done = [m for m in messages if m["MessageId"] not in failed]
                if done:
                    sqs.delete_message_batch(QueueUrl=res.queue_url, Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
        finally:
            botocore.client.BaseClient._make_api_call = original
            aws.reset_clients()
            get_settings.cache_clear()
            undo()
    by_operation = Counter(f"{service}.{operation}" for service, operation, _ in recorded)
    wru = sum(capacity_units(*call)[0] for call in recorded)
    rru = sum(capacity_units(*call)[1] for call in recorded)
    return {"photos": photos, "threshold": threshold, "invocations": invocations, "requests": len(recorded),
            "by_operation": dict(sorted(by_operation.items())), "wru": wru, "rru": rru,
            "seconds": round(time.perf_counter() - started, 1)}


def cost_per_million(m: dict[str, Any]) -> dict[str, float]:
    """USD per million photos from the measured counts (module doc: prices and what is counted)."""
    scale = 1_000_000 / m["photos"]
    sqs_requests = m["photos"] + 2 * m["invocations"]  # S3 -> SendMessage; ReceiveMessage + DeleteMessageBatch
    return {
        "dynamodb_usd": round(scale * (m["wru"] * PRICES_USD_PER_MILLION["wru"] + m["rru"]
                                       * PRICES_USD_PER_MILLION["rru"]) / 1e6, 3),
        "sqs_usd": round(scale * sqs_requests * PRICES_USD_PER_MILLION["sqs_request"] / 1e6, 3),
        "lambda_requests_usd": round(scale * m["invocations"] * PRICES_USD_PER_MILLION["lambda_request"] / 1e6, 3),
        "lambda_usd_per_100ms_billed": round(scale * m["invocations"] * 0.1 * LAMBDA_MEMORY_GB
                                             * LAMBDA_ARM_USD_PER_GB_SECOND, 3),
    }


def payload_of(m: dict[str, Any]) -> dict[str, Any]:
    """The result file's content: the measurement, per-photo figures, cost per million photos, README rows."""
    from bench.report import summary_row

    sqs_requests = m["photos"] + 2 * m["invocations"]
    per_photo = {
        "requests": round(m["requests"] / m["photos"], 3),
        "wru": round(m["wru"] / m["photos"], 3),
        "rru": round(m["rru"] / m["photos"], 3),
        "sqs_requests": round(sqs_requests / m["photos"], 3),
        "lambda_invocations": round(m["invocations"] / m["photos"], 3),
    }
    usd = cost_per_million(m)
    summary = [
        summary_row("AWS requests per photo (ingest handler)", per_photo["requests"], "requests",
                    note=f"{m['photos']} photos, threshold {m['threshold']}, SQS batches of 10"),
        summary_row("DynamoDB write / read request units per photo", f"{per_photo['wru']} / {per_photo['rru']}",
                    "WRU / RRU", note="transactional writes count 2 WRU per item"),
        summary_row("DynamoDB / SQS / Lambda requests, USD per million photos",
                    f"{usd['dynamodb_usd']} / {usd['sqs_usd']} / {usd['lambda_requests_usd']}", "USD",
                    note=f"+ {usd['lambda_usd_per_100ms_billed']} USD per 100 ms of Lambda duration; US East prices"),
    ]
    return {"benchmark": "ingest_requests",
            "description": "AWS requests per photo through the real ingest handler at the deployed batch settings, "
                           "priced per million photos (moto; counts are the transferable figure).",
            "summary": summary, "measured": m, "per_photo": per_photo, "usd_per_million_photos": usd,
            "price_source": PRICE_SOURCE, "notes": [f"Prices: {PRICE_SOURCE}."]}


def main(argv: list[str] | None = None) -> int:
    """Measure, print and write ``bench/results/ingest_requests.json``."""
    from bench.common import write_result

    parser = argparse.ArgumentParser(prog="bench.ingest_requests", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--threshold", type=int, default=100, help="BATCH_THRESHOLD (cdk.json default 100)")
    args = parser.parse_args(argv)
    payload = payload_of(measure(args.photos, args.threshold))
    path = write_result("ingest_requests", payload)
    print(payload["per_photo"], payload["usd_per_million_photos"], payload["measured"]["by_operation"], path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
