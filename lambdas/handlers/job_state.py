"""EventBridge → job_state: EMR Serverless job run state changes end batches and start the next one."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from lambdas import resources
from lambdas.handlers.observability import count, count_job_starts, gauge, job_run_metrics, logger, metrics, tracer
from lambdas.pipeline import JobStateAction, get_pipeline


def malformed_reason(detail: Any) -> str | None:
    """Why a job state event's ``detail`` cannot be applied (None when it can): it must be an object with a
    non-empty string ``state`` and ``jobRunId`` (docs/contracts.md "EMR Serverless job state events")."""
    if not isinstance(detail, dict):
        return f"detail is {type(detail).__name__}, not an object"
    for name in ("state", "jobRunId"):
        if not isinstance(detail.get(name), str) or not detail[name]:
            return f"no {name}"
    return None


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: Any) -> dict[str, Any]:
    """Apply one "EMR Serverless Job Run State Change"; returns the action taken (for logs and tests).

    A malformed event (no ``detail`` object, no ``state``, no ``jobRunId``) is logged, counted
    (``MalformedEvents``) and ignored: EventBridge would only deliver it again unchanged.
    """
    source, detail_type = event.get("source"), event.get("detail-type")
    if source != resources.EMR_EVENT_SOURCE or detail_type != resources.EMR_JOB_STATE_DETAIL_TYPE:
        logger.info("ignored event", extra={"source": source, "detail_type": detail_type})
        return {"action": JobStateAction.IGNORED, "reason": "not an EMR Serverless job run state change"}
    detail = event.get("detail")
    problem = malformed_reason(detail)
    if problem is not None:
        logger.warning("malformed job state event ignored", extra={"reason": problem, "event_id": event.get("id")})
        count("MalformedEvents", 1)
        return {"action": JobStateAction.IGNORED, "reason": f"malformed event: {problem}"}
    outcome = get_pipeline().handle_job_state(
        application_id=str(detail.get("applicationId") or ""), job_run_id=detail["jobRunId"], state=detail["state"]
    )
    logger.info(
        "job state handled",
        extra={
            "job_run_id": detail.get("jobRunId"),
            "state": detail["state"],
            "action": outcome.action,
            "reason": outcome.reason,
            "batch_id": outcome.batch_id,
            "batch_ids": outcome.batch_ids,
            "quarantined": outcome.quarantined,
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
    count_job_starts(len(outcome.started), outcome.start_failures, len(outcome.quarantined) + outcome.start_quarantined)
    job_run_metrics((run.images for run in outcome.started), outcome.sealed_backlog_images)
    return {
        "action": outcome.action,
        "reason": outcome.reason,
        "batch_id": outcome.batch_id,
        "batch_ids": outcome.batch_ids,
        "started": [run.job_run_id for run in outcome.started],
    }
