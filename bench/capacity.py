"""Benchmark — capacity model of the deployed pipeline (issue 19): throughput, time-to-feature and cost per day.

    python -m bench.capacity                 # sweep + validation (two local demos, ~5 min on 2 cores)
    python -m bench.capacity --no-validate   # the sweep alone (seconds)

1. **Sweep** (:mod:`bench.capacity_model`) at the deployed defaults (cdk.json: threshold 100, batch max 1,000, max
   wait 900 s, tick 1 min, 16 vCPU application = a 4-vCPU driver + 3 executors of 4 vCPU, ARM64 prices), Poisson
   arrivals from 0.1 to 500 photos/s: one batch per job run (before issue 19), every waiting batch per job run
   (cold start), the same with a warm pool (pre-initialized capacity), and an always-on streaming job. Per-image
   cost: the engines benchmark's default ARM64 engine job rate (``bench/results/engines.json``), applied per vCPU.
2. **Validation** against this machine: two local ``fruits demo`` Poisson streams; the model is fed their measured
   job-run durations (least-squares ``overhead + b * photos``) and their recorded upload times, and predicts their
   p95 time-to-feature (target: within 25 % of the measured one).

Writes ``bench/results/capacity.json`` and the plot ``docs/capacity_p95.png`` (p95 time-to-feature against arrival
rate, log-log).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.capacity_model import Deployment, StartLatency, poisson_arrivals, simulate, streaming, with_latency
from bench.common import REPO_ROOT, RESULTS_DIR, write_result
from bench.cost import PRICE_SOURCE, PRICES_USD
from bench.report import summary_row

RATES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 500.0)
PLOT_PATH = REPO_ROOT / "docs" / "capacity_p95.png"
MAX_SIMULATED_PHOTOS = 2_000_000
COLD = StartLatency(60.0, 120.0, "EMR Serverless without pre-initialized capacity: workers are requested when the "
                                 "job run is submitted, about a minute (issue 19, EMR Serverless User Guide "
                                 "'Pre-initialized capacity', aws-samples/emr-serverless-samples); p95 assumed 2x")
WARM = StartLatency(5.0, 10.0, "pre-initialized capacity: 'ready to respond in seconds', 'jobs start immediately' "
                               "(EMR Serverless User Guide 'Pre-initialized capacity')")
DEFAULT_VCPU_S_PER_IMAGE = 2 / 33.616  # engines.json onnxruntime-float32 job on 2 cores (fallback when absent)
VALIDATION_RATES = (15.0, 20.0)  # the issue-19 stream targets: --limit 1200 at 15 and 20 photos/s
VALIDATION_LIMIT = 1200
TOLERANCE = 0.25


def aws_deployment(results_dir: Path = RESULTS_DIR, overhead_s: float = 12.0) -> Deployment:
    """The deployed defaults (cdk.json) with the per-image cost of the ARM64 default engine's measured job rate.

    ``overhead_s``: driver time outside the featurize pass (the local fit's intercept when validated).
    """
    vcpu_s = DEFAULT_VCPU_S_PER_IMAGE
    path = results_dir / "engines.json"
    if path.is_file():
        doc = json.loads(path.read_text())
        job = doc.get("jobs", {}).get("onnxruntime-float32")
        if job and job.get("images_per_s"):
            vcpu_s = int(doc["machine"]["cores"]) / float(job["images_per_s"])
    prices = PRICES_USD["arm64"]
    return Deployment(threshold=100, batch_max_images=1000, max_wait_s=900.0, tick_s=60.0, job_max_images=20_000,
                      handoff_s=2.0, latency=COLD, overhead_s=overhead_s, vcpu_s_per_image=vcpu_s,
                      executor_vcpu=4, driver_vcpu=4, max_executors=3, images_per_executor=500,
                      memory_gb_per_vcpu=4.0, vcpu_hour_usd=prices["vcpu_hour"], gb_hour_usd=prices["gb_hour"])


def sweep(d: Deployment, rates: Sequence[float] = RATES, seed: int = 0) -> list[dict[str, Any]]:
    """One row per arrival rate: the four policies' summaries (``bench.capacity_model.SimResult.summary``)."""
    rows = []
    for rate in rates:
        horizon = min(6 * 3600.0, max(3600.0, MAX_SIMULATED_PHOTOS / rate))
        arrivals = poisson_arrivals(rate, horizon, np.random.default_rng(seed))
        row = {"rate_per_s": rate, "horizon_s": horizon}
        row["one_batch_per_run"] = simulate(arrivals, d, "one", seed, horizon).summary()
        row["all_batches_per_run"] = simulate(arrivals, d, "all", seed, horizon).summary()
        row["all_batches_warm_pool"] = simulate(arrivals, with_latency(d, WARM, warm_pool=True), "all", seed,
                                                horizon).summary()
        row["streaming"] = streaming(rate, d)
        for key in ("one_batch_per_run", "all_batches_per_run", "all_batches_warm_pool"):
            s = row[key]
            s["usd_per_1000_photos"] = round(s["usd_per_day"] / max(rate * 86.4, 1e-9), 4)
        row["streaming"]["usd_per_1000_photos"] = round(row["streaming"]["usd_per_day"] / (rate * 86.4), 4)
        rows.append(row)
    return rows


def ceiling_per_day(d: Deployment, policy: str, seed: int = 0) -> float:
    """Photos a day the pipeline sustains: the largest sustained throughput over a saturating stream."""
    horizon = 3 * 3600.0
    rate = 2 * d.capacity_per_s
    arrivals = poisson_arrivals(rate, horizon, np.random.default_rng(seed))
    return simulate(arrivals, d, policy, seed, horizon).summary()["throughput_per_s"] * 86400.0


def plot(rows: list[dict[str, Any]], path: Path = PLOT_PATH) -> Path:
    """Log-log plot of p95 time-to-feature against arrival rate, one line per policy (PNG at ``path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    labels = {"one_batch_per_run": "one batch per job run (before)", "all_batches_per_run": "every waiting batch",
              "all_batches_warm_pool": "every waiting batch + warm pool", "streaming": "always-on streaming job"}
    for key, label in labels.items():
        xs = [r["rate_per_s"] for r in rows if r[key]["time_to_feature_s"]["p95"] is not None]
        ys = [r[key]["time_to_feature_s"]["p95"] for r in rows if r[key]["time_to_feature_s"]["p95"] is not None]
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arrival rate (photos/s, Poisson)")
    ax.set_ylabel("p95 time-to-feature (s)")
    ax.set_title("Deployed defaults (threshold 100, max wait 900 s, 16 vCPU)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def fit_job_runs(runs: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """Least squares ``seconds = overhead + b * photos`` over ``(photos, seconds)`` job runs (numpy lstsq);
    returns ``(overhead s, b s/photo)``. Raises ValueError with fewer than two distinct sizes."""
    sizes = np.array([n for n, _ in runs], dtype=np.float64)
    if len(set(sizes.tolist())) < 2:
        raise ValueError("need job runs of at least two sizes to fit overhead and per-photo time")
    design = np.column_stack([np.ones_like(sizes), sizes])
    (overhead, per_photo), *_ = np.linalg.lstsq(design, np.array([s for _, s in runs]), rcond=None)
    return float(overhead), float(per_photo)


def local_demo(rate: float, workdir: Path, *, limit: int, threshold: int, max_wait: int, sample_dir: Path,
               weights: str = "random:0") -> dict[str, Any]:
    """Run one local Poisson-stream demo; returns its arrivals (s), measured time-to-feature and job runs."""
    from rich.console import Console

    from fruits.local.demo import DemoConfig, run_demo
    from spark_jobs.lakehouse import tables

    config = DemoConfig(images=sample_dir / "Training", lake=workdir / f"capacity-{rate:g}", weights=weights,
                        report=False, limit=limit, threshold=threshold, arrival_rate=rate, max_wait=max_wait)
    result = run_demo(config, Console(quiet=True))
    rows = tables.scan(tables.Lake.at(str(config.lake)), tables.FEATURES,
                       columns=("event_time", "ingested_at")).to_pylist()
    rows = [r for r in rows if r["event_time"] and r["ingested_at"]]
    t0 = min(r["event_time"] for r in rows)
    arrivals = np.sort(np.array([(r["event_time"] - t0).total_seconds() for r in rows]))
    ttf = np.array([(r["ingested_at"] - r["event_time"]).total_seconds() for r in rows])
    sizes = {rep["batch_id"]: int(rep["counts"]["listed"]) for rep in result.batch_reports}
    runs = [(sum(sizes[b] for b in (o.batch_ids or (o.batch_id,)) if b in sizes), o.seconds)
            for o in result.job_runs if o.state == "SUCCESS"]  # a job run takes every sealed batch waiting
    order = np.argsort([(r["event_time"] - t0).total_seconds() for r in rows], kind="stable")
    by_arrival = ttf[order]
    stream = {  # the issue-19 targets: p95 of the first and the last 300 photos, wall against the stream's length
        "photos": len(rows), "uploaded": result.uploaded, "featurized": result.featurized,
        "job_runs": len(result.job_runs), "p95_s": round(float(np.percentile(ttf, 95)), 1),
        "max_s": round(float(ttf.max()), 1),
        "p95_first_300_s": round(float(np.percentile(by_arrival[:300], 95)), 1),
        "p95_last_300_s": round(float(np.percentile(by_arrival[-300:], 95)), 1),
        "stream_s": round(float(arrivals[-1]), 1),
        "wall_s": round(result.seconds_total - result.seconds_setup, 1),  # first upload to the last job run's end
    }
    return {"rate": rate, "achieved_rate": result.upload_rate, "arrivals": arrivals, "ttf": ttf, "runs": runs,
            "stream": stream,
            "config": {"limit": limit, "threshold": threshold, "max_wait": max_wait, "tick_s": config.tick_seconds}}


def validate(demos: Sequence[dict[str, Any]], policy: str) -> dict[str, Any]:
    """Fit the job-run cost on every demo's runs, then predict each demo's p95 time-to-feature from its own
    upload times with the local parameters (one 2-core worker, no start latency: spark-submit is in the fit)."""
    overhead, per_photo = fit_job_runs([run for demo in demos for run in demo["runs"]])
    out = {"fit": {"overhead_s": round(overhead, 2), "seconds_per_photo": round(per_photo, 4)}, "demos": []}
    for demo in demos:
        cfg = demo["config"]
        d = Deployment(threshold=cfg["threshold"], batch_max_images=1000, max_wait_s=cfg["max_wait"],
                       tick_s=cfg["tick_s"], handoff_s=1.0, latency=StartLatency(0.0, 0.0), overhead_s=overhead,
                       vcpu_s_per_image=per_photo, executor_vcpu=1, driver_vcpu=1, max_executors=1,
                       images_per_executor=10**9)
        predicted = simulate(demo["arrivals"], d, policy, horizon_s=float(demo["arrivals"][-1])).summary()
        measured = float(np.percentile(demo["ttf"], 95))
        p95 = predicted["time_to_feature_s"]["p95"]
        error = (p95 - measured) / measured
        out["demos"].append({"rate": demo["rate"], "achieved_rate": round(demo["achieved_rate"], 2),
                             "stream": demo.get("stream"),
                             "photos": len(demo["arrivals"]), "job_runs": len(demo["runs"]),
                             "measured_p95_s": round(measured, 1), "predicted_p95_s": p95,
                             "relative_error": round(error, 3), "within_tolerance": abs(error) <= TOLERANCE})
    return out


def run(results_dir: Path = RESULTS_DIR, *, validate_locally: bool = True, sample_dir: Path | None = None,
        policy: str = "all", workdir: Path | None = None) -> dict[str, Any]:
    """Sweep (+ validation); write ``capacity.json`` and the plot; return the document."""
    from bench.common import SAMPLE_DIR

    validation = None
    overhead = 12.0
    if validate_locally:
        work = workdir or Path(tempfile.mkdtemp(prefix="fruits-capacity-"))
        # the issue-19 streams (1,200 photos, threshold 100, max wait 30); job runs of several sizes feed the fit
        demos = [local_demo(rate, work, limit=VALIDATION_LIMIT, threshold=100, max_wait=30,
                            sample_dir=sample_dir or SAMPLE_DIR) for rate in VALIDATION_RATES]
        validation = validate(demos, policy)
        overhead = max(validation["fit"]["overhead_s"], 0.0)
    d = aws_deployment(results_dir, overhead_s=overhead)
    rows = sweep(d)
    ceilings = {policy_: round(ceiling_per_day(d, policy_)) for policy_ in ("one", "all")}
    summary = [
        summary_row("ceiling, one batch per job run (deployed defaults)", ceilings["one"], "photos/day"),
        summary_row("ceiling, every waiting batch per job run", ceilings["all"], "photos/day",
                    note=f"application max {d.max_executors} executors x {d.executor_vcpu} vCPU, "
                         f"{d.vcpu_s_per_image:.4f} vCPU-s/photo"),
    ]
    for row in rows:
        if row["rate_per_s"] in (1.0, 10.0, 100.0):
            one, every, warm = row["one_batch_per_run"], row["all_batches_per_run"], row["all_batches_warm_pool"]
            summary.append(summary_row(
                f"{row['rate_per_s']:g} photos/s: p95 time-to-feature one | every | warm pool",
                f"{one['time_to_feature_s']['p95']} | {every['time_to_feature_s']['p95']} | "
                f"{warm['time_to_feature_s']['p95']}", "s",
                note=f"USD/1,000 photos {one['usd_per_1000_photos']} | {every['usd_per_1000_photos']} | "
                     f"{warm['usd_per_1000_photos']}; backlog growth/h {one['backlog_growth_per_h']} | "
                     f"{every['backlog_growth_per_h']}"))
    if validation:
        for demo in validation["demos"]:
            summary.append(summary_row(
                f"validation: p95 time-to-feature at {demo['rate']:g} photos/s, predicted vs measured",
                f"{demo['predicted_p95_s']} vs {demo['measured_p95_s']}", "s", f"within {TOLERANCE:.0%}",
                demo["within_tolerance"], note=f"error {demo['relative_error']:+.1%}, {demo['job_runs']} job runs"))
    streaming_cheaper = next((r["rate_per_s"] for r in rows
                              if r["streaming"]["usd_per_day"] <= r["all_batches_per_run"]["usd_per_day"]), None)
    summary.append(summary_row("streaming job cheaper than job runs from", streaming_cheaper, "photos/s"))
    doc = {
        "description": "Discrete-event model of the deployed pipeline (bench/capacity_model.py); Poisson arrivals.",
        "summary": summary,
        "deployment": {k: (v.__dict__ if isinstance(v, StartLatency) else v) for k, v in d.__dict__.items()},
        "cold_latency": COLD.__dict__, "warm_latency": WARM.__dict__, "price_source": PRICE_SOURCE,
        "ceilings_photos_per_day": ceilings, "validation": validation, "validation_policy": policy, "rows": rows,
        "plot": str(plot(rows).relative_to(REPO_ROOT)),
    }
    write_result("capacity", doc, results_dir)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.capacity [--no-validate] [--policy one|all]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--no-validate", action="store_true", help="skip the two local demos")
    parser.add_argument("--policy", choices=("one", "all"), default="all",
                        help="the pipeline's job-run policy the validation models (default: all, as deployed since "
                             "issue 19: a job run takes every sealed batch waiting)")
    args = parser.parse_args(argv)
    doc = run(validate_locally=not args.no_validate, policy=args.policy)
    for row in doc["summary"]:
        print(f"{row['metric']}: {row['value']} {row['unit']} {row['note']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
