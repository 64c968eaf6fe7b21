"""Lambda / CLI settings: the environment variables of docs/contracts.md, validated once into a frozen model.

``get_settings()`` reads ``os.environ`` at its first call (not at import), so handlers can be imported before
the environment is set; tests call ``get_settings.cache_clear()`` after changing it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lambdas import contracts, resources


class SettingsError(ValueError):
    """Missing or invalid configuration; the message is one line naming the bad variables."""


class Settings(BaseModel):
    """Validated configuration (field ``x`` comes from env var ``X``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    data_bucket: str = Field(min_length=3, max_length=63)
    images_prefix: str = resources.IMAGES_PREFIX
    manifest_table: str = Field(min_length=3, max_length=255)
    emr_application_id: str = Field(min_length=1)
    emr_execution_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    job_entry_point: str = Field(min_length=1)
    job_py_files: str = ""
    lake_uri: str = ""  # default s3://$DATA_BUCKET/lake (filled by the validator)
    job_weights: str = "imagenet"
    job_precision: str = contracts.DEFAULT_JOB_PRECISION  # contracts.JOB_PRECISIONS; bfloat16: opt-in (-bf16)
    # int8: the job's --calibration (calibration manifest URI or, locally, a folder); default
    # s3://$DATA_BUCKET/calibration/manifest.jsonl (filled by the validator); ignored by the other precisions
    job_calibration: str = ""
    # --engine of the job (resources.JOB_ENGINES); empty: the job's default for its architecture
    job_engine: Literal["", "tensorflow", "openvino", "onnxruntime"] = ""
    # Iceberg catalog of the lake's tables, passed as --catalog: glue[:DATABASE] on AWS, sql:PATH locally;
    # empty: the job's default (a SQLite catalog next to a local lake)
    job_catalog: str = Field(default="", pattern=r"^(|sql:.+|glue(:[A-Za-z0-9_]+)?)$")
    pca_k: int = Field(default=150, ge=1, le=2048)
    job_log_uri: str = ""  # default s3://$DATA_BUCKET/logs/
    job_timeout_minutes: int = Field(default=120, ge=5, le=1440)  # EMR Serverless minimum is 5 minutes
    spark_submit_parameters: str = ""
    batch_threshold: int = Field(default=100, ge=1)
    batch_max_images: int = Field(default=1000, ge=1)
    # a pending image older than this is sealed even below the threshold (count or age, whichever first); 0 = off
    batch_max_wait_seconds: int = Field(default=900, ge=0, le=86400)
    # images one job run featurizes at most (whole sealed batches, in seal order; the oldest batch always goes even
    # if alone it has more). 20,000: at the application's default maximum capacity (16 vCPU: a 4-vCPU driver and
    # three 4-vCPU executors) and the slowest job rate measured on this project (bench/results/engines.json,
    # openvino float32: 4.77 photos/s on 2 cores = 0.42 vCPU-s per photo) a full run featurizes in
    # 20,000 x 0.42 / 12 = 700 s (~12 min), a tenth of the default JOB_TIMEOUT_MINUTES (120); at the ARM64 default
    # engine's 0.06 vCPU-s per photo, 100 s. bench/capacity.py models the same cap.
    job_max_images: int = Field(default=20_000, ge=1)
    max_attempts: int = Field(default=3, ge=1, le=20)
    # the tick (and reconcile) apply a job run's terminal state read with GetJobRun when its EventBridge event is this
    # late (the repair bound, lambdas.service.base.REPAIR_AFTER_SECONDS); 0 = never (set 0 against moto, whose job
    # runs report SUCCESS at once).
    reconcile_lost_event_minutes: int = Field(default=3, ge=0)

    @field_validator("job_precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in contracts.JOB_PRECISIONS:
            raise ValueError(f"expected one of {', '.join(contracts.JOB_PRECISIONS)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _defaults_and_bounds(self) -> Settings:
        if self.batch_max_images < self.batch_threshold:
            raise ValueError(
                f"BATCH_MAX_IMAGES ({self.batch_max_images}) must be >= BATCH_THRESHOLD ({self.batch_threshold})"
            )
        if not self.images_prefix or self.images_prefix.startswith("/"):
            raise ValueError(f"IMAGES_PREFIX must be a non-empty relative key prefix, got {self.images_prefix!r}")
        if not self.lake_uri:
            object.__setattr__(self, "lake_uri", f"s3://{self.data_bucket}/{resources.LAKE_PREFIX.rstrip('/')}")
        if not self.job_calibration and self.job_precision == "int8":
            object.__setattr__(self, "job_calibration", f"s3://{self.data_bucket}/{resources.CALIBRATION_MANIFEST_KEY}")
        if not self.job_log_uri:
            object.__setattr__(self, "job_log_uri", f"s3://{self.data_bucket}/{resources.LOGS_PREFIX}")
        return self

    @property
    def manifests_uri(self) -> str:
        """``s3://$DATA_BUCKET/manifests/`` — where batch manifests are written."""
        return f"s3://{self.data_bucket}/{resources.MANIFESTS_PREFIX}"


SETTING_NAMES: tuple[str, ...] = tuple(name.upper() for name in Settings.model_fields)  # env var names
REQUIRED_SETTING_NAMES: tuple[str, ...] = tuple(
    name.upper() for name, field in Settings.model_fields.items() if field.is_required()
)


def _default(name: str) -> str:
    """The default of setting ``name`` as an environment value (a string)."""
    return str(Settings.model_fields[name].default)


def lambda_environment(
    *,
    data_bucket: str,
    manifest_table: str,
    emr_application_id: str,
    emr_execution_role_arn: str,
    job_entry_point: str,
    job_py_files: str,
    lake_uri: str = "",
    job_weights: str = _default("job_weights"),
    job_precision: str = _default("job_precision"),
    job_calibration: str = _default("job_calibration"),
    job_engine: str = _default("job_engine"),
    job_catalog: str = _default("job_catalog"),
    pca_k: int | str = _default("pca_k"),
    job_timeout_minutes: int | str = _default("job_timeout_minutes"),
    spark_submit_parameters: str = _default("spark_submit_parameters"),
    batch_threshold: int | str = _default("batch_threshold"),
    batch_max_images: int | str = _default("batch_max_images"),
    batch_max_wait_seconds: int | str = _default("batch_max_wait_seconds"),
    max_attempts: int | str = _default("max_attempts"),
    job_max_images: int | str = _default("job_max_images"),
    reconcile_lost_event_minutes: int | str = _default("reconcile_lost_event_minutes"),
) -> dict[str, str]:
    """The Lambdas' environment (docs/contracts.md "Lambda environment"): one block for CDK and the local run.

    ``cdk/components/ingestion.py`` calls it with the deployed resources (values may be CDK tokens) and
    ``fruits/local/provision.py`` with the moto ones, so both set the same variables. ``lake_uri`` defaults to
    ``s3://<data_bucket>/lake``; the job log URI is always ``s3://<data_bucket>/logs/``. Numbers become strings
    (Lambda environment values are strings); values are not validated here (:func:`settings_from_env` does that
    when a Lambda starts, and CDK tokens have no value at synth time).
    """
    return {
        "DATA_BUCKET": data_bucket,
        "IMAGES_PREFIX": resources.IMAGES_PREFIX,
        "MANIFEST_TABLE": manifest_table,
        "EMR_APPLICATION_ID": emr_application_id,
        "EMR_EXECUTION_ROLE_ARN": emr_execution_role_arn,
        "JOB_ENTRY_POINT": job_entry_point,
        "JOB_PY_FILES": job_py_files,
        "LAKE_URI": lake_uri or f"s3://{data_bucket}/{resources.LAKE_PREFIX.rstrip('/')}",
        "JOB_WEIGHTS": job_weights,
        "JOB_PRECISION": job_precision,
        "JOB_CALIBRATION": job_calibration,
        "JOB_ENGINE": job_engine,
        "JOB_CATALOG": job_catalog,
        "PCA_K": str(pca_k),
        "JOB_LOG_URI": f"s3://{data_bucket}/{resources.LOGS_PREFIX}",
        "JOB_TIMEOUT_MINUTES": str(job_timeout_minutes),
        "SPARK_SUBMIT_PARAMETERS": spark_submit_parameters,
        "BATCH_THRESHOLD": str(batch_threshold),
        "BATCH_MAX_IMAGES": str(batch_max_images),
        "BATCH_MAX_WAIT_SECONDS": str(batch_max_wait_seconds),
        "MAX_ATTEMPTS": str(max_attempts),
        "JOB_MAX_IMAGES": str(job_max_images),
        "RECONCILE_LOST_EVENT_MINUTES": str(reconcile_lost_event_minutes),
        "POWERTOOLS_SERVICE_NAME": contracts.SERVICE_NAME,
        "POWERTOOLS_METRICS_NAMESPACE": contracts.METRICS_NAMESPACE,
    }


def stack_output_key(env_name: str) -> str:
    """CloudFormation output key under which the stack exports setting ``env_name`` (read by ``fruits --stack``).

    ``DATA_BUCKET`` → ``SettingDataBucket`` (output logical ids are alphanumeric; the prefix keeps them apart
    from the stack's other outputs and constructs).
    """
    return "Setting" + "".join(part.capitalize() for part in env_name.split("_"))


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from a mapping of env vars; raises :class:`SettingsError` (one line)."""
    values = {name: environ[name.upper()] for name in Settings.model_fields if environ.get(name.upper(), "") != ""}
    try:
        return Settings(**values)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            where = ",".join(str(part).upper() for part in error["loc"]) or "settings"
            kind = "missing" if error["type"] == "missing" else error["msg"]
            problems.append(f"{where}: {kind}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from ``os.environ`` at the first call (cached)."""
    return settings_from_env(os.environ)
