"""boto3 clients, created lazily (never at import: moto must start first) and cached per process.

Every client uses botocore's ``standard`` retry mode (exponential backoff with jitter on throttling and
transient errors, https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html) and honours
``AWS_ENDPOINT_URL`` / ``AWS_REGION`` as boto3 does, which is how the local run points at moto.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=60)

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """Return the cached boto3 client for ``service`` ("dynamodb", "s3", "emr-serverless"); thread-safe."""
    with _lock:
        if service not in _clients:
            _clients[service] = boto3.session.Session().client(service, config=RETRY_CONFIG)
        return _clients[service]


def reset_clients() -> None:
    """Forget cached clients (tests, or after changing ``AWS_ENDPOINT_URL`` / region)."""
    with _lock:
        _clients.clear()
