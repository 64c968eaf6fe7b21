"""The EMR Serverless ``StartJobRun`` request of a batch attempt.

Request shape: https://docs.aws.amazon.com/emr-serverless/latest/APIReference/API_StartJobRun.html
Spark arguments: docs/contracts.md "Spark job arguments".
"""

from __future__ import annotations

import shlex
from typing import Any

from lambdas.config import Settings


def client_token(batch_id: str, attempt: int) -> str:
    """Idempotency token of one attempt: ``<batch_id>-a<attempt>`` (≤ 64 chars, as the API requires).

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


def build_start_job_run_request(
    settings: Settings, *, batch_id: str, attempt: int, manifest_uri: str
) -> dict[str, Any]:
    """Keyword arguments for ``emr_serverless.start_job_run`` (JSON-serialisable dict).

    ``executionTimeoutMinutes`` is JOB_TIMEOUT_MINUTES; logs go to JOB_LOG_URI; tags carry batch id and attempt.
    """
    token = client_token(batch_id, attempt)
    submit: dict[str, Any] = {
        "entryPoint": settings.job_entry_point,
        "entryPointArguments": [
            "--manifest",
            manifest_uri,
            "--lake",
            settings.lake_uri,
            "--batch-id",
            batch_id,
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
    return {
        "applicationId": settings.emr_application_id,
        "clientToken": token,
        "executionRoleArn": settings.emr_execution_role_arn,
        "name": f"fruits-{token}",
        "jobDriver": {"sparkSubmit": submit},
        "configurationOverrides": {
            "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": settings.job_log_uri}}
        },
        "tags": {"project": "fruits", "batch_id": batch_id, "attempt": str(attempt)},
        "executionTimeoutMinutes": settings.job_timeout_minutes,
    }
