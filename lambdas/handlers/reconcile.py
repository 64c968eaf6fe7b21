"""Scheduled reconcile: record images whose events were lost, finish crashed seals, re-drive unstarted batches."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.handlers.observability import logger, metrics, tracer
from lambdas.pipeline import get_pipeline


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run :meth:`lambdas.pipeline.Pipeline.reconcile`; returns its counts."""
    outcome = get_pipeline().reconcile()
    result = {
        "listed": outcome.listed,
        "missing_recorded": outcome.missing_recorded,
        "claiming_resumed": outcome.claiming_resumed,
        "sealed": outcome.sealed,
        "redriven": [run.job_run_id for run in outcome.redriven],
        "started": [run.job_run_id for run in outcome.started],
    }
    logger.info("reconcile done", extra=result)
    metrics.add_metric(name="ImagesRecorded", unit=MetricUnit.Count, value=outcome.missing_recorded)
    metrics.add_metric(name="BatchesSealed", unit=MetricUnit.Count, value=len(outcome.sealed))
    metrics.add_metric(
        name="JobRunsStarted", unit=MetricUnit.Count, value=len(outcome.started) + len(result["redriven"])
    )
    return result
