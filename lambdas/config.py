"""Lambda / CLI settings: the environment variables of docs/contracts.md, validated once into a frozen model.

``get_settings()`` reads ``os.environ`` at its first call (not at import), so handlers can be imported before
the environment is set; tests call ``get_settings.cache_clear()`` after changing it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lambdas import resources


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
    job_precision: Literal["float32", "bfloat16"] = "float32"  # bfloat16: opt-in, model_id suffix -bf16
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
    max_attempts: int = Field(default=3, ge=1, le=20)
    # reconcile applies a job run's terminal state itself when its EventBridge event is this late; 0 = never
    # (set 0 against moto, whose job runs report SUCCESS at once).
    reconcile_lost_event_minutes: int = Field(default=60, ge=0)

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
