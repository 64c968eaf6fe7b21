"""bench.capacity_model: the seal rules, the job-run slot policies, billing, and the validation fit."""

import numpy as np
import pytest

from bench.capacity import fit_job_runs, validate
from bench.capacity_model import (
    Deployment,
    StartLatency,
    poisson_arrivals,
    seal_batches,
    simulate,
    streaming,
)

NO_LATENCY = StartLatency(0.0, 0.0)


def local(**kw) -> Deployment:
    base = dict(threshold=3, batch_max_images=5, max_wait_s=10.0, tick_s=4.0, handoff_s=0.0, latency=NO_LATENCY,
                overhead_s=5.0, vcpu_s_per_image=1.0, executor_vcpu=1, driver_vcpu=1, max_executors=1,
                images_per_executor=10**9)
    return Deployment(**{**base, **kw})


def test_count_rule_seals_at_the_arrival_reaching_the_threshold():
    # GIVEN three photos within a second and a threshold of 3
    arrivals = np.array([0.0, 0.2, 0.9, 50.0])
    # WHEN the seal rules run
    batches = seal_batches(arrivals, local())
    # THEN the first batch is sealed at the third arrival with exactly those photos
    assert batches[0] == (0.9, 0, 3)


def test_age_rule_seals_at_the_first_tick_or_arrival_after_max_wait():
    # GIVEN one photo at t=1 (max wait 10 s: due at 11), ticks every 4 s, next arrival at 30
    arrivals = np.array([1.0, 30.0])
    # WHEN / THEN the tick at 12 seals it (before the arrival at 30); the second is sealed by the tick at 40
    assert seal_batches(arrivals, local()) == [(12.0, 0, 1), (40.0, 1, 2)]
    # AND without ticks the next arrival (the ingest check) seals it, taking that arrival too
    assert seal_batches(arrivals, local(tick_s=0.0))[0] == (30.0, 0, 2)


def test_a_batch_never_exceeds_batch_max_images():
    # GIVEN 12 photos arriving at once and a batch max of 5 (threshold 3)
    arrivals = np.zeros(12)
    # WHEN sealed
    sizes = [end - start for _, start, end in seal_batches(arrivals, local())]
    # THEN every photo is in exactly one batch of at most 5
    assert sum(sizes) == 12 and max(sizes) <= 5


def test_every_waiting_batch_goes_into_one_run():
    # GIVEN a first batch of 3 photos whose run (5 s + 1 s per photo) starts at once, then 9 photos (3 batches)
    # sealed while it runs
    arrivals = np.concatenate([np.arange(3) * 0.01, 1.0 + np.arange(9) * 0.01])
    # WHEN one batch per run vs every waiting batch per run
    one = simulate(arrivals, local(), "one")
    every = simulate(arrivals, local(), "all")
    # THEN the first policy needs 3 more runs (3 overheads), the second 1 run of 3 batches; every photo committed
    assert [r["images"] for r in one.runs] == [3, 3, 3, 3]
    assert [r["images"] for r in every.runs] == [3, 9] and every.runs[1]["batches"] == 3
    assert np.isfinite(one.committed).all() and np.isfinite(every.committed).all()
    first_end = 0.02 + 5 + 3
    assert every.committed.max() == pytest.approx(first_end + 5 + 9)
    assert one.committed.max() == pytest.approx(first_end + 3 * (5 + 3))


def test_job_max_images_caps_a_run_in_whole_batches():
    # GIVEN the same stream and a cap of 7 photos per run
    arrivals = np.concatenate([np.arange(3) * 0.01, 1.0 + np.arange(9) * 0.01])
    runs = simulate(arrivals, local(job_max_images=7), "all").runs
    # THEN the run after the first takes 2 batches (6), the next the last one
    assert [r["images"] for r in runs] == [3, 6, 3]


def test_minimum_billing_of_a_small_run_matches_the_pricing_figure():
    # GIVEN a 100-photo run on a 4-vCPU driver + one 4-vCPU executor (16 GB each) at the ARM64 eu-west-3 prices
    d = Deployment(overhead_s=10.0, vcpu_s_per_image=0.06)
    # WHEN priced
    usd = d.run_usd(100)
    # THEN both workers bill their one-minute minimum: 2 x 60 s x 4 x (0.050544 + 4 x 0.005512) / 3600
    assert usd == pytest.approx(2 * 60 * 4 * (0.050544 + 4 * 0.005512) / 3600)
    assert 0.009 < usd < 0.011


def test_one_batch_per_run_saturates_at_batch_size_over_run_time():
    # GIVEN a stream far above what 3-photo runs of 8 s can take (3 photos / 8 s = 0.375 photos/s)
    d = local(batch_max_images=3)
    arrivals = poisson_arrivals(2.0, 2000.0, np.random.default_rng(1))
    # WHEN simulated with one batch per run
    summary = simulate(arrivals, d, "one", horizon_s=2000.0).summary()
    # THEN throughput is the slot's ceiling and the backlog grows by the excess
    assert summary["throughput_per_s"] == pytest.approx(3 / 8, rel=0.05)
    assert summary["backlog_growth_per_h"] == pytest.approx((2.0 - 3 / 8) * 3600, rel=0.1)


def test_streaming_is_capped_by_the_application():
    # GIVEN 3 executors of 4 vCPU at 0.06 vCPU-s per photo (200 photos/s)
    d = Deployment(vcpu_s_per_image=0.06)
    # WHEN / THEN a rate below the cap is served, one above it builds a backlog
    assert streaming(10.0, d)["backlog_growth_per_h"] == 0.0
    over = streaming(500.0, d)
    assert over["throughput_per_s"] == pytest.approx(200.0) and over["backlog_growth_per_h"] > 0


def test_fit_recovers_overhead_and_per_photo_time():
    # GIVEN job runs of exactly 11 s + 0.04 s per photo
    runs = [(n, 11.0 + 0.04 * n) for n in (100, 250, 500)]
    # WHEN fitted / THEN both parameters come back
    assert fit_job_runs(runs) == pytest.approx((11.0, 0.04))
    with pytest.raises(ValueError):
        fit_job_runs([(100, 15.0), (100, 16.0)])


def test_validation_reproduces_a_run_the_model_itself_made():
    # GIVEN a "measured" demo produced by the model with known parameters (threshold 100, max wait 30, tick 2 s)
    arrivals = poisson_arrivals(10.0, 120.0, np.random.default_rng(3))
    d = Deployment(threshold=100, batch_max_images=1000, max_wait_s=30, tick_s=2.0, handoff_s=1.0,
                   latency=NO_LATENCY, overhead_s=11.0, vcpu_s_per_image=0.04, executor_vcpu=1, driver_vcpu=1,
                   max_executors=1, images_per_executor=10**9)
    sim = simulate(arrivals, d, "one", horizon_s=float(arrivals[-1]))
    demo = {"rate": 10.0, "achieved_rate": 10.0, "arrivals": arrivals, "ttf": sim.committed - arrivals,
            "runs": [(int(r["images"]), r["end"] - r["start"]) for r in sim.runs],
            "config": {"threshold": 100, "max_wait": 30, "tick_s": 2.0}}
    # WHEN validated / THEN the prediction equals the measurement
    out = validate([demo], "one")
    assert out["fit"]["overhead_s"] == pytest.approx(11.0, abs=0.01)
    assert out["demos"][0]["relative_error"] == pytest.approx(0.0, abs=0.01)
