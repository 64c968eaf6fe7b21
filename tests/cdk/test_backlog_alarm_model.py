"""The SealedBacklogGrowing alarm's rule, fed the sealed backlog the capacity model (bench/capacity_model.py)
simulates for the deployed defaults: silent while job runs keep up, firing within ~1.5 h of an overload.

The alarm's own constants (period, M of N, the DIFF of the Minimum) come from cdk.components.monitoring; CloudWatch's
evaluation is modelled here: the floor is the Minimum of the datapoints published in each period, DIFF the change
from the previous period, the alarm fires when DIFF > 0 in BACKLOG_GROWTH_PERIODS of the last + 1 periods.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.capacity import aws_deployment
from bench.capacity_model import Deployment, poisson_arrivals, seal_batches, simulate
from cdk.components.monitoring import BACKLOG_GROWTH_PERIODS, MIN_BACKLOG_PERIOD_MINUTES

HORIZON_S = 4 * 3600.0
TICK_S = 60.0


def sealed_backlog(arrivals: np.ndarray, d: Deployment) -> tuple[np.ndarray, np.ndarray]:
    """What the Lambdas publish as SealedBacklogImages: ``(times s, images in SEALED batches not yet taken by a job
    run)`` at every tick and right after every run start (policy "all": a run takes every sealed batch waiting)."""
    result = simulate(arrivals, d, "all", seed=0, horizon_s=HORIZON_S)
    batches = seal_batches(arrivals, d)
    sealed_at = np.array([seal for seal, _, _ in batches])
    sizes = np.array([end - first for _, first, end in batches])
    taken_at = np.full(len(batches), np.inf)
    k = 0
    for run in result.runs:
        taken_at[k : k + int(run["batches"])] = run["start"]
        k += int(run["batches"])
    times = np.sort(np.concatenate([np.arange(TICK_S, HORIZON_S, TICK_S),
                                    [run["start"] for run in result.runs if run["start"] < HORIZON_S]]))
    values = np.array([sizes[(sealed_at <= t) & (taken_at > t)].sum() for t in times])
    return times, values


def alarm_fires_at(times: np.ndarray, values: np.ndarray) -> list[float]:
    """Ends (s) of the periods at which the alarm is in ALARM (missing periods: not breaching)."""
    period = MIN_BACKLOG_PERIOD_MINUTES * 60.0
    index = (times // period).astype(int)
    floor = np.array([values[index == i].min() if np.any(index == i) else np.nan for i in range(index.max() + 1)])
    breaching = np.diff(floor, prepend=np.nan) > 0  # NaN (no previous datapoint, a gap) compares False
    return [(i + 1) * period for i in range(len(floor))
            if np.count_nonzero(breaching[max(0, i - BACKLOG_GROWTH_PERIODS) : i + 1]) >= BACKLOG_GROWTH_PERIODS]


@pytest.mark.parametrize("rate", [1.0, 10.0, 50.0, 100.0])
def test_no_alarm_while_job_runs_keep_up(rate: float) -> None:
    # GIVEN the deployed defaults (ceiling ≈ 110 photos/s with cold starts and 20,000-photo runs) and a Poisson stream
    d = aws_deployment()
    arrivals = poisson_arrivals(rate, HORIZON_S, np.random.default_rng(1))
    # WHEN the sealed backlog it publishes goes through the alarm's rule for 4 hours
    fired = alarm_fires_at(*sealed_backlog(arrivals, d))
    # THEN the alarm stays silent
    assert fired == []


@pytest.mark.parametrize("rate", [130.0, 200.0])
def test_alarm_within_an_hour_and_a_half_of_an_overload(rate: float) -> None:
    # GIVEN photos arriving faster than full job runs featurize them
    d = aws_deployment()
    arrivals = poisson_arrivals(rate, HORIZON_S, np.random.default_rng(1))
    times, values = sealed_backlog(arrivals, d)
    # WHEN the sealed backlog goes through the alarm's rule
    fired = alarm_fires_at(times, values)
    # THEN it fires within 1.5 h (the earliest possible: 5 periods of 15 min) and stays in alarm while it grows
    assert fired and fired[0] <= 1.5 * 3600
    assert fired[-1] == HORIZON_S
    assert values[-1] > 20_000  # the backlog really grew past one full run
