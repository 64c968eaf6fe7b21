"""The ingestion service: the one code path shared by the Lambda handlers, the ``fruits`` CLI and the local runner.

Flow: ``ingest`` records an image (exact pending count) → when pending ≥ BATCH_THRESHOLD a batch is reserved,
filled by exclusive claims, its manifest written to S3 and sealed → ``start_next_batch`` takes the single job
run slot for a job run of every SEALED batch waiting (seal order, up to JOB_MAX_IMAGES) and calls EMR Serverless
``start_job_run`` → ``job_state`` events end the job run (SUCCESS: every batch's images DONE, slot freed, next job
run started; FAILED/CANCELLED: each batch retried or quarantined).
``flush`` seals whatever is pending; ``reconcile`` repairs lost events and crashed invocations; ``backfill``
records a prefix's objects page by page with a cursor stored in the table (resumable).

Every function returns plain outcome dataclasses (outcomes as enums: ``StartResult``, ``JobStateAction``); the
handlers turn them into logs and metrics. ``ingest = record + seal_if_due``; the injected clock returns
timezone-aware ``datetime`` s (ISO strings only in the DynamoDB codec).
"""

from __future__ import annotations

import functools
from typing import Any

from lambdas import aws
from lambdas.config import Settings, get_settings
from lambdas.dal.manifest_table import ManifestTable
from lambdas.service.admin import Admin
from lambdas.service.backfill import Backfill, BackfillOutcome
from lambdas.service.base import STALE_START_SECONDS, Clock, system_clock, utc_now, utc_now_dt
from lambdas.service.batching import Batching
from lambdas.service.job_runs import JobRuns
from lambdas.service.outcomes import (
    FlushOutcome,
    IngestOutcome,
    JobRunStart,
    JobStarts,
    JobStateAction,
    JobStateOutcome,
    ReconcileOutcome,
    StartedJobRun,
    StartResult,
    TickOutcome,
)
from lambdas.service.repair import Repair


class Pipeline(Batching, JobRuns, Repair, Backfill, Admin):
    """The service object. Build it with :func:`get_pipeline` (env settings, lazy boto3 clients).

    Its operations live in the use-case modules of :mod:`lambdas.service`; this class only composes them.
    """


def get_pipeline(settings: Settings | None = None) -> Pipeline:
    """The :class:`Pipeline` on the env settings and the lazily created boto3 clients (honours AWS_ENDPOINT_URL).

    The same object while the settings and the cached clients are the same, like the clients themselves: a warm
    Lambda container (and the local runner) keeps the service's per-process state across invocations, such as
    batching's memo of the oldest pending image (at most one GSI query a minute per process). New settings
    (``get_settings.cache_clear()``) or clients (``aws.reset_clients()``) give a new one.
    """
    settings = settings or get_settings()
    return _pipeline(settings, aws.client("dynamodb"), aws.client("s3"), aws.client("emr-serverless"))


@functools.lru_cache(maxsize=1)
def _pipeline(settings: Settings, dynamodb: Any, s3: Any, emr: Any) -> Pipeline:
    return Pipeline(settings, ManifestTable(settings.manifest_table, dynamodb), s3, emr)


__all__ = [
    "STALE_START_SECONDS",
    "BackfillOutcome",
    "Clock",
    "FlushOutcome",
    "IngestOutcome",
    "JobRunStart",
    "JobStarts",
    "JobStateAction",
    "JobStateOutcome",
    "Pipeline",
    "ReconcileOutcome",
    "StartResult",
    "StartedJobRun",
    "TickOutcome",
    "get_pipeline",
    "system_clock",
    "utc_now",
    "utc_now_dt",
]
