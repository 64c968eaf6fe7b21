"""Sizing a job run (cdk.sizing, context → cdk.config): maxExecutors from the maximum capacity, the default
JOB_MAX_IMAGES rule, the warm pool's format and fit, the dynamic allocation settings."""

from __future__ import annotations

import pytest

from cdk import sizing
from cdk.config import ConfigError, load_config


def test_max_executors_is_what_the_scarcest_resource_holds_beside_the_driver() -> None:
    # GIVEN the deployed capacity (16 vCPU, 64 GB, 200 GB) and 4 vCPU / 16 GB / 20 GB workers
    # THEN it holds 4 workers: one driver + 3 executors
    assert sizing.capacity_workers("16 vCPU", "64 GB", "200 GB") == 4
    assert sizing.max_executors("16 vCPU", "64 GB", "200 GB") == 3
    # AND memory or disk may be the scarce resource (CloudFormation's unit spellings are accepted)
    assert sizing.max_executors("64vcpu", "40 GB", "200GB") == 1
    assert sizing.max_executors("64 VCPU", "256", "60 GB") == 2
    # AND warm-pool drivers beyond the first hold capacity that executors cannot use
    assert sizing.max_executors("16 vCPU", "64 GB", "200 GB", sizing.WarmPool(drivers=2, executors=0)) == 2


@pytest.mark.parametrize(("cpu", "memory", "disk", "key"), [
    ("16 cores", "64 GB", "200 GB", "emrMaxCpu"),
    ("16 vCPU", "64 GiB", "200 GB", "emrMaxMemory"),
    ("16 vCPU", "64 GB", "0 GB", "emrMaxDisk"),
])
def test_a_capacity_cloudformation_would_refuse_is_refused_with_its_key(cpu: str, memory: str, disk: str,
                                                                         key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config({"emrMaxCpu": cpu, "emrMaxMemory": memory, "emrMaxDisk": disk}, env={})


def test_a_capacity_without_room_for_one_executor_is_refused() -> None:
    # GIVEN 4 vCPU: the driver alone / WHEN loaded / THEN refused, naming the capacity keys
    with pytest.raises(ConfigError, match="at least one executor"):
        load_config({"emrMaxCpu": "4 vCPU"}, env={})


def test_default_job_max_images_keeps_a_full_run_within_a_tenth_of_the_timeout() -> None:
    # GIVEN the deployed defaults (jobTimeoutMinutes 120, 3 executors of 4 vCPU)
    config = load_config({}, env={})
    assert (config.job_timeout_minutes, config.emr_max_executors) == (120, 3)
    # WHEN the default cap is derived THEN a run of that size at maximum capacity featurizes, at the pessimistic
    # per-image cost, within 10 % of the timeout, and the next thousand images would not
    timeout_s = config.job_timeout_minutes * 60
    assert config.job_max_images == sizing.default_job_max_images(120, 3) == 20_000
    assert sizing.run_featurize_seconds(config.job_max_images, 3) <= sizing.SIZING_TIMEOUT_SHARE * timeout_s
    assert sizing.run_featurize_seconds(config.job_max_images + 1000, 3) > sizing.SIZING_TIMEOUT_SHARE * timeout_s
    # AND it follows the timeout and the capacity
    assert load_config({"jobTimeoutMinutes": 30}, env={}).job_max_images == 5_000
    assert load_config({"emrMaxCpu": "32 vCPU", "emrMaxMemory": "128 GB"}, env={}).job_max_images == 48_000
    assert load_config({"jobTimeoutMinutes": 5, "emrMaxCpu": "8 vCPU"}, env={}).job_max_images == 200


def test_explicit_job_max_images_is_kept_unless_a_full_run_would_outlast_the_timeout() -> None:
    assert load_config({"jobMaxImages": "5000"}, env={}).job_max_images == 5000
    # a run of 250,000 images needs 250,000 x 0.419 / 12 s ≈ 145 min > 120 min
    with pytest.raises(ConfigError, match=r"jobMaxImages.*jobTimeoutMinutes"):
        load_config({"jobMaxImages": 250_000}, env={})
    with pytest.raises(ConfigError, match="jobMaxImages"):
        load_config({"jobMaxImages": 0}, env={})


def test_warm_pool_is_off_by_default_and_parsed_as_drivers_x_executors() -> None:
    assert load_config({}, env={}).warm_pool is None
    assert load_config({"warmPool": "off"}, env={}).warm_pool is None
    pool = load_config({"warmPool": "1x3"}, env={}).warm_pool
    assert pool == sizing.WarmPool(drivers=1, executors=3) and pool.workers == 4
    # refused: another format, no driver, more workers than the maximum capacity holds (4 by default)
    for raw, message in (("3", "drivers>x<executors"), ("1x", "drivers>x<executors"), ("0x2", "at least one driver"),
                         ("1x4", "holds 4")):
        with pytest.raises(ConfigError, match=rf"warmPool.*{message}"):
            load_config({"warmPool": raw}, env={})


def test_dynamic_allocation_starts_small_and_may_grow_to_max_executors() -> None:
    # GIVEN no warm pool / WHEN the job's Spark settings are built
    conf = sizing.spark_sizing_conf(3)
    # THEN a run starts on one executor, keeps one, and may grow to the 3 the capacity holds
    assert conf["spark.dynamicAllocation.enabled"] == "true"
    assert (conf["spark.dynamicAllocation.minExecutors"], conf["spark.dynamicAllocation.initialExecutors"],
            conf["spark.executor.instances"], conf["spark.dynamicAllocation.maxExecutors"]) == ("1", "1", "1", "3")
    # AND the workers keep EMR Serverless's default size, which the warm pool's workers match
    assert (conf["spark.driver.cores"], conf["spark.executor.cores"]) == ("4", "4")
    assert (conf["spark.driver.memory"], conf["spark.executor.memory"]) == ("14g", "14g")
    # GIVEN a warm pool of 1 driver + 2 executors THEN a run starts on the 2 pre-initialized executors (billed anyway)
    warm = sizing.spark_sizing_conf(3, sizing.WarmPool(drivers=1, executors=2))
    assert warm["spark.dynamicAllocation.initialExecutors"] == "2"
    assert warm["spark.dynamicAllocation.minExecutors"] == "1"
