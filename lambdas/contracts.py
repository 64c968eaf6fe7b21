"""Contracts shared by the two deployed packages: the Lambdas (``lambdas``) and the Spark job (``spark_jobs``).

This module ships in BOTH assets: the Lambda asset is the whole ``lambdas`` package, and the Spark code zip
(``spark_jobs.packaging.spark_package_zip``) carries ``lambdas/__init__.py`` + this file next to ``spark_jobs/``.
It imports
nothing but the standard library, so the Spark job can import it without the Lambdas' dependencies.
Each value is written here once (docs/contracts.md, "Batch id", "Metrics", "Lambda environment").
"""

from __future__ import annotations

import re

# Batch id: a partition value in the lake and a path segment of the manifest URI (docs/contracts.md "Batch id").
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# The Spark job's --precision choices; the first is the default (bfloat16: opt-in, model_id suffix -bf16).
JOB_PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
DEFAULT_JOB_PRECISION = JOB_PRECISIONS[0]

# Powertools service name (the metrics' ``service`` dimension) and CloudWatch metrics namespace.
SERVICE_NAME = "fruits-ingestion"
METRICS_NAMESPACE = "Fruits"


def check_batch_id(text: str) -> str:
    """Return ``text`` if it is a valid batch id (:data:`BATCH_ID_RE`); raises ValueError naming the rule."""
    if not BATCH_ID_RE.match(text):
        raise ValueError(f"batch id must match {BATCH_ID_RE.pattern}, got {text!r}")
    return text
