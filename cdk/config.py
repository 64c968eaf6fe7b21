"""Deployment settings, read once from the CDK context (``cdk.json`` / ``-c key=value``) and the CDK env.

Every tunable of the stack is here, with its default; the constructs receive plain values from this
frozen model and never read the context themselves.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdk import sizing
from lambdas import resources

# Public Powertools for AWS Lambda (Python) v3 layer, published by AWS in account 017000801446.
# Name format from the Powertools docs ("Lambda Layer" install section):
#   arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-{python_version}-{arch}:{version}
# The layer is built with the ``[all]`` extras, so it ships pydantic v2 and pydantic-settings as well.
POWERTOOLS_LAYER_ACCOUNT = "017000801446"
# Newest layer version listed in the Powertools docs we could check (docs/index.md, layer version 27).
# Newer: `aws ssm get-parameter --name /aws/service/powertools/python/arm64/python3.12/latest`.
DEFAULT_POWERTOOLS_LAYER_VERSION = 27

ARCHITECTURES = ("ARM64", "X86_64")

# Concurrency caps (README "Concurrency and the DynamoDB capacity they protect"). The ingest queue's event source
# polls with at most INGEST_MAX_CONCURRENCY invocations of 10 records (SQS MaximumConcurrency: 2..1000, Lambda
# developer guide "Configuring maximum concurrency for Amazon SQS event sources"); each function has its own
# reserved concurrency, so a burst neither takes the account's whole Lambda concurrency nor floods the manifest
# table. ``None`` reserves nothing for that function (accounts whose concurrency quota cannot spare the reservation:
# Lambda keeps 100 unreserved executions).
DEFAULT_INGEST_MAX_CONCURRENCY = 5
DEFAULT_RESERVED_CONCURRENCY: dict[str, int | None] = {
    "ingest": DEFAULT_INGEST_MAX_CONCURRENCY,  # = the event source's cap: no SQS poller is throttled
    "job_state": 2,  # one job run at a time (max_concurrent_runs=1): a few state changes a minute at most
    "flush": 1,  # on demand, by an operator
    "tick": 1,  # every tickRateMinutes
    "reconcile": 1,  # every reconcileRateHours
}


class ConfigError(ValueError):
    """A context value is missing, malformed, or asks for something the project refuses (e.g. a region)."""


@dataclass(frozen=True)
class DeployConfig:
    """Everything the stack needs to know about where and how it is deployed.

    Units are in the field names (``_minutes``, ``_hours``, ``_days``). ``account`` may be ``None``
    (environment-agnostic synth, e.g. in tests or without credentials).
    """

    account: str | None
    region: str
    stack_name: str
    powertools_layer_version: int
    emr_architecture: str
    emr_max_cpu: str
    emr_max_memory: str
    emr_max_disk: str
    emr_idle_stop_minutes: int
    tick_rate_minutes: int
    reconcile_rate_hours: int
    batch_threshold: int
    batch_max_images: int
    batch_max_wait_seconds: int
    max_attempts: int
    pca_k: int
    job_precision: str
    job_engine: str
    job_timeout_minutes: int
    log_retention_days: int
    alarm_email: str | None
    ingest_max_concurrency: int = DEFAULT_INGEST_MAX_CONCURRENCY
    reserved_concurrency: Mapping[str, int | None] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_RESERVED_CONCURRENCY)
    )
    job_calibration: str = ""  # int8: --calibration (empty: s3://<data bucket>/calibration/manifest.jsonl)
    # JOB_MAX_IMAGES: images per job run (whole sealed batches; the oldest goes even alone above it); the default is
    # derived from jobTimeoutMinutes and the maximum capacity (cdk.sizing.default_job_max_images)
    job_max_images: int = 20_000
    emr_max_executors: int = 3  # spark.dynamicAllocation.maxExecutors (cdk.sizing.max_executors)
    warm_pool: sizing.WarmPool | None = None  # pre-initialized capacity (context warmPool); None: off

    @property
    def powertools_layer_arn(self) -> str:
        """ARN of the official Powertools v3 layer for Python 3.12 on arm64 in ``region``."""
        return (
            f"arn:aws:lambda:{self.region}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
            f"AWSLambdaPowertoolsPythonV3-python312-arm64:{self.powertools_layer_version}"
        )


def _int(context: Mapping[str, Any], key: str, default: int, minimum: int = 1) -> int:
    raw = context.get(key, default)
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(f"context '{key}' must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"context '{key}' must be >= {minimum}, got {value}")
    return value


def _reserved_concurrency(context: Mapping[str, Any], ingest_max_concurrency: int) -> dict[str, int | None]:
    """``reservedConcurrency`` (a JSON object, or its text with ``-c``) merged over the defaults, validated."""
    raw = context.get("reservedConcurrency") or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"context 'reservedConcurrency' must be a JSON object, got {raw!r}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"context 'reservedConcurrency' must be a JSON object, got {raw!r}")
    unknown = sorted(set(raw) - set(DEFAULT_RESERVED_CONCURRENCY))
    if unknown:
        raise ConfigError(f"context 'reservedConcurrency' names unknown functions {unknown}; "
                          f"known: {sorted(DEFAULT_RESERVED_CONCURRENCY)}")
    merged = {**DEFAULT_RESERVED_CONCURRENCY, **raw}
    if "ingest" not in raw and "ingestMaxConcurrency" in context:
        merged["ingest"] = ingest_max_concurrency  # follow the event source's cap unless set on its own
    for name, value in merged.items():
        if value is not None:
            key = f"reservedConcurrency.{name}"
            merged[name] = _int({key: value}, key, 1, minimum=1)
    ingest = merged["ingest"]
    if ingest is not None and ingest < ingest_max_concurrency:
        raise ConfigError(f"context 'reservedConcurrency' of ingest ({ingest}) must be >= ingestMaxConcurrency "
                          f"({ingest_max_concurrency}), or the SQS pollers are throttled")
    return merged


def load_config(context: Mapping[str, Any], env: Mapping[str, str] | None = None) -> DeployConfig:
    """Validate the CDK context into a :class:`DeployConfig`.

    Args:
        context: context values (strings when given with ``-c``, JSON values from ``cdk.json``).
        env: process environment; ``CDK_DEFAULT_ACCOUNT`` (set by the CDK CLI) gives the account.

    Raises:
        ConfigError: a region other than eu-west-3 (GDPR: the data stays in Paris), or a bad value.
    """
    env = os.environ if env is None else env
    ingest_max_concurrency = _int(context, "ingestMaxConcurrency", DEFAULT_INGEST_MAX_CONCURRENCY, minimum=2)
    if ingest_max_concurrency > 1000:
        raise ConfigError(f"context 'ingestMaxConcurrency' must be <= 1000 (SQS event source limit), "
                          f"got {ingest_max_concurrency}")
    region = str(context.get("region") or resources.REGION)
    if region != resources.REGION:
        raise ConfigError(
            f"region {region!r} refused: Fruits! deploys only to {resources.REGION} (Paris, GDPR data residency)"
        )
    architecture = str(context.get("emrArchitecture", "ARM64")).upper()
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"context 'emrArchitecture' must be one of {ARCHITECTURES}, got {architecture!r}")
    alarm_email = context.get("alarmEmail") or None
    precision = str(context.get("jobPrecision", "float32"))
    if precision not in resources.JOB_PRECISIONS:
        raise ConfigError(f"context 'jobPrecision' must be one of {resources.JOB_PRECISIONS}, got {precision!r}")
    engine = str(context.get("jobEngine") or resources.DEFAULT_JOB_ENGINE[architecture])
    if not context.get("jobEngine") and engine == "onnxruntime" and precision == "bfloat16":
        engine = "tensorflow"  # as spark_jobs.featurize.engines.default_engine: ONNX Runtime has no bf16 kernels here
    if engine not in resources.ENGINES_BY_ARCHITECTURE[architecture]:
        raise ConfigError(f"context 'jobEngine' must be one of {resources.ENGINES_BY_ARCHITECTURE[architecture]} on "
                          f"{architecture} (what installs in its EMR image), got {engine!r}")
    if engine == "onnxruntime" and precision == "bfloat16":
        raise ConfigError("context 'jobEngine' onnxruntime refuses jobPrecision bfloat16: float32 only among the "
                          "float precisions (int8 too)")
    calibration = str(context.get("jobCalibration") or "")
    if calibration and not calibration.startswith("s3://"):
        raise ConfigError(f"context 'jobCalibration' must be an s3:// calibration manifest URI, got {calibration!r}")
    if engine == "tensorflow" and precision == "int8":
        raise ConfigError("context 'jobPrecision' int8 runs on jobEngine openvino or onnxruntime, not tensorflow")
    capacity = (str(context.get("emrMaxCpu", "16 vCPU")), str(context.get("emrMaxMemory", "64 GB")),
                str(context.get("emrMaxDisk", "200 GB")))
    job_timeout_minutes = _int(context, "jobTimeoutMinutes", 120)
    try:
        warm_pool = sizing.parse_warm_pool(context.get("warmPool"), sizing.capacity_workers(*capacity))
        executors = sizing.max_executors(*capacity, warm_pool=warm_pool)
        job_max_images = _int(context, "jobMaxImages", sizing.default_job_max_images(job_timeout_minutes, executors))
        sizing.check_job_max_images(job_max_images, job_timeout_minutes, executors)
    except sizing.SizingError as error:
        raise ConfigError(str(error)) from None
    return DeployConfig(
        account=env.get("CDK_DEFAULT_ACCOUNT") or None,
        region=region,
        stack_name=str(context.get("stackName", "Fruits")),
        powertools_layer_version=_int(context, "powertoolsLayerVersion", DEFAULT_POWERTOOLS_LAYER_VERSION),
        emr_architecture=architecture,
        emr_max_cpu=capacity[0],
        emr_max_memory=capacity[1],
        emr_max_disk=capacity[2],
        emr_idle_stop_minutes=_int(context, "emrIdleStopMinutes", 15),
        tick_rate_minutes=_int(context, "tickRateMinutes", 1),
        reconcile_rate_hours=_int(context, "reconcileRateHours", 24),
        batch_threshold=_int(context, "batchThreshold", 100),
        batch_max_images=_int(context, "batchMaxImages", 1000),
        batch_max_wait_seconds=_int(context, "batchMaxWaitSeconds", 900, minimum=0),
        max_attempts=_int(context, "maxAttempts", 3),
        pca_k=_int(context, "pcaK", 150),
        job_precision=precision,
        job_engine=engine,
        job_timeout_minutes=job_timeout_minutes,
        log_retention_days=_int(context, "logRetentionDays", 30),
        alarm_email=str(alarm_email) if alarm_email else None,
        ingest_max_concurrency=ingest_max_concurrency,
        reserved_concurrency=_reserved_concurrency(context, ingest_max_concurrency),
        job_calibration=calibration,
        job_max_images=job_max_images,
        emr_max_executors=executors,
        warm_pool=warm_pool,
    )
