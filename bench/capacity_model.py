"""Capacity model of the deployed pipeline: a discrete-event simulation of seals, the job-run slot and billing.

What is simulated (docs: README "Scale", bench/README.md "capacity"):

* **Arrivals**: photo upload times (s, sorted), e.g. a Poisson stream (:func:`poisson_arrivals`) or the event
  times a local demo recorded.
* **Seal rules** (``lambdas.service.batching``): pending photos are sealed into a batch when their count reaches
  ``threshold`` (at the arrival that reaches it), or once the oldest has waited ``max_wait_s``, checked at every
  arrival (the ingest Lambda) and at every ``tick_s`` (the tick Lambda); a batch holds at most ``batch_max_images``.
* **One job-run slot** (the application runs one job run at a time): when the slot is free a sealed batch starts
  at once; when a run ends, the next one starts ``handoff_s`` later (the SUCCESS event -> job_state ->
  StartJobRun). Policy ``one``: a run takes the oldest sealed batch (the pipeline before issue 19). Policy
  ``all``: a run takes every sealed batch waiting, in seal order, up to ``job_max_images`` (whole batches, at
  least one).
* **Job-run duration**: ``start latency`` (submission -> driver running: cold, or warm with pre-initialized
  capacity; a lognormal fitted to a median and a p95) + ``overhead_s`` (driver: imports, manifest, PCA plan and
  commits) + featurize time ``n * vcpu_s_per_image / (executors(n) * executor_vcpu)`` where dynamic allocation
  gives ``executors(n) = min(max_executors, ceil(n / images_per_executor))``.
* **Billing** (EMR Serverless, ``JobRun.billedResourceUtilization``: vCPU-hours and GB-hours per worker from when
  it is ready until the job run ends, "a 1-minute minimum usage for workers"; idle pre-initialized workers are
  billed for as long as the application is started): each run bills its driver for ``overhead + featurize`` and
  each executor for ``featurize``, each at least 60 s. A warm pool (pre-initialized driver + executors) bills its
  workers around the clock instead of their per-run minimum.
* **Streaming** (third column): an always-on job of a driver + enough executors for the arrival rate at 80 %
  utilization, micro-batches every ``trigger_s``: time-to-feature ~ uniform wait within the trigger + the
  micro-batch's processing; billed 24 h a day (closed form, no simulation).

Everything is in seconds, photos and USD. Pure numpy; :mod:`bench.capacity` runs the sweep and the validation.
I wrote this small simulator myself rather than with SimPy: the seal rules reduce to ``searchsorted`` over the
sorted arrival times, so one step per batch replaces one event per photo (10^6–10^7 at 500 photos/s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

BILLING_MINIMUM_S = 60.0  # EMR Serverless bills each worker at least one minute per job run (JobRun docs)


@dataclass(frozen=True)
class StartLatency:
    """Job-run start latency (s): lognormal with the given median and 95th percentile (``p95 >= median > 0``);
    ``median == 0`` means no latency."""

    median_s: float
    p95_s: float
    source: str = ""

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` latencies (float64, s). Raises ValueError if ``p95_s < median_s``."""
        if self.median_s <= 0:
            return np.zeros(n)
        if self.p95_s < self.median_s:
            raise ValueError("p95 must be >= median")
        sigma = math.log(self.p95_s / self.median_s) / 1.6448536269514722  # z of the 95th percentile
        return rng.lognormal(math.log(self.median_s), sigma, n)


