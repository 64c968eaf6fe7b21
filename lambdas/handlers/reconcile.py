"""Scheduled reconcile: record images whose events were lost, finish crashed seals, re-drive unstarted batches."""

from __future__ import annotations

from typing import Any

from lambdas.handlers.observability import count, count_job_starts, job_run_metrics, logger, metrics, tracer
from lambdas.pipeline import get_pipeline


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run :meth:`lambdas.pipeline.Pipeline.reconcile` within the invocation's time; returns its counts.

    The listing step stops while ``context.get_remaining_time_in_millis()`` still leaves a minute and resumes at
    the next scheduled run (``backfill_complete`` False until a pass reaches the end of the bucket).
    """
    outcome = get_pipeline().reconcile(time_left_ms=context.get_remaining_time_in_millis)
    result = {
        "listed": outcome.listed,
        "missing_recorded": outcome.missing_recorded,
        "backfill_complete": bool(outcome.backfill and outcome.backfill.complete),
        "claiming_resumed": outcome.claiming_resumed,
        "sealed": outcome.sealed,
        "redriven": [run.job_run_id for run in outcome.redriven],
        "started": [run.job_run_id for run in outcome.started],
        "recovered": outcome.recovered.action if outcome.recovered else None,
    }
    logger.info("reconcile done", extra=result)
    count("ImagesRecorded", outcome.missing_recorded)
    count("ObjectsBackfilled", outcome.missing_recorded)
    count("BatchesSealed", len(outcome.sealed))
    recovered = outcome.recovered
    runs = [*outcome.started, *outcome.redriven, *(recovered.started if recovered else [])]
    failed_run = bool(recovered and recovered.action.failed_run)
    count("JobRunsFailed", int(failed_run))
    quarantined = outcome.start_quarantined + len(recovered.quarantined if recovered else [])
    count_job_starts(len(runs), outcome.start_failures, quarantined)
    backlog = outcome.sealed_backlog_images  # the last start's measure: its own, else the recovered run's next start
    if backlog is None and recovered is not None:
        backlog = recovered.sealed_backlog_images
    job_run_metrics((run.images for run in runs), backlog)
    return result
