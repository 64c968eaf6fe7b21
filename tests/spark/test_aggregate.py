"""Executor-side statistics (tree reduction over partitions) and projection, against numpy."""

from __future__ import annotations

import numpy as np
from pyspark.sql import types as T

from spark_jobs.pca.aggregate import batch_statistics
from spark_jobs.pca.projection import project
from spark_jobs.pca.stats import SufficientStats
from spark_jobs.pca.versions import PcaVersion, fit_pca

from .test_stats import assert_same_state

SCHEMA = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("features", T.ArrayType(T.FloatType()))])


def test_tree_reduced_partition_statistics_equal_numpy(spark) -> None:
    # GIVEN 57 float32 vectors spread over 6 partitions, one of them empty
    x = (np.random.default_rng(3).standard_normal((57, 16)) * 10 + 3).astype(np.float32)
    rows = [(i, [float(v) for v in x[i]]) for i in range(len(x))]
    df = spark.createDataFrame(spark.sparkContext.parallelize(rows, 5), SCHEMA)
    df = df.union(spark.createDataFrame(spark.sparkContext.parallelize([], 1), SCHEMA))
    assert df.rdd.getNumPartitions() == 6
    # WHEN the statistics are computed on the executors (chunks of 4 rows) and tree-reduced
    conf = "spark.sql.execution.arrow.maxRecordsPerBatch"
    previous = spark.conf.get(conf)
    spark.conf.set(conf, "3")  # Arrow frames of 3 rows: several frames and chunks per partition
    try:
        stats = batch_statistics(df, dim=16, depth=3, chunk_rows=4)
    finally:
        spark.conf.set(conf, previous)
    # THEN they equal the one-pass statistics of the float32 values widened to float64
    assert_same_state(stats, SufficientStats.from_array(x.astype(np.float64)))
    # AND projecting onto a fit of those statistics equals numpy's (x - mean) @ components.T
    fit = fit_pca(stats, k=4)
    version = PcaVersion("m", 1, "b", "r", stats, fit)
    got = {r.id: r.pca for r in project(df, version).collect()}
    expected = (x.astype(np.float64) - stats.mean) @ fit.components.T
    np.testing.assert_allclose(np.array([got[i] for i in range(len(x))]), expected, rtol=1e-5, atol=1e-4)


def test_empty_dataframe_gives_empty_statistics(spark) -> None:
    # GIVEN no rows  WHEN aggregated  THEN n = 0 and zero mean/scatter
    df = spark.createDataFrame(spark.sparkContext.parallelize([], 2), SCHEMA)
    stats = batch_statistics(df, dim=16)
    assert stats.n == 0 and not stats.mean.any() and not stats.m2.any()
