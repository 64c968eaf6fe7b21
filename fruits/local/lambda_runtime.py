"""What the Lambda service does around our handlers, reproduced for the local run.

- :class:`LocalLambdaContext` — the context object Powertools reads (function name, request id, …).
- :func:`poll_queue_once` — the SQS event source mapping: receive up to 10 messages, invoke the handler
  with a real-shaped SQS event, delete the messages not reported in ``batchItemFailures``
  (partial batch response), leave the others to come back after the visibility timeout.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from lambdas.resources import INGEST_BATCH_SIZE, REGION

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalLambdaContext:
    """Minimal ``LambdaContext`` with the attributes Powertools ``inject_lambda_context`` reads."""

    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        """ARN shaped like the real one, account 123456789012 as moto uses."""
        return f"arn:aws:lambda:{REGION}:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """A generous constant: the local run has no Lambda timeout."""
        return 300_000


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Wrap ``ReceiveMessage`` results into the event the SQS → Lambda event source mapping sends."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


@dataclass
class PollResult:
    """What one poll did: messages received, deleted (processed), and left for retry."""

    received: int = 0
    deleted: int = 0
    failed: int = 0


def poll_queue_once(queue_url: str, queue_arn: str, handler: Handler, function_name: str = "ingest") -> PollResult:
    """Receive one batch (≤ 10) from ``queue_url`` and invoke ``handler`` like Lambda would.

    Returns the counts; raises whatever boto3 raises if the queue is unreachable. A handler exception
    leaves the whole batch for redelivery, as Lambda does.
    """
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=INGEST_BATCH_SIZE,
        AttributeNames=["All"],
        WaitTimeSeconds=0,
    ).get("Messages", [])
    result = PollResult(received=len(messages))
    if not messages:
        return result
    try:
        response = handler(sqs_event(messages, queue_arn), LocalLambdaContext(function_name)) or {}
    except Exception:  # the Lambda invocation failed: every message comes back later
        result.failed = len(messages)
        return result
    failed_ids = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    done = [m for m in messages if m["MessageId"] not in failed_ids]
    for start in range(0, len(done), 10):
        chunk = done[start : start + 10]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )
    result.deleted, result.failed = len(done), len(failed_ids)
    return result


def drain_queue(
    queue_url: str, queue_arn: str, handler: Handler, on_progress: Callable[[int], None] | None = None
) -> PollResult:
    """Poll until the queue returns nothing; ``on_progress(n)`` after each batch with messages deleted."""
    total = PollResult()
    while True:
        one = poll_queue_once(queue_url, queue_arn, handler)
        if one.received == 0:
            return total
        total.received += one.received
        total.deleted += one.deleted
        total.failed += one.failed
        if on_progress:
            on_progress(one.deleted)