@dataclass(frozen=True)
class Deployment:
    """The deployed (or local) pipeline's parameters. Prices are USD per vCPU-hour and per GB-hour."""

    threshold: int = 100  # BATCH_THRESHOLD (cdk.json batchThreshold)
    batch_max_images: int = 1000  # BATCH_MAX_IMAGES
    max_wait_s: float = 900.0  # BATCH_MAX_WAIT_SECONDS (0 = off)
    tick_s: float = 60.0  # tickRateMinutes
    job_max_images: int = 20_000  # JOB_MAX_IMAGES (policy "all")
    handoff_s: float = 2.0  # run end -> next StartJobRun (EventBridge -> job_state)
    latency: StartLatency = field(default_factory=lambda: StartLatency(0.0, 0.0))
    overhead_s: float = 20.0  # driver time outside the featurize pass
    vcpu_s_per_image: float = 0.06  # featurize cost (engines bench: cores / job images per s)
    executor_vcpu: int = 4
    driver_vcpu: int = 4
    max_executors: int = 3  # (application max vCPU - driver) / executor vCPU
    images_per_executor: int = 500  # dynamic allocation: one more executor per this many images
    memory_gb_per_vcpu: float = 4.0
    vcpu_hour_usd: float = 0.050544
    gb_hour_usd: float = 0.005512
    warm_pool: bool = False  # pre-initialized driver + max_executors, billed around the clock

    def featurize_s(self, n: int) -> float:
        """Seconds of the featurize pass for ``n`` photos with the executors dynamic allocation gives."""
        return n * self.vcpu_s_per_image / (self.executors(n) * self.executor_vcpu)

    def executors(self, n: int) -> int:
        """Executors of a run of ``n`` photos: ``min(max_executors, ceil(n / images_per_executor))``, >= 1."""
        return max(1, min(self.max_executors, math.ceil(n / self.images_per_executor)))

    def worker_usd_per_s(self, vcpu: int) -> float:
        """USD per second of one worker of ``vcpu`` vCPU and ``memory_gb_per_vcpu`` GB per vCPU."""
        return vcpu * (self.vcpu_hour_usd + self.memory_gb_per_vcpu * self.gb_hour_usd) / 3600.0

    def run_usd(self, n: int) -> float:
        """Billed USD of one job run of ``n`` photos (each worker >= 60 s); 0 with a warm pool (billed apart)."""
        if self.warm_pool:
            return 0.0
        featurize = self.featurize_s(n)
        driver = max(BILLING_MINIMUM_S, self.overhead_s + featurize) * self.worker_usd_per_s(self.driver_vcpu)
        executor = max(BILLING_MINIMUM_S, featurize) * self.worker_usd_per_s(self.executor_vcpu)
        return driver + self.executors(n) * executor

    def warm_pool_usd_per_day(self) -> float:
        """USD a day of the pre-initialized driver + ``max_executors`` executors (0 without a warm pool)."""
        if not self.warm_pool:
            return 0.0
        return 86400.0 * (self.worker_usd_per_s(self.driver_vcpu)
                          + self.max_executors * self.worker_usd_per_s(self.executor_vcpu))

    @property
    def capacity_per_s(self) -> float:
        """Featurize rate of a full-size run (photos/s), the slot's ceiling when runs are long."""
        return self.max_executors * self.executor_vcpu / self.vcpu_s_per_image


