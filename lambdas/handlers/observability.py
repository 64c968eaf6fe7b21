"""Powertools Logger / Metrics / Tracer shared by the handlers (created once per process, at import).

Service name and namespace come from POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE (defaults
``lambdas.contracts.SERVICE_NAME`` / ``METRICS_NAMESPACE``); POWERTOOLS_METRICS_DISABLED=true silences metrics
(local runs).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from lambdas.contracts import METRICS_NAMESPACE, SERVICE_NAME

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_NAME)
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)

# An invocation that had nothing to count (e.g. a RUNNING state event) is normal here, not a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def key_hash(uri: str) -> str:
    """The stable pseudonym logged instead of an object's URI: the first 16 hex digits of SHA-256 of ``uri``
    (UTF-8), e.g. ``key_hash("s3://bucket/images/a.jpg")``. Keys may hold personal names, and log events outlive an
    erasure by the log retention; an operator holding a key recomputes its hash to find its log lines
    (lambdas/README.md, "Erasure": what stays in logs). 64 bits: no collision expected below billions of keys.
    """
    return hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]


def count(name: str, value: int = 1) -> None:
    """Add a Count metric; skipped when ``value`` is 0 or metrics are disabled.

    Powertools 3.x auto-flushes a metric at 100 values *without* checking POWERTOOLS_METRICS_DISABLED, and never
    clears values while disabled, so a long local run would print EMF anyway: we do not add them at all.
    """
    if value and not is_metrics_disabled():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def gauge(name: str, value: float, unit: MetricUnit = MetricUnit.Seconds) -> None:
    """Add a level metric (0 included, e.g. OldestPendingAgeSeconds); skipped when metrics are disabled."""
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=unit, value=value)


def job_run_metrics(images_per_run: Iterable[int], sealed_backlog_images: int | None) -> None:
    """The job run size metrics (issue 19), unit Count: ``ImagesPerJobRun``, one value per job run started (the
    images of all its batches), and ``SealedBacklogImages`` = images waiting in SEALED batches behind the slot (when
    measured: a run started, or the tick ran; 0 included)."""
    for images in images_per_run:
        gauge("ImagesPerJobRun", images, MetricUnit.Count)
    if sealed_backlog_images is not None:
        gauge("SealedBacklogImages", sealed_backlog_images, MetricUnit.Count)


def count_job_starts(started: int, failures: int, quarantined: int) -> None:
    """The job-start metrics every handler emits: JobRunsStarted, JobRunStartFailures, BatchesQuarantined.

    ``quarantined`` = batches quarantined by this invocation (a refused StartJobRun's MAX_ATTEMPTS-th failure, or
    a failed job run's); 0 values are not emitted (see :func:`count`).
    """
    count("JobRunsStarted", started)
    count("JobRunStartFailures", failures)
    count("BatchesQuarantined", quarantined)
