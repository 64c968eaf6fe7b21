"""Benchmark 2 — incremental cost: a batch of N new images costs the same whatever the history.

Job part: the same N new images (real path: ResNet50, random weights, 224) are processed as a new batch
(i) on an empty lake and (ii) on the lake of the throughput run, which already holds H ~ 10*N images of the same
model_id (same PCA state, real features). Each case runs three times, interleaved (E, H, E, H, E, H); the
ratio of the median job times is reported (target <= 1.15), the machine being shared and noisy. The history is
the throughput run's real featurization, not the job's cheap ``projection`` featurizer: a different featurizer
is a different ``model_id`` with its own PCA state, so it would not be history for a ResNet50 batch.

PCA part: ``spark_jobs.pca.versions.plan_version`` + ``commit_version`` (load the latest state, merge the batch's
statistics, eigendecompose the 2048x2048 covariance, store) timed against committed states of growing n
(real feature vectors resampled with jitter), which must stay flat: the state is (n, mean, M2) whatever n.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from bench.common import pick_images, ratio, stopwatch, write_manifest, write_result
from bench.config import BenchConfig
from bench.report import summary_row

TARGET_RATIO = 1.15
RUNS = 3
FLAT_TOLERANCE = 1.15


def read_feature_matrix(lake: Path) -> np.ndarray:
    """The stored 2048-d ``features`` of a lake as float32 (n, d), read with a PyIceberg scan."""
    from spark_jobs.lakehouse import tables

    column = tables.scan(tables.Lake.at(str(lake)), tables.FEATURES, columns=("features",))["features"]
    return np.asarray(column.to_pylist(), dtype=np.float32)


def pca_refit_seconds(history_sizes: tuple[int, ...], n_new: int, real: np.ndarray, k: int, workdir: Path,
                      repeats: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    """Seconds of ``plan_version`` + ``commit_version`` for a batch of ``n_new`` vectors after each history size.

    Vectors are real feature vectors (``real``: float32 (m, d), from the throughput lake) drawn with replacement
    plus 1% Gaussian jitter per dimension, so the covariance has the spectrum of real ResNet50 features and rank
    min(n - 1, d). For each n in ``history_sizes`` a fresh lake gets one committed version of n vectors; the
    refit for the new batch is timed ``repeats`` times (each on a copy of that state, best kept).
    Returns rows ``{"history", "seconds", "all_seconds"}``.
    """
    from spark_jobs.pca.stats import SufficientStats
    from spark_jobs.pca.versions import commit_version, plan_version

    rng = np.random.default_rng(seed)
    jitter = 0.01 * real.std(axis=0) + 1e-6

    def vectors(count: int) -> np.ndarray:
        picked = real[rng.integers(0, len(real), count)]
        return picked + rng.standard_normal(picked.shape, dtype=np.float32) * jitter

    new = SufficientStats.from_array(vectors(n_new))
    rows = []
    for history in history_sizes:
        base = workdir / f"pca-history-{history}"
        shutil.rmtree(base, ignore_errors=True)
        old = SufficientStats.from_array(vectors(history))
        commit_version(str(base), plan_version(str(base), "bench-model", "history", old, k))
        times = []
        for attempt in range(repeats):
            lake = workdir / f"pca-history-{history}-run{attempt}"
            shutil.rmtree(lake, ignore_errors=True)
            shutil.copytree(base, lake)
            with stopwatch() as t:
                planned = plan_version(str(lake), "bench-model", "new", new, k)
                commit_version(str(lake), planned)
            times.append(round(t["seconds"], 3))
        rows.append({"history": history, "seconds": min(times), "all_seconds": times})
    return rows


def run(cfg: BenchConfig, workdir: Path, throughput: dict[str, Any]) -> dict[str, Any]:
    """Measure job time vs history and PCA refit vs history; write ``incremental.json``; return it."""
    from bench import spark_arm

    history_lake: Path = throughput["lake"]
    history = int(throughput["arms"]["c_spark_job"]["images"])
    n = cfg.incremental_n or max(1, history // cfg.history_factor)
    per_class = 2 + n // 24
    options = {"weights": cfg.weights, "image_size": cfg.image_size, "pca_k": cfg.pca_k,
               "infer_batch_size": cfg.infer_batch_size}
    runs: dict[str, list[dict[str, Any]]] = {"empty": [], "history": []}
    for attempt in range(RUNS):
        # new photos for every attempt (disjoint slices): re-sending the same photos to the history lake would make
        # each batch after the first supersede the previous one's rows (issue 10's overwrite rule), not add to it
        fresh = pick_images(cfg.sample_dir, "Training", per_class, cfg.seed,
                            offset=cfg.train_per_class + 1 + attempt * per_class)[:n]
        manifest = write_manifest(fresh, workdir / "manifests" / f"incremental-{attempt}.jsonl")
        empty = spark_arm.run_job(manifest, workdir / f"lake-empty-{attempt}", f"b100000-new{attempt}", **options)
        runs["empty"].append(empty)
        runs["history"].append(spark_arm.run_job(manifest, history_lake, f"b100001-new{attempt}", **options))
    t_empty = median(r["seconds"] for r in runs["empty"])
    t_history = median(r["seconds"] for r in runs["history"])
    job_ratio = ratio(t_history, t_empty)
    best_ratio = ratio(min(r["seconds"] for r in runs["history"]), min(r["seconds"] for r in runs["empty"]))

    pca_rows = pca_refit_seconds(cfg.pca_history_sizes, n, read_feature_matrix(history_lake), cfg.pca_k, workdir,
                                 seed=cfg.seed)
    pca_flat = ratio(max(r["seconds"] for r in pca_rows), min(r["seconds"] for r in pca_rows))
    stage_names = sorted({s for r in runs["empty"] + runs["history"] for s in (r["report"] or {}).get("seconds", {})})
    stages = {case: {s: round(median(r["report"]["seconds"].get(s, 0.0) for r in rs), 3) for s in stage_names}
              for case, rs in runs.items() if all(r["report"] for r in rs)}
    doc = {
        "description": f"Same N = {n} new images (ResNet50 random weights, {cfg.image_size}px) as a new batch on an "
                       f"empty lake vs on a lake already holding {history} images of the same model_id "
                       f"(~{history / n:.1f} N); {RUNS} runs each, interleaved, each run with photos of its own.",
        "summary": [
            summary_row(f"job time, empty lake (median of {RUNS})", round(t_empty, 3), "s"),
            summary_row(f"job time, after {history} images (median of {RUNS})", round(t_history, 3), "s"),
            summary_row("history / empty time ratio (medians)", job_ratio, "", f"<= {TARGET_RATIO}",
                        None if job_ratio is None else job_ratio <= TARGET_RATIO),
            summary_row("history / empty time ratio (best runs)", best_ratio, "", f"<= {TARGET_RATIO}",
                        None if best_ratio is None else best_ratio <= TARGET_RATIO),
            *[summary_row(f"PCA refit after {r['history']} vectors", r["seconds"], "s",
                          note=f"plan_version + commit_version, best of {len(r['all_seconds'])}") for r in pca_rows],
            summary_row("job pca_fit stage, empty lake vs history (medians)",
                        f"{stages.get('empty', {}).get('pca_fit')} vs {stages.get('history', {}).get('pca_fit')}", "s"),
            summary_row("PCA refit max / min over history sizes", pca_flat, "", f"<= {FLAT_TOLERANCE} (flat)",
                        None if pca_flat is None else pca_flat <= FLAT_TOLERANCE),
        ],
        "n": n,
        "history_images": history,
        "runs": {case: [{k: v for k, v in r.items() if k != "report"} for r in rs] for case, rs in runs.items()},
        "stage_seconds_median": stages,
        "pca_refit": pca_rows,
        "notes": [
            "History = the throughput run's real ResNet50 features (same model_id, same PCA state). The job's "
            "cheap `projection` featurizer was not used for history: it is another model_id with its own PCA "
            "state, so a ResNet50 batch would not see it as history.",
            "PCA refit is timed on real ResNet50 feature vectors of the throughput lake resampled with 1% jitter "
            "(the state is n, mean, M2: O(d^2) memory whatever n; the eigendecomposition is O(d^3) at most).",
        ],
    }
    write_result("incremental", doc, cfg.results_dir)
    return doc
