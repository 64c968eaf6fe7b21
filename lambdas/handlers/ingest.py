"""SQS → ingest: each message body is an S3 event notification; record created / removed images, seal when due."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from lambdas.handlers.observability import (
    count,
    count_job_starts,
    job_run_metrics,
    key_hash,
    logger,
    metrics,
    tracer,
)
from lambdas.logic.events import MalformedRecord, s3_changes
from lambdas.logic.keys import ImageRef
from lambdas.pipeline import IngestOutcome, get_pipeline
from lambdas.service.batching import OTHER_BUCKET


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    """One SQS message = one S3 notification (``s3:TestEvent`` is skipped); raises to retry the message.

    A malformed message is logged, counted (``MalformedEvents``) and reported as this message's failure, so SQS
    keeps it and moves it to the DLQ after INGEST_MAX_RECEIVE_COUNT receives (nothing lost; the DLQ alarm
    fires). A record naming a bucket other than DATA_BUCKET is refused: logged, counted (``ObjectsRefused``),
    acknowledged (not retried).
    """
    try:
        changes = s3_changes(record.body)
    except MalformedRecord as err:  # kept, not dropped: SQS moves it to the DLQ (alarm) after 5 receives
        logger.warning("malformed message", extra={"message_id": record.message_id, "error": str(err)})
        count("MalformedEvents", 1)
        raise
    if not changes:
        logger.info("skipped s3:TestEvent", extra={"message_id": record.message_id})
        return
    pipeline = get_pipeline()
    for event, ref in changes:
        if event.startswith("ObjectRemoved:"):  # Delete / DeleteMarkerCreated
            outcome = pipeline.remove(ref)
            if outcome.skipped != OTHER_BUCKET:
                logger.info(
                    "object removed",
                    extra={"uri_sha256": key_hash(ref.uri), "images": outcome.removed, "skipped": outcome.skipped},
                )
        elif event.startswith("ObjectCreated:"):
            outcome = pipeline.ingest(ref)
            if outcome.skipped != OTHER_BUCKET:
                _log_recorded(ref, outcome)
        else:
            logger.info("skipped object", extra={"uri_sha256": key_hash(ref.uri), "reason": f"event_{event}"})
            count("ObjectsSkipped", 1)
            continue
        if outcome.skipped == OTHER_BUCKET:
            logger.warning("record of another bucket refused", extra={"bucket": ref.bucket, "event": event})
            count("ObjectsRefused", 1)
            continue
        count("ImagesRemoved", outcome.removed)
        count("ImagesSuperseded", outcome.superseded)
        count("BatchesSealed", len(outcome.sealed))
        count_job_starts(len(outcome.started), outcome.start_failures, outcome.start_quarantined)
        job_run_metrics((run.images for run in outcome.started), outcome.sealed_backlog_images)


def _log_recorded(ref: ImageRef, outcome: IngestOutcome) -> None:
    if outcome.skipped:
        logger.info("skipped object", extra={"uri_sha256": key_hash(ref.uri), "reason": outcome.skipped})
        count("ObjectsSkipped", 1)
    elif outcome.duplicate:
        logger.info("duplicate delivery ignored", extra={"uri_sha256": key_hash(ref.uri)})
        count("DuplicatesIgnored", 1)
    else:
        logger.info("image recorded", extra={"uri_sha256": key_hash(ref.uri), "pending": outcome.pending})
        count("ImagesRecorded", 1)


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId")
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS event → partial batch response (``batchItemFailures`` lists messages to retry).

    One ``BatchProcessor`` per invocation (it keeps per-batch state), so callers that run the handler from
    several threads at once (tests, the local runner) cannot mix their records.
    """
    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
