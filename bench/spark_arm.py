"""Run the real Spark job (``spark_jobs.main.main``) in-process on ``local[*]`` and time it end to end.

The job is called exactly as EMR Serverless calls it (``entryPointArguments``, docs/contracts.md); the local
SparkSession is created first with :func:`spark_jobs.session.local_spark_session` and reused by the job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.common import stopwatch


def job_argv(manifest: Path, lake: Path, batch_id: str, weights: str = "random:0", image_size: int = 224,
             pca_k: int = 150, infer_batch_size: int | None = None, precision: str = "float32",
             engine: str | None = None, calibration: str | None = None, calibration_images: int | None = None,
             holdout_images: int | None = None) -> list[str]:
    """``entryPointArguments`` of one job run (contract: docs/contracts.md, "Spark job arguments")."""
    argv = ["--manifest", str(manifest), "--lake", str(lake), "--batch-id", batch_id, "--weights", weights,
            "--pca-k", str(pca_k), "--image-size", str(image_size)]
    if infer_batch_size:
        argv += ["--infer-batch-size", str(infer_batch_size)]
    if precision != "float32":
        argv += ["--precision", precision]
    if engine:
        argv += ["--engine", engine]
    if precision == "int8":  # the int8 model's calibration source and sizes (spark_jobs.featurize.quantization)
        argv += ["--calibration", str(calibration)]
        if calibration_images:
            argv += ["--calibration-images", str(calibration_images)]
        if holdout_images:
            argv += ["--holdout-images", str(holdout_images)]
    return argv


def ensure_session() -> Any:
    """Start (or reuse) the local SparkSession the job will pick up with ``getOrCreate``."""
    from spark_jobs.session import local_spark_session

    return local_spark_session(app_name="fruits-bench")


def fresh_session() -> Any:
    """Stop the active SparkSession (its Python workers exit with it) and start a new local one: the next job
    runs in new workers, like a job run on EMR Serverless, not in workers that loaded another engine before."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    return ensure_session()


def run_job(manifest: Path, lake: Path, batch_id: str, **options: Any) -> dict[str, Any]:
    """Run one job (options: see :func:`job_argv`), returning wall seconds, images/s and the batch report.

    Returns ``{"seconds", "exit_code", "images", "images_per_s", "report"}`` where ``report`` is
    ``<lake>/batches/<batch_id>.json`` (None if absent) and ``images`` its ``counts.featurized``.

    Raises:
        RuntimeError: the job exits non-zero.
    """
    from spark_jobs.main import main as job_main

    ensure_session()
    argv = job_argv(manifest, lake, batch_id, **options)
    load_before = os.getloadavg()[0]
    with stopwatch() as t:
        code = job_main(argv)
    if code != 0:
        raise RuntimeError(f"spark job exited {code} for {' '.join(argv)}")
    report_path = lake / "batches" / f"{batch_id}.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    images = int(report["counts"]["featurized"]) if report else sum(1 for _ in manifest.open())
    return {"seconds": round(t["seconds"], 3), "exit_code": code, "images": images,
            "images_per_s": round(images / t["seconds"], 3), "loadavg_1min_before": round(load_before, 2),
            "report": report}
