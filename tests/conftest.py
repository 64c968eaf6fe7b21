"""Shared pytest fixtures: one local SparkSession, fake AWS credentials, the shared Fruits-360 sample."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = (REPO_ROOT / ".." / "shared" / "data" / "fruits-360-sample").resolve()
EVENTS_DIR = Path(__file__).resolve().parent / "events"

# moto fixtures (moto_aws, lambda_env, api_calls) for every folder that drives the service: lambdas/ and fruits/
pytest_plugins = ["tests.helpers.aws_fixtures"]


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """Root of the real Fruits-360 sample (Training/, Test/, multiple_fruits/); skips if absent."""
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"Fruits-360 sample not found at {SAMPLE_DIR}")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def events_dir() -> Path:
    """Folder of JSON event fixtures (S3/SQS/EventBridge shaped)."""
    return EVENTS_DIR


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and the Paris region, set before any boto3 client is created."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_REGION": "eu-west-3",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """The one local SparkSession of the test session (``local[2]``, UI off, few shuffle partitions)."""
    from spark_jobs.session import local_spark_session

    session = local_spark_session(app_name="fruits-tests")
    yield session
    session.stop()


def pytest_configure(config: pytest.Config) -> None:
    """Keep TensorFlow quiet and deterministic in every test process and Spark Python worker."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
