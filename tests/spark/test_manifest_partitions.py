"""A job run's partitions grow with its photos, so Spark dynamic allocation asks for more executors."""

from __future__ import annotations

from spark_jobs.manifest import IMAGES_PER_PARTITION, manifest_frame, partitions_for


def test_small_runs_keep_the_default_parallelism_and_big_runs_get_a_task_per_125_photos() -> None:
    # GIVEN a default parallelism of 4 (one 4-vCPU executor)
    # WHEN runs of several sizes are partitioned THEN small ones stay at 4 (or fewer: one photo per task at most)
    assert partitions_for(3, 4) == 3 and partitions_for(100, 4) == 4 and partitions_for(500, 4) == 4
    # AND a big run gets ceil(n / 125) tasks: 2,000 photos -> 16 tasks = 4 executors of 4 task slots
    assert IMAGES_PER_PARTITION == 125 and partitions_for(2_000, 4) == 16 and partitions_for(2_001, 4) == 17
    assert partitions_for(0, 4) == 1


def test_manifest_frame_uses_the_rule_unless_told(spark) -> None:
    # GIVEN 300 manifest records on a local session
    records = [{"image_uri": f"file:///p/{i}.jpg", "label": None} for i in range(300)]
    default = spark.sparkContext.defaultParallelism
    # WHEN framed without and with an explicit partition count THEN the rule, then the count, decide
    frame = manifest_frame(spark, [_complete(r) for r in records])
    assert frame.rdd.getNumPartitions() == partitions_for(300, default) and frame.count() == 300
    assert manifest_frame(spark, [_complete(r) for r in records], 2).rdd.getNumPartitions() == 2


def _complete(record: dict) -> dict:
    from spark_jobs.manifest import MANIFEST_SCHEMA

    return {name: record.get(name) for name in MANIFEST_SCHEMA.fieldNames()}
