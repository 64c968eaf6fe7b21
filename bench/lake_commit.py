"""Benchmark — the driver's commit of a batch run into the Iceberg lake, and a full-table scan.

Commit = what :func:`spark_jobs.job.run_batch` does after the executors: plan the PCA version (merge the batch's
statistics into the previous state, eigendecompose 2048x2048), store it, and replace the rows of (batch, model) in
``rejects``, ``features`` and ``batches`` (one PyIceberg transaction each). The previous state (17 MB packed) is loaded
before the clock starts, as the job loads it on a driver thread while the executors featurize
(``spark_jobs.pca.versions.prefetch_latest``); that load is reported apart, with the ratio it would give inside the
commit. It is timed for a batch of N rows on an empty lake and on a lake already holding H = 10 N rows of the same model
(in H / N earlier batch runs, i.e. as many snapshots and data files), best of 5 each, interleaved; target: ratio
<= 1.15 (the commit must not grow with history). The full-table scan reads every current ``features`` row (all
columns) of the history lake.
Rows are synthetic but real-shaped: 2,048 float32 features (ReLU of Gaussians), k = 150 PCA floats.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import ratio, stopwatch, write_result
from bench.config import BenchConfig
from bench.report import summary_row

TARGET_RATIO = 1.15
REPEATS = 5
DIM = 2048


def _batch(n: int, batch_id: str, seed: int):
    from spark_jobs.featurize.one_pass import FEATURES_ARROW_SCHEMA, REJECTS_ARROW_SCHEMA, BatchFeatures
    from spark_jobs.pca.stats import SufficientStats

    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((n, DIM)) + 0.3, 0).astype(np.float32)
    features = pa.table({
        "image_uri": [f"s3://bench/images/{batch_id}/{i}.jpg" for i in range(n)],
        "label": [f"class{i % 24}" for i in range(n)],
        "content_sha256": ["0" * 64] * n,
        "width": pa.array([100] * n, pa.int32()),
        "height": pa.array([100] * n, pa.int32()),
        "features": pa.array(list(x), type=pa.list_(pa.float32())),
    }, schema=FEATURES_ARROW_SCHEMA)
    rejects = REJECTS_ARROW_SCHEMA.empty_table()
    return BatchFeatures(features, rejects, SufficientStats.from_array(x.astype(np.float64)), n)


def commit_batch(lake_uri: str, batch, batch_id: str, model_id: str, k: int, *, prefetch: bool = True
                 ) -> dict[str, float]:
    """The driver-side commit of one batch run, as ``run_batch`` does it (PCA plan + store + 3 table commits).

    ``prefetch``: load the model's latest PCA state before the clock starts, as the job does on a driver thread
    while the executors featurize (``spark_jobs.pca.versions.prefetch_latest``); False times that load inside the
    commit. Returns seconds ``{"load": the prefetch (not in the commit), "pca": plan + store, "tables": the three table
    commits}``.
    """
    import time

    from spark_jobs.job import batch_row, feature_rows, reject_rows
    from spark_jobs.lakehouse import tables
    from spark_jobs.pca.table_stats import rows_statistics
    from spark_jobs.pca.versions import commit_version, land, landed_in_features, plan_version, prefetch_latest

    lake = tables.Lake.at(lake_uri)
    ids = {"batch_id": batch_id, "model_id": model_id}
    load_start = time.perf_counter()
    prefetched = prefetch_latest(lake_uri, model_id).result() if prefetch else None
    start = time.perf_counter()
    load_seconds = start - load_start
    replaced = rows_statistics(lake, model_id, batch.stats.dim, batch_id=batch_id)  # a re-run's old rows
    planned = plan_version(lake_uri, model_id, batch_id, batch.stats, k, replaced=replaced, prefetched=prefetched,
                           landed=landed_in_features(lake, model_id))
    commit_version(lake_uri, planned, land_now=False)
    pca_seconds = time.perf_counter() - start
    now = dt.datetime.now(dt.UTC)
    tables.replace_batch_rows(lake, tables.REJECTS, reject_rows(batch, **ids), **ids)
    tables.replace_batch_rows(lake, tables.FEATURES, feature_rows(batch, planned, batch_id=batch_id, committed_at=now),
                              **ids, summary={"fruits.pca_version": str(planned.version)})
    land(lake_uri, model_id, planned.version)
    report = {"batch_id": batch_id, "model_id": model_id, "counts": {"listed": batch.listed,
              "featurized": batch.listed, "rejected": 0}, "pca_version": planned.version, "n_total": planned.state.n,
              "explained_variance_ratio": list(map(float, planned.fit.explained_variance_ratio)),
              "explained_variance_k": float(planned.fit.explained_variance_ratio.sum()), "images_per_second": 0.0}
    tables.replace_batch_rows(lake, tables.BATCHES, batch_row(report, now), **ids)
    return {"load": round(load_seconds, 3), "pca": round(pca_seconds, 3),
            "tables": round(time.perf_counter() - start - pca_seconds, 3)}


def run(cfg: BenchConfig, workdir: Path) -> dict[str, Any]:
    """Measure commit time vs history and the full-table scan; write ``lake_commit.json``; return it."""
    from spark_jobs.lakehouse import tables

    n, k, model_id = cfg.lake_commit_n, cfg.pca_k, "bench-resnet50"
    history_batches = cfg.history_factor
    base = workdir / "lake-commit-history"
    shutil.rmtree(base, ignore_errors=True)
    with stopwatch() as build:
        for i in range(history_batches):
            commit_batch(str(base), _batch(n, f"h{i:03d}", cfg.seed + i), f"h{i:03d}", model_id, k)
    times: dict[str, list[float]] = {"empty": [], "history": []}
    parts: dict[str, list[dict[str, float]]] = {"empty": [], "history": []}
    for attempt in range(REPEATS):  # the history lake grows by N per attempt: 10 N, 11 N, ... rows before
        new_id = f"new{attempt}"
        new = _batch(n, new_id, cfg.seed + 1000 + attempt)
        for case in ("empty", "history"):
            lake = base if case == "history" else workdir / f"lake-commit-empty-{attempt}"
            part = commit_batch(str(lake), new, new_id, model_id, k)
            parts[case].append(part)
            times[case].append(round(part["pca"] + part["tables"], 3))  # the prefetch overlaps featurization
    history_lake = tables.Lake.at(str(base))
    with stopwatch() as scan:
        rows = tables.scan(history_lake, tables.FEATURES).num_rows  # history + the REPEATS new batches
    files = len(history_lake.table(tables.FEATURES).inspect.data_files())
    best = {case: min(values) for case, values in times.items()}
    commit_ratio = ratio(best["history"], best["empty"])
    part_best = {case: {part: min(p[part] for p in runs) for part in ("pca", "tables")} for case, runs in parts.items()}
    tables_ratio = ratio(part_best["history"]["tables"], part_best["empty"]["tables"])
    pca_ratio = ratio(part_best["history"]["pca"], part_best["empty"]["pca"])
    loaded = {case: round(min(p["load"] + p["pca"] + p["tables"] for p in runs), 3) for case, runs in parts.items()}
    load_ratio = ratio(loaded["history"], loaded["empty"])
    load_history = min(p["load"] for p in parts["history"])
    doc = {
        "description": f"Driver commit of a batch of N = {n} rows (PCA plan + store + rejects/features/batches "
                       "commits; the previous PCA state is prefetched as the job does) on an empty lake vs after "
                       f">= {history_batches} batch runs "
                       f"(>= {history_batches * n} rows, same model); best of {REPEATS}, interleaved; then a "
                       "full-table scan of the history lake.",
        "summary": [
            summary_row("commit of a new batch, empty lake (best)", best["empty"], "s"),
            summary_row(f"commit of a new batch, after {history_batches} N rows (best)", best["history"], "s"),
            summary_row("history / empty commit ratio", commit_ratio, "", f"<= {TARGET_RATIO}",
                        None if commit_ratio is None else commit_ratio <= TARGET_RATIO),
            summary_row("  of which the three Iceberg table commits: history / empty", tables_ratio, "",
                        note=f"{part_best['empty']['tables']} s vs {part_best['history']['tables']} s"),
            summary_row("  of which PCA plan + store: history / empty", pca_ratio, "",
                        note=f"{part_best['empty']['pca']} s vs {part_best['history']['pca']} s; the history "
                             "plan merges into the previous (d x d) state, the empty one starts from the batch's"),
            summary_row("state load, prefetched while the executors featurize (not in the commit)", load_history,
                        "s", note="the previous d x d float64 state, 17 MB packed; a fixed cost of d, not of history"),
            summary_row("history / empty ratio if the state load were not overlapped", load_ratio, "",
                        note=f"{loaded['empty']} s vs {loaded['history']} s"),
            summary_row(f"full-table scan of features ({rows} rows, {files} data files, all columns)",
                        round(scan["seconds"], 3), "s"),
        ],
        "n": n,
        "history_rows": history_batches * n,
        "history_build_seconds": round(build["seconds"], 1),
        "all_seconds": times,
        "parts_seconds": parts,
        "scan_rows": rows,
        "scan_data_files": files,
    }
    write_result("lake_commit", doc, cfg.results_dir)
    return doc
