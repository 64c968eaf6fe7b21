"""Local SparkSession construction, shared by tests, the local runner, `fruits featurize` and benchmarks."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def local_spark_session(app_name: str = "fruits-local", master: str | None = None) -> SparkSession:
    """Return (or reuse) a local SparkSession for one machine.

    Args:
        app_name: Spark application name.
        master: Spark master URL; default ``local[*]`` (env ``FRUITS_SPARK_MASTER`` overrides).

    The Python workers use this interpreter (``sys.executable``) so they see the same packages.
    On EMR Serverless the job uses ``SparkSession.builder.getOrCreate()`` instead and never calls this.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    master = master or os.environ.get("FRUITS_SPARK_MASTER", "local[*]")
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", os.environ.get("FRUITS_SPARK_DRIVER_MEMORY", "6g"))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