@dataclass(frozen=True)
class SimResult:
    """One simulation: per-photo time-to-feature (NaN for photos not committed by the end), runs and cost."""

    arrivals: np.ndarray  # (n,) float64 s
    committed: np.ndarray  # (n,) float64 s, NaN if not committed within the horizon
    runs: list[dict[str, float]]  # start, end, images, batches, usd
    horizon_s: float
    usd_per_day: float

    @property
    def time_to_feature(self) -> np.ndarray:
        """Seconds from upload to committed row, photos committed within the horizon (float64)."""
        ttf = self.committed - self.arrivals
        return ttf[~np.isnan(ttf)]

    def summary(self) -> dict[str, Any]:
        """Throughput (photos/s over the horizon), time-to-feature p50/p95/max of the committed photos and of
        the last fifth of arrivals, backlog growth (:meth:`backlog_growth_per_h`), runs, USD/day."""
        horizon = self.horizon_s
        done = ~np.isnan(self.committed) & (self.committed <= horizon)
        ttf = self.time_to_feature
        tail = self.arrivals >= np.quantile(self.arrivals, 0.8) if len(self.arrivals) else np.zeros(0, bool)
        tail_ttf = (self.committed - self.arrivals)[tail]
        # a photo of the tail never committed counts with the time it has waited so far (a lower bound)
        tail_ttf = np.where(np.isnan(tail_ttf), horizon - self.arrivals[tail], tail_ttf)
        return {
            "photos": len(self.arrivals),
            "throughput_per_s": round(float(np.count_nonzero(done)) / horizon, 3) if horizon else 0.0,
            "time_to_feature_s": _percentiles(ttf),
            "time_to_feature_last_fifth_s": _percentiles(tail_ttf),
            "backlog_growth_per_h": self.backlog_growth_per_h(),
            "job_runs": len(self.runs),
            "photos_per_run": round(float(np.mean([r["images"] for r in self.runs])), 1) if self.runs else 0.0,
            "usd_per_day": round(self.usd_per_day, 2),
        }


    def backlog_growth_per_h(self, samples: int = 64) -> float:
        """Slope (photos/h, least squares, ``numpy.polyfit``) of the backlog — photos uploaded and not yet
        committed — over the second half of the horizon: ~0 while the pipeline keeps up, the excess arrival rate
        when it does not. The backlog is a sawtooth (each run commits its photos at once), so it is read at the
        same point of every cycle, right after each commit; with fewer than 3 commits there, on a regular grid."""
        if not len(self.arrivals) or self.horizon_s <= 0:
            return 0.0
        ends = np.array([r["end"] for r in self.runs if self.horizon_s / 2 <= r["end"] <= self.horizon_s])
        times = ends if len(ends) >= 3 else np.linspace(self.horizon_s / 2, self.horizon_s, samples)
        commits = np.sort(np.where(np.isnan(self.committed), np.inf, self.committed))
        backlog = np.searchsorted(self.arrivals, times, side="right") - np.searchsorted(commits, times, side="right")
        return round(float(np.polyfit(times, backlog, 1)[0]) * 3600.0, 1)


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p95": None, "max": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "max": round(float(values.max()), 1)}


def poisson_arrivals(rate_per_s: float, horizon_s: float, rng: np.random.Generator) -> np.ndarray:
    """Upload times (s, sorted float64) of a Poisson stream of ``rate_per_s`` photos/s over ``[0, horizon_s)``.

    Raises ValueError for a non-positive rate or horizon.
    """
    if rate_per_s <= 0 or horizon_s <= 0:
        raise ValueError("rate and horizon must be positive")
    n = rng.poisson(rate_per_s * horizon_s)
    return np.sort(rng.uniform(0.0, horizon_s, n))


def seal_batches(arrivals: np.ndarray, d: Deployment) -> list[tuple[float, int, int]]:
    """The batches the seal rules make: ``(seal time s, first index, end index)`` over sorted ``arrivals``.

    The count rule seals at the arrival that brings the pending count to ``threshold``; the age rule at the
    first check (an arrival or a tick, ticks at multiples of ``tick_s``) at or after ``oldest + max_wait_s``.
    A batch takes the pending photos up to ``batch_max_images``; the rest stay pending.
    """
    n = len(arrivals)
    batches: list[tuple[float, int, int]] = []
    i = 0
    while i < n:
        by_count = arrivals[i + d.threshold - 1] if i + d.threshold - 1 < n else math.inf
        by_age = math.inf
        if d.max_wait_s > 0:
            due = arrivals[i] + d.max_wait_s
            tick = math.ceil(due / d.tick_s) * d.tick_s if d.tick_s > 0 else math.inf
            k = int(np.searchsorted(arrivals, due, side="left"))
            by_age = min(tick, arrivals[k] if k < n else math.inf)
        sealed = min(by_count, by_age)
        if math.isinf(sealed):  # neither rule fires: the rest stays pending (max wait off, tail below threshold)
            break
        end = min(int(np.searchsorted(arrivals, sealed, side="right")), i + d.batch_max_images)
        batches.append((float(sealed), i, end))
        i = end
    return batches


