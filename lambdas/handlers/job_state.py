"""EventBridge → job_state: EMR Serverless job run state changes end batches and start the next one."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from lambdas import resources
from lambdas.handlers.observability import count, count_job_starts, gauge, logger, metrics, tracer
from lambdas.pipeline import JobStateAction, get_pipeline


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: Any) -> dict[str, Any]:
    """Apply one "EMR Serverless Job Run State Change"; returns the action taken (for logs and tests)."""
    detail = event.detail
    if event.source != resources.EMR_EVENT_SOURCE or event.detail_type != resources.EMR_JOB_STATE_DETAIL_TYPE:
        logger.info("ignored event", extra={"source": event.source, "detail_type": event.detail_type})
        return {"action": JobStateAction.IGNORED, "reason": "not an EMR Serverless job run state change"}
    outcome = get_pipeline().handle_job_state(
        application_id=detail.get("applicationId", ""), job_run_id=detail.get("jobRunId", ""), state=detail["state"]
    )
    logger.info(
        "job state handled",
        extra={
            "job_run_id": detail.get("jobRunId"),
            "state": detail["state"],
            "action": outcome.action,
            "reason": outcome.reason,
            "batch_id": outcome.batch_id,
            "images_done": outcome.images_done,
            "max_time_to_feature_s": max(outcome.time_to_feature_seconds, default=None),
        },
    )
    count("JobRunsFailed", int(outcome.action.failed_run))
    # One value per featurized image (s from its S3 event to now). Powertools 3.x (cloudwatch_emf provider,
    # add_metric) prints an EMF line and clears the metric set as soon as one metric holds 100 values (MAX_METRICS,
    # the EMF limit per document); @metrics.log_metrics prints the rest: 250 images → 100 + 100 + 50 values.
    for seconds in outcome.time_to_feature_seconds:
        gauge("TimeToFeatureSeconds", seconds)
    quarantined = int(outcome.action is JobStateAction.QUARANTINED) + outcome.start_quarantined
    count_job_starts(len(outcome.started), outcome.start_failures, quarantined)
    return {
        "action": outcome.action,
        "reason": outcome.reason,
        "batch_id": outcome.batch_id,
        "started": [run.job_run_id for run in outcome.started],
    }
