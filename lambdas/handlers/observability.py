"""Powertools Logger / Metrics / Tracer shared by the handlers (created once per process, at import).

Service name and namespace come from POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE (defaults
``fruits-ingestion`` / ``Fruits``); POWERTOOLS_METRICS_DISABLED=true silences metrics (local runs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "fruits-ingestion")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Fruits")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


@dataclass(frozen=True)
class LocalLambdaContext:
    """Minimal Lambda context for calling a handler outside Lambda (tests, CLI, local runner)."""

    function_name: str = "fruits-local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-3:123456789012:function:fruits-local"
    aws_request_id: str = "local-request"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000
