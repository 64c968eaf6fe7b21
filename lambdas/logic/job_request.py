"""The EMR Serverless ``StartJobRun`` request of a job run attempt (one or more sealed batches), and which
sealed batches a job run takes.

Request shape: https://docs.aws.amazon.com/emr-serverless/latest/APIReference/API_StartJobRun.html
Spark arguments: docs/contracts.md "Spark job arguments" and "Job runs".
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from lambdas.config import Settings

# Batches one job run takes at most. Every transaction that moves a run's batches carries one item per batch plus
# one more (the job run slot, or the job run lookup item): TransactWriteItems takes at most 100 items (DynamoDB
# quotas). The request then has 4 arguments per batch, far below StartJobRun's 1,024 entryPointArguments
# (API_SparkSubmit).
MAX_RUN_BATCHES = 99


def plan_run(
    candidates: Sequence[tuple[str, int]], *, max_images: int, max_batches: int = MAX_RUN_BATCHES
) -> list[str]:
    """The batch ids the next job run takes from ``candidates`` (``(batch_id, images)`` of SEALED batches, in seal
    order): a prefix in that order, at most ``max_batches`` batches and ``max_images`` images in all, except that
    the first (oldest) batch always goes, even if alone it has more than ``max_images`` images. The prefix stops at
    the first batch that does not fit (a later, smaller one never overtakes it). ``[]`` when there is none.
    Raises ValueError for ``max_images`` or ``max_batches`` below 1.
    """
    if max_images < 1 or max_batches < 1:
        raise ValueError(f"need max_images >= 1 and max_batches >= 1, got {max_images}, {max_batches}")
    chosen: list[str] = []
    total = 0
    for batch_id, images in candidates:
        if chosen and (len(chosen) >= max_batches or total + images > max_images):
            break
        chosen.append(batch_id)
        total += images
    return chosen


def client_token(batch_id: str, attempt: int) -> str:
    """Idempotency token of one job run attempt: ``<lead batch_id>-a<attempt>`` (≤ 64 chars, as the API requires).

    The lead (first batch) of a run counts an attempt for every run it is in, so the token names one run attempt.
    The same attempt always sends the same token, so a re-driven start (reconcile after a crash) cannot
    create a second job run on AWS; a retry after FAILED is a new attempt and gets a new token.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    token = f"{batch_id}-a{attempt}"
    if len(token) > 64:
        raise ValueError(f"client token too long: {token!r}")
    return token


def spark_submit_parameters(settings: Settings) -> str:
    """``sparkSubmitParameters``: ``--py-files JOB_PY_FILES`` (when set) followed by SPARK_SUBMIT_PARAMETERS."""
    parts = []
    if settings.job_py_files:
        parts.append(f"--py-files {shlex.quote(settings.job_py_files)}")
    if settings.spark_submit_parameters.strip():
        parts.append(settings.spark_submit_parameters.strip())
    return " ".join(parts)


def batch_arguments(lake_uri: str, batches: Sequence[tuple[str, str]]) -> list[str]:
    """The run's ``--manifest`` / ``--batch-id`` pairs and ``--lake`` (``batches``: ``(batch_id, manifest_uri)`` in
    seal order, ≥ 1). One batch: ``--manifest M --lake L --batch-id B``, the request of a job run before runs took
    several batches (a job of that time reads it); several: ``--manifest M1 --batch-id B1 … --manifest Mn
    --batch-id Bn --lake L`` (docs/contracts.md "Job runs"). Raises ValueError when ``batches`` is empty.
    """
    if not batches:
        raise ValueError("a job run needs at least one batch")
    if len(batches) == 1:
        [(batch_id, manifest_uri)] = batches
        return ["--manifest", manifest_uri, "--lake", lake_uri, "--batch-id", batch_id]
    pairs = [arg for batch_id, uri in batches for arg in ("--manifest", uri, "--batch-id", batch_id)]
    return [*pairs, "--lake", lake_uri]


def build_start_job_run_request(
    settings: Settings,
    *,
    batch_id: str,
    attempt: int,
    manifest_uri: str,
    more: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Keyword arguments for ``emr_serverless.start_job_run`` (JSON-serialisable dict) of attempt ``attempt`` of
    the job run led by batch ``batch_id`` (manifest ``manifest_uri``), which also takes the batches ``more``
    (``(batch_id, manifest_uri)``, in seal order after the lead).

    ``clientToken`` is :func:`client_token` of the lead and attempt; ``executionTimeoutMinutes`` is
    JOB_TIMEOUT_MINUTES; logs go to JOB_LOG_URI; tags carry the lead's batch id and the attempt, plus ``batches``
    (how many the run takes) when it takes more than one: a run of one batch sends exactly the request of a job
    run before runs took several batches.
    """
    token = client_token(batch_id, attempt)
    batches = [(batch_id, manifest_uri), *more]
    submit: dict[str, Any] = {
        "entryPoint": settings.job_entry_point,
        "entryPointArguments": [
            *batch_arguments(settings.lake_uri, batches),
            "--weights",
            settings.job_weights,
            "--pca-k",
            str(settings.pca_k),
        ],
    }
    if settings.job_precision != "float32":  # the default request stays the same
        submit["entryPointArguments"] += ["--precision", settings.job_precision]
    if settings.job_precision == "int8":  # the named calibration set of the quantized model
        submit["entryPointArguments"] += ["--calibration", settings.job_calibration]
    if settings.job_engine:
        submit["entryPointArguments"] += ["--engine", settings.job_engine]
    if settings.job_catalog:
        submit["entryPointArguments"] += ["--catalog", settings.job_catalog]
    params = spark_submit_parameters(settings)
    if params:
        submit["sparkSubmitParameters"] = params
    tags = {"project": "fruits", "batch_id": batch_id, "attempt": str(attempt)}
    if len(batches) > 1:
        tags["batches"] = str(len(batches))
    return {
        "applicationId": settings.emr_application_id,
        "clientToken": token,
        "executionRoleArn": settings.emr_execution_role_arn,
        "name": f"fruits-{token}",
        "jobDriver": {"sparkSubmit": submit},
        "configurationOverrides": {
            "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": settings.job_log_uri}}
        },
        "tags": tags,
        "executionTimeoutMinutes": settings.job_timeout_minutes,
    }
