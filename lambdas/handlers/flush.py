"""Scheduled (EventBridge) or on-demand flush: seal whatever is pending so no image waits for ever."""

from __future__ import annotations

from typing import Any

from lambdas.handlers.observability import count, count_job_starts, job_run_metrics, logger, metrics, tracer
from lambdas.pipeline import get_pipeline


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Seal every pending image (≥ 1) into batches and start the next one; returns what was done."""
    outcome = get_pipeline().flush()
    logger.info("flush done", extra={"sealed": outcome.sealed, "started": [r.job_run_id for r in outcome.started]})
    count("BatchesSealed", len(outcome.sealed))
    count_job_starts(len(outcome.started), outcome.start_failures, outcome.start_quarantined)
    job_run_metrics((run.images for run in outcome.started), outcome.sealed_backlog_images)
    return {"sealed": outcome.sealed, "started": [run.job_run_id for run in outcome.started]}