def simulate(arrivals: np.ndarray, d: Deployment, policy: str = "all", seed: int = 0,
             horizon_s: float | None = None) -> SimResult:
    """Run the seal rules and the one-slot job runs over ``arrivals`` (s, sorted).

    Args:
        policy: ``"one"`` (a run takes the oldest sealed batch) or ``"all"`` (every sealed batch waiting, up to
            ``job_max_images``).
        horizon_s: the end of the observation (default: the last arrival); runs ending later still commit
            (their photos count in time-to-feature) but not in throughput.

    Raises:
        ValueError: unknown policy.
    """
    if policy not in ("one", "all"):
        raise ValueError(f"policy must be 'one' or 'all', got {policy!r}")
    rng = np.random.default_rng(seed)
    arrivals = np.asarray(arrivals, dtype=np.float64)
    horizon = float(horizon_s if horizon_s is not None else (arrivals[-1] if len(arrivals) else 0.0))
    batches = seal_batches(arrivals, d)
    committed = np.full(len(arrivals), np.nan)
    runs: list[dict[str, float]] = []
    free_at = -math.inf
    k = 0
    latencies = d.latency.sample(rng, max(1, len(batches)))
    while k < len(batches):
        start = max(batches[k][0], free_at + d.handoff_s)
        take = [k]
        if policy == "all":
            total = batches[k][2] - batches[k][1]
            while k + len(take) < len(batches) and batches[k + len(take)][0] <= start:
                nxt = batches[k + len(take)]
                if total + nxt[2] - nxt[1] > d.job_max_images:
                    break
                total += nxt[2] - nxt[1]
                take.append(k + len(take))
        first, last = batches[take[0]][1], batches[take[-1]][2]
        images = last - first
        end = start + latencies[len(runs) % len(latencies)] + d.overhead_s + d.featurize_s(images)
        committed[first:last] = end
        runs.append({"start": start, "end": end, "images": images, "batches": len(take), "usd": d.run_usd(images)})
        free_at = end
        k += len(take)
    span = max(horizon, 1e-9)
    usd = sum(r["usd"] for r in runs if r["start"] <= horizon)
    usd_per_day = usd * 86400.0 / span + d.warm_pool_usd_per_day()
    return SimResult(arrivals=arrivals, committed=committed, runs=runs, horizon_s=horizon, usd_per_day=usd_per_day)


def streaming(rate_per_s: float, d: Deployment, trigger_s: float = 10.0, utilization: float = 0.8) -> dict[str, Any]:
    """Always-on streaming job (closed form): executors for ``rate_per_s`` at ``utilization``, micro-batches
    every ``trigger_s``; time-to-feature p50 ~ trigger/2 + processing, p95 ~ 0.95 trigger + processing; USD/day
    of the driver + executors around the clock. Throughput is capped by ``max_executors``."""
    need = rate_per_s * d.vcpu_s_per_image / (d.executor_vcpu * utilization)
    executors = max(1, min(d.max_executors, math.ceil(need)))
    capacity = executors * d.executor_vcpu / d.vcpu_s_per_image
    stable = rate_per_s < capacity
    processing = rate_per_s * trigger_s * d.vcpu_s_per_image / (executors * d.executor_vcpu)
    usd = 86400.0 * (d.worker_usd_per_s(d.driver_vcpu) + executors * d.worker_usd_per_s(d.executor_vcpu))
    return {
        "executors": executors,
        "throughput_per_s": round(min(rate_per_s, capacity), 3),
        "time_to_feature_s": {"p50": round(trigger_s / 2 + processing, 1) if stable else None,
                              "p95": round(0.95 * trigger_s + processing, 1) if stable else None},
        "backlog_growth_per_h": 0.0 if stable else round((rate_per_s - capacity) * 3600.0, 1),
        "usd_per_day": round(usd, 2),
    }


def with_latency(d: Deployment, latency: StartLatency, warm_pool: bool = False) -> Deployment:
    """``d`` with another start latency (and warm-pool billing)."""
    return replace(d, latency=latency, warm_pool=warm_pool)
