"""Fixtures shared by the Lambda tests of job runs (test_job_runs.py, test_job_state.py)."""

from __future__ import annotations

import pytest

from lambdas.config import get_settings


@pytest.fixture
def small_batches(moto_aws, monkeypatch: pytest.MonkeyPatch):
    """moto AWS with batches sealed at 5 images (at most 20 per batch)."""
    monkeypatch.setenv("BATCH_THRESHOLD", "5")
    monkeypatch.setenv("BATCH_MAX_IMAGES", "20")
    get_settings.cache_clear()
    return moto_aws
