"""Sizing a job run on the EMR Serverless application (issue 19 item 2): the workers, how many executors the
application's maximum capacity holds, the Spark dynamic allocation settings, the warm pool (pre-initialized
capacity) and the default cap of images per job run (``JOB_MAX_IMAGES``).

Pure functions of the deployment settings; :mod:`cdk.config` validates the context with them and
:class:`cdk.components.processing.Processing` turns them into the application and the job's Spark settings.
README "Scale" shows the arithmetic with the deployed defaults.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Every driver and executor is one worker of 4 vCPU, 16 GB and 20 GB of disk: EMR Serverless's defaults for Spark
# (spark.driver/executor.cores 4, .memory 14g, spark.emr-serverless.driver/executor.disk 20g; EMR Serverless User
# Guide "Spark job properties"), pinned so that maxExecutors and the warm pool's workers match what a job asks for.
# Spark adds a memory overhead of 10 % (at least 384 MB) to spark.*.memory: 14g + 1.4g fits a 16 GB worker
# (User Guide "Understanding application behavior": "Spark jobs have a memory overhead").
WORKER_VCPU = 4
WORKER_MEMORY_GB = 16
WORKER_DISK_GB = 20
SPARK_MEMORY = "14g"

# Dynamic allocation: a run starts with one executor and keeps at least one (the write stages after the featurize
# pass), and Spark asks for more while tasks wait (one executor per 4 waiting tasks), up to the application's
# maximum capacity: a small run stays on one executor, a big one gets them all.
MIN_EXECUTORS = 1
INITIAL_EXECUTORS = 1

# Sizing rule of JOB_MAX_IMAGES: a run of JOB_MAX_IMAGES images at the application's maximum capacity featurizes
# them in at most SIZING_TIMEOUT_SHARE of jobTimeoutMinutes (the rest: start latency, the driver's PCA fit and
# commits, task retries), at SIZING_VCPU_S_PER_IMAGE vCPU-seconds per image. That per-image cost is the slowest
# float32 job rate the benchmarks measured: bench/results/engines.json "job end to end openvino-float32", the x86
# default engine's job at 4.77 images/s on 2 cores of a loaded shared machine = 2 / 4.77 = 0.419 vCPU-s/image,
# about 7x the idle machine's 0.0621 (bench/results/cost.json, Spark job 224 px): the margin covers Graviton vCPUs
# (no AVX-512/AMX; the ARM64 default engine is ONNX Runtime) and noisy neighbours.
SIZING_VCPU_S_PER_IMAGE = 0.419
SIZING_TIMEOUT_SHARE = 0.1

# AWS::EMRServerless::Application MaximumAllowedResources patterns (CloudFormation resource reference).
_CPU = re.compile(r"^([1-9][0-9]*)\s?(vCPU|vcpu|VCPU)?$")
_GB = re.compile(r"^([1-9][0-9]*)\s?(GB|gb|gB|Gb)?$")
_WARM_POOL = re.compile(r"^([0-9]+)x([0-9]+)$")


class SizingError(ValueError):
    """A capacity, warm pool or cap that the application cannot hold; the message names the context key."""


@dataclass(frozen=True)
class WarmPool:
    """Pre-initialized capacity: ``drivers`` and ``executors`` workers of the job's size, kept while the
    application is started (billed even when idle; released when it auto-stops)."""

    drivers: int
    executors: int

    @property
    def workers(self) -> int:
        """Drivers + executors."""
        return self.drivers + self.executors


def parse_capacity(cpu: str, memory: str, disk: str) -> tuple[int, int, int]:
    """``("16 vCPU", "64 GB", "200 GB")`` → ``(16, 64, 200)``: vCPU, GB of memory, GB of disk.

    Raises:
        SizingError: a value that CloudFormation would refuse (e.g. ``"16 cores"``, ``"64 GiB"``).
    """
    values = []
    for key, raw, pattern in (("emrMaxCpu", cpu, _CPU), ("emrMaxMemory", memory, _GB), ("emrMaxDisk", disk, _GB)):
        match = pattern.match(str(raw).strip())
        if not match:
            unit = "vCPU" if pattern is _CPU else "GB"
            raise SizingError(f"context '{key}' must be a positive whole number of {unit} (e.g. '16 {unit}'), "
                              f"got {raw!r}")
        values.append(int(match.group(1)))
    return values[0], values[1], values[2]


def capacity_workers(cpu: str, memory: str, disk: str) -> int:
    """How many 4 vCPU / 16 GB / 20 GB workers the application's maximum capacity holds (its scarcest resource).

    Raises:
        SizingError: a malformed capacity (:func:`parse_capacity`).
    """
    vcpu, memory_gb, disk_gb = parse_capacity(cpu, memory, disk)
    return min(vcpu // WORKER_VCPU, memory_gb // WORKER_MEMORY_GB, disk_gb // WORKER_DISK_GB)


def max_executors(cpu: str, memory: str, disk: str, warm_pool: WarmPool | None = None) -> int:
    """``spark.dynamicAllocation.maxExecutors``: the workers of the maximum capacity minus the drivers (one, or the
    warm pool's pre-initialized drivers, which hold their share of the capacity while the application is started).

    Raises:
        SizingError: the capacity holds no executor beside its driver(s).
    """
    drivers = max(1, warm_pool.drivers if warm_pool else 1)
    executors = capacity_workers(cpu, memory, disk) - drivers
    if executors < 1:
        raise SizingError(f"context 'emrMaxCpu'/'emrMaxMemory'/'emrMaxDisk' ({cpu}, {memory}, {disk}) must hold "
                          f"{drivers} driver(s) and at least one executor of {WORKER_VCPU} vCPU, {WORKER_MEMORY_GB} GB "
                          f"and {WORKER_DISK_GB} GB of disk")
    return executors


def parse_warm_pool(raw: object, workers: int) -> WarmPool | None:
    """Context ``warmPool``: ``"off"`` (or empty) → ``None``; ``"<drivers>x<executors>"`` (e.g. ``"1x3"``) → a
    :class:`WarmPool` that fits in ``workers`` (the maximum capacity in workers, :func:`capacity_workers`).

    Raises:
        SizingError: another format, no driver, or more workers than the maximum capacity holds.
    """
    text = str(raw if raw is not None else "off").strip().lower()
    if text in ("", "off"):
        return None
    match = _WARM_POOL.match(text)
    if not match:
        raise SizingError(f"context 'warmPool' must be 'off' or '<drivers>x<executors>' (e.g. '1x3'), got {raw!r}")
    pool = WarmPool(drivers=int(match.group(1)), executors=int(match.group(2)))
    if pool.drivers < 1:
        raise SizingError(f"context 'warmPool' needs at least one driver (a job run starts on its driver), got {raw!r}")
    if pool.workers > workers:
        raise SizingError(f"context 'warmPool' {raw!r} asks for {pool.workers} workers; the application's maximum "
                          f"capacity holds {workers}")
    return pool


def run_featurize_seconds(images: int, executors: int, vcpu_s_per_image: float = SIZING_VCPU_S_PER_IMAGE) -> float:
    """Seconds for ``executors`` executors of :data:`WORKER_VCPU` vCPU to featurize ``images`` images."""
    return images * vcpu_s_per_image / (executors * WORKER_VCPU)


def default_job_max_images(job_timeout_minutes: int, executors: int) -> int:
    """Default ``JOB_MAX_IMAGES``: the most images a run at maximum capacity (``executors`` executors) featurizes in
    :data:`SIZING_TIMEOUT_SHARE` of the timeout at :data:`SIZING_VCPU_S_PER_IMAGE`, rounded down to a thousand
    (to a hundred below 1,000; at least 1). Deployed defaults: 7,200 s x 0.1 x 12 vCPU / 0.419 = 20,620 → 20,000.
    """
    budget = job_timeout_minutes * 60 * SIZING_TIMEOUT_SHARE * executors * WORKER_VCPU / SIZING_VCPU_S_PER_IMAGE
    step = 1000 if budget >= 1000 else 100
    return max(1, math.floor(budget / step) * step)


def check_job_max_images(job_max_images: int, job_timeout_minutes: int, executors: int) -> None:
    """Refuse a cap whose run could not featurize within the whole timeout even at maximum capacity.

    Raises:
        SizingError: ``job_max_images`` x :data:`SIZING_VCPU_S_PER_IMAGE` / (executors x 4 vCPU) > the timeout.
    """
    seconds = run_featurize_seconds(job_max_images, executors)
    if seconds > job_timeout_minutes * 60:
        raise SizingError(f"context 'jobMaxImages' {job_max_images}: a run that size needs ~{seconds / 60:.0f} min "
                          f"on {executors} executors at {SIZING_VCPU_S_PER_IMAGE} vCPU-s/image, over jobTimeoutMinutes "
                          f"({job_timeout_minutes}); the default for this capacity is "
                          f"{default_job_max_images(job_timeout_minutes, executors)}")


def spark_sizing_conf(executors: int, warm_pool: WarmPool | None = None) -> dict[str, str]:
    """The job's worker sizes and dynamic allocation (``--conf`` key → value, sent with every job run).

    ``executors``: maxExecutors (:func:`max_executors`). A warm pool's pre-initialized executors are billed anyway,
    so a run starts on all of them (at most ``executors``); otherwise on :data:`INITIAL_EXECUTORS`.
    """
    initial = min(executors, max(INITIAL_EXECUTORS, warm_pool.executors if warm_pool else 0))
    minimum = min(MIN_EXECUTORS, initial)
    return {
        "spark.driver.cores": str(WORKER_VCPU),
        "spark.driver.memory": SPARK_MEMORY,
        "spark.emr-serverless.driver.disk": f"{WORKER_DISK_GB}g",
        "spark.executor.cores": str(WORKER_VCPU),
        "spark.executor.memory": SPARK_MEMORY,
        "spark.emr-serverless.executor.disk": f"{WORKER_DISK_GB}g",
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.minExecutors": str(minimum),
        "spark.dynamicAllocation.initialExecutors": str(initial),
        # with dynamic allocation, spark.executor.instances is a floor of the initial executors: keep it equal
        "spark.executor.instances": str(initial),
        "spark.dynamicAllocation.maxExecutors": str(executors),
    }

