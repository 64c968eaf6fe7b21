"""Scheduled (EventBridge, every minute) tick: seal pending images that waited BATCH_MAX_WAIT_SECONDS."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.handlers.observability import count, count_job_starts, gauge, job_run_metrics, logger, metrics, tracer
from lambdas.pipeline import get_pipeline


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Report the oldest pending age and the sealed backlog, seal if count or age is due; repair stuck batches."""
    outcome = get_pipeline().tick()
    gauge("PendingImages", outcome.pending, MetricUnit.Count)
    gauge("OldestPendingAgeSeconds", max(0.0, outcome.oldest_pending_age_seconds or 0.0))
    count("BatchesSealed", len(outcome.sealed))
    recovered = outcome.recovered
    count("JobRunsFailed", int(bool(recovered and recovered.action.failed_run)))
    quarantined = outcome.start_quarantined + len(recovered.quarantined if recovered else [])
    count_job_starts(len(outcome.started), outcome.start_failures, quarantined)
    job_run_metrics((run.images for run in outcome.started), outcome.sealed_backlog_images)
    if outcome.sealed or outcome.resumed or recovered:
        logger.info(
            "tick sealed or repaired",
            extra={
                "sealed": outcome.sealed,
                "resumed": outcome.resumed,
                "recovered": recovered and recovered.action,
                "oldest_age_s": outcome.oldest_pending_age_seconds,
            },
        )
    return {
        "pending": outcome.pending,
        "oldest_pending_age_seconds": outcome.oldest_pending_age_seconds,
        "sealed": outcome.sealed,
        "started": [run.job_run_id for run in outcome.started],
        "sealed_backlog_images": outcome.sealed_backlog_images,
    }
