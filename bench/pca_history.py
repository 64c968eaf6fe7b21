"""Benchmark — PCA state that stays small and flat as history grows (issue 21).

Four measurements, written to ``bench/results/pca_history.json`` (``python -m bench.pca_history``):

1. **Storage per batch run** at k = 150, d = 2,048: bytes of ``pca/<model>/`` added by real commits (the job's
   driver commit, :func:`bench.lake_commit.commit_batch`) between the 2nd and the 12th, plus the checkpoint state
   amortised over ``CHECKPOINT_EVERY`` versions.
2. **Commit time after H = 10,000 batch runs vs after 10** (PCA plan + store + the three Iceberg commits, the
   previous state prefetched as the job does), best of 5, interleaved; and **a re-run of the oldest** of the
   10,000 (the same batch size) vs a normal commit. History is *synthesized*, documented here: the ``features`` rows
   (one per batch run, 2,048 float32) and ``batches`` rows of the H runs are appended in chunks of 1,000 runs (one
   Iceberg snapshot and data file per chunk: the lake as table maintenance — ``fruits compact`` / ``fruits
   expire`` — keeps it, not 10,000 raw snapshots); the PCA tree gets H version JSONs and (placeholder) fit files
   written directly (a commit never reads them: it reads the pointer and probes one number), and version H holds
   the real state of all the rows, committed with the real code. The 10-run lake is built the same way.
3. **Exactness at full d** after H batch runs (2 rows each), 100 erasures and 10 re-runs of old batches, applied with
   :func:`spark_jobs.pca.versions.apply` (the arithmetic ``plan_version`` / ``plan_erasure`` use, without a fit per
   version), then the top 10 components fitted and compared with a batch PCA (SVD of the centred remaining rows).
4. **Exactness through the commit code** (``plan_version`` / ``plan_erasure`` / ``commit_version``, files and
   pointer) at d = 32 with the same H, erasures and re-runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import RESULTS_DIR, ratio, write_result
from bench.report import summary_row

MODEL = "bench-resnet50"
DIM, K = 2048, 150
CHUNK_RUNS = 1000
REPEATS = 5


def _x(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """Real-shaped feature vectors (ReLU of Gaussians with a decaying spectrum), float32 widened to float64."""
    scale = np.linspace(3.0, 0.2, dim)
    return np.maximum(rng.standard_normal((n, dim)) * scale + 0.3, 0).astype(np.float32).astype(np.float64)


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def storage_per_run(workdir: Path, n: int = 20, runs: int = 12) -> dict[str, Any]:
    """Bytes of ``pca/<model>/`` per batch run between the 2nd and the last of ``runs`` real commits."""
    from bench.lake_commit import _batch, commit_batch
    from spark_jobs.pca import versions as pca

    lake = workdir / "storage"
    shutil.rmtree(lake, ignore_errors=True)
    sizes = []
    for i in range(runs):
        commit_batch(str(lake), _batch(n, f"s{i:03d}", i), f"s{i:03d}", MODEL, K)
        sizes.append(_tree_bytes(lake / "pca" / MODEL))
    per_run = (sizes[-1] - sizes[1]) / (runs - 2)
    state = next((lake / "pca" / MODEL).glob("*.state")).stat().st_size
    return {"bytes_per_run": int(per_run), "state_bytes": state,
            "bytes_per_run_with_checkpoints": int(per_run + state / pca.CHECKPOINT_EVERY), "sizes": sizes}


def synthesize_history(lake: Path, runs: int, rng: np.random.Generator) -> None:
    """The lake after ``runs`` batch runs of one row each (module doc, 2.)."""
    from spark_jobs import storage
    from spark_jobs.lakehouse import tables
    from spark_jobs.pca import versions as pca
    from spark_jobs.pca.stats import SufficientStats, merge

    shutil.rmtree(lake, ignore_errors=True)
    target = tables.Lake.at(str(lake))
    features, batches = target.table(tables.FEATURES), target.table(tables.BATCHES)
    now = dt.datetime.now(dt.UTC)
    state = SufficientStats.empty(DIM)
    for start in range(0, runs, CHUNK_RUNS):
        ids = [f"h{i:05d}" for i in range(start, min(runs, start + CHUNK_RUNS))]
        x = _x(rng, len(ids))
        state = merge(state, SufficientStats.from_array(x))
        m = len(ids)
        rows = pa.table({
            "image_uri": [f"s3://bench/images/{b}/0.jpg" for b in ids], "label": ["Kiwi"] * m,
            "content_sha256": ["0" * 64] * m, "width": pa.array([100] * m, pa.int32()),
            "height": pa.array([100] * m, pa.int32()),
            "features": pa.array(list(x.astype(np.float32)), type=pa.list_(pa.float32())),
            "pca": pa.array([[0.0] * K] * m, type=pa.list_(pa.float32())),
            "pca_version": pa.array(range(start + 1, start + m + 1), pa.int32()), "model_id": [MODEL] * m,
            "ingested_at": pa.array([now] * m, pa.timestamp("us", tz="UTC")), "batch_id": ids,
        })
        features.append(tables.to_table_schema(rows, tables.FEATURES, features.schema()))
        batch_rows = pa.table({"batch_id": ids, "model_id": [MODEL] * m, "committed_at": pa.array([now] * m,
                               pa.timestamp("us", tz="UTC")), "pca_version": pa.array(range(start + 1, start + m + 1),
                                                                                       pa.int32())})
        batches.append(tables.to_table_schema(batch_rows, tables.BATCHES, batches.schema()))
    root = pca.model_dir(str(lake), MODEL)
    created = now.isoformat(timespec="seconds")
    for v in range(1, runs):  # placeholders of the older versions: never read by a commit
        meta = {"format": pca.FORMAT, "model_id": MODEL, "version": v, "parent": v - 1 or None, "kind": "batch",
                "batch_id": f"h{v - 1:05d}", "run_id": "synthetic", "created_at": created,
                "fit_file": f"v{v:06d}-synthetic.fit.npz", "state_file": f"v{v:06d}-synthetic.state",
                "checkpoint": False}
        storage.write_bytes(storage.join(root, f"v{v:06d}.json"), json.dumps(meta).encode())
        storage.write_bytes(storage.join(root, meta["fit_file"]), b"synthetic")
    last = pca.PcaVersion(MODEL, runs, f"h{runs - 1:05d}", "synthetic", state, pca.fit_pca(state, K).stored(),
                          parent=runs - 1 if runs > 1 else None, created_at=created)
    pca.commit_version(str(lake), last)


def commit_times(workdir: Path, runs: int, n: int, seed: int) -> dict[str, Any]:
    """Best-of-5 commit seconds after 10 and after ``runs`` batch runs, and of a re-run of the oldest."""
    from bench.lake_commit import _batch, commit_batch

    rng = np.random.default_rng(seed)
    small, big = workdir / "history-10", workdir / f"history-{runs}"
    started = time.perf_counter()
    synthesize_history(small, 10, rng)
    synthesize_history(big, runs, rng)
    build = time.perf_counter() - started
    times: dict[str, list[float]] = {"after_10": [], f"after_{runs}": [], "rerun_oldest": []}
    parts: dict[str, list[dict[str, float]]] = {key: [] for key in times}
    for attempt in range(REPEATS):
        new_id = f"new{attempt}"
        for key, lake, batch_id in (("after_10", small, new_id), (f"after_{runs}", big, new_id),
                                    ("rerun_oldest", big, "h00000")):
            part = commit_batch(str(lake), _batch(n, batch_id, seed + 100 + attempt), batch_id, MODEL, K)
            parts[key].append(part)
            times[key].append(round(part["pca"] + part["tables"], 3))
    best = {key: min(values) for key, values in times.items()}
    return {"best": best, "all_seconds": times, "parts_seconds": parts, "build_seconds": round(build, 1),
            "history_ratio": ratio(best[f"after_{runs}"], best["after_10"]),
            "rerun_ratio": ratio(best["rerun_oldest"], best[f"after_{runs}"])}


def _operations(runs: int, erasures: int, reruns: int, rng: np.random.Generator):
    """The operation sequence: ``("run", batch, rows)``, ``("erase", batch, count)``, ``("rerun", batch, rows)``."""
    erase_at = set(np.linspace(runs // erasures, runs - 1, erasures).astype(int).tolist())
    for i in range(runs):
        yield "run", f"b{i:05d}", 2
        if i in erase_at:
            yield "erase", f"b{int(rng.integers(0, i + 1)):05d}", 1
    for j in np.linspace(0, runs - 1, reruns).astype(int).tolist():
        yield "rerun", f"b{j:05d}", 3


def _compare(state, fit, x: np.ndarray, top: int = 10) -> dict[str, float]:
    from spark_jobs.pca.stats import SufficientStats

    expected = SufficientStats.from_array(x)
    _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    variance = s[:top] ** 2 / (len(x) - 1)
    return {
        "n": int(state.n), "n_expected": int(expected.n),
        "mean_rel": float(np.linalg.norm(state.mean - expected.mean) / np.linalg.norm(expected.mean)),
        "m2_rel": float(np.linalg.norm(state.m2 - expected.m2) / np.linalg.norm(expected.m2)),
        "eigenvalues_rel": float(np.max(np.abs(fit.explained_variance[:top] - variance) / variance)),
        "components_max_1_minus_abs_cos": float(max(1 - abs(float(fit.components[i] @ vt[i])) for i in range(top))),
        "min_relative_gap_top": float(np.min(np.diff(-s[: top + 1] ** 2) / s[0] ** 2)),
    }


def exactness_full_d(runs: int, erasures: int, reruns: int, seed: int) -> dict[str, Any]:
    """Module doc, 3."""
    from spark_jobs.pca import versions as pca
    from spark_jobs.pca.stats import SufficientStats

    rng = np.random.default_rng(seed)
    rows: dict[str, np.ndarray] = {}
    state, bound = SufficientStats.empty(DIM), (0.0, 0.0)
    started = time.perf_counter()
    for op, batch_id, count in _operations(runs, erasures, reruns, rng):
        if op == "erase":
            gone, rows[batch_id] = rows[batch_id][:count], rows[batch_id][count:]
            state, bound = pca.apply(state, bound, remove=SufficientStats.from_array(gone))
        else:
            x = _x(rng, count)
            old = SufficientStats.from_array(rows[batch_id]) if op == "rerun" else None
            state, bound = pca.apply(state, bound, remove=old, add=SufficientStats.from_array(x))
            rows[batch_id] = x
    seconds = time.perf_counter() - started
    fit = pca.fit_pca(state, K)
    out = _compare(state, fit, np.vstack([v for v in rows.values() if len(v)]))
    out.update({"dim": DIM, "runs": runs, "erasures": erasures, "reruns": reruns, "seconds": round(seconds, 1),
                "error_bound_rel": bound[0] / float(np.linalg.norm(state.m2)),
                "needs_refresh": pca.needs_refresh(state, bound)})
    return out


def exactness_commit_code(workdir: Path, runs: int, erasures: int, reruns: int, seed: int, dim: int = 32
                          ) -> dict[str, Any]:
    """Module doc, 4."""
    from spark_jobs.pca import versions as pca
    from spark_jobs.pca.stats import SufficientStats

    rng = np.random.default_rng(seed)
    lake = workdir / "exact-commit"
    shutil.rmtree(lake, ignore_errors=True)
    rows: dict[str, np.ndarray] = {}
    started = time.perf_counter()
    for op, batch_id, count in _operations(runs, erasures, reruns, rng):
        if op == "erase":
            gone, rows[batch_id] = rows[batch_id][:count], rows[batch_id][count:]
            base = pca.resolve_base(str(lake), MODEL, batch_id=None)
            latest = pca.load_version(str(lake), MODEL, base.version)
            planned = pca.plan_erasure(latest, base.next_version, f"e-{batch_id}",
                                       {batch_id: SufficientStats.from_array(gone)})
        else:
            x = _x(rng, count, dim)
            old = SufficientStats.from_array(rows[batch_id]) if op == "rerun" else None
            planned = pca.plan_version(str(lake), MODEL, batch_id, SufficientStats.from_array(x), 10, replaced=old)
            rows[batch_id] = x
        pca.commit_version(str(lake), planned)
    seconds = time.perf_counter() - started
    latest = pca.load_version(str(lake), MODEL)
    out = _compare(latest.state, latest.fit, np.vstack([v for v in rows.values() if len(v)]))
    out.update({"dim": dim, "runs": runs, "erasures": erasures, "reruns": reruns, "versions": latest.version,
                "seconds": round(seconds, 1), "pca_tree_bytes": _tree_bytes(lake / "pca" / MODEL)})
    return out


def _summary(runs: int, doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    if "storage" in doc:
        storage = doc["storage"]
        per_run_mb = storage["bytes_per_run_with_checkpoints"] / 1e6
        rows.append(summary_row("PCA storage added per batch run (k=150, d=2048, checkpoints amortised)",
                                round(per_run_mb, 3), "MB", "<= 2 MB", per_run_mb <= 2.0,
                                f"fit + JSON {storage['bytes_per_run'] / 1e6:.2f} MB + state "
                                f"{storage['state_bytes'] / 1e6:.1f} MB / CHECKPOINT_EVERY"))
    if "commits" in doc:
        commits = doc["commits"]
        history = commits["history_ratio"]
        rows.append(summary_row(f"commit after {runs} batch runs / after 10 (best of {REPEATS}, synthesized history)",
                                history, "", "<= 1.15", None if history is None else history <= 1.15,
                                f"{commits['best']['after_10']} s vs {commits['best'][f'after_{runs}']} s"))
        rerun = commits["rerun_ratio"]
        rows.append(summary_row(f"re-run of the oldest of {runs} / a new batch's commit after {runs}", rerun, "",
                                "<= 2", None if rerun is None else rerun <= 2.0,
                                f"{commits['best']['rerun_oldest']} s"))
    for key, label in (("exactness_full_d", "d=2048, pca.apply"), ("exactness_commit_code", "d=32, commit code")):
        if key in doc:
            exact = doc[key]
            worst = max(exact["m2_rel"], exact["mean_rel"], exact["eigenvalues_rel"])
            rows.append(summary_row(f"exactness ({label}) after {exact['runs']} runs, {exact['erasures']} erasures, "
                                    f"{exact['reruns']} re-runs: worst relative error of mean, M2, top-10 eigenvalues",
                                    worst, "", "<= 1e-6", worst <= 1e-6,
                                    f"M2 {exact['m2_rel']:.1e}; top-10 components 1-|cos| "
                                    f"{exact['components_max_1_minus_abs_cos']:.1e}"))
    return rows


def run(workdir: Path, runs: int = 10_000, n: int = 20, seed: int = 0, results_dir: Path = RESULTS_DIR,
        parts: Sequence[str] = ("storage", "commits", "exactness_commit_code", "exactness_full_d")) -> dict[str, Any]:
    """The measurements named in ``parts`` (module doc); ``pca_history.json`` is rewritten after each one."""
    doc: dict[str, Any] = {
        "description": "PCA state per batch run, commit time vs history (synthesized history, see "
                       "bench/pca_history.py), exactness after many merges, erasures and re-runs. Machine shared by "
                       "six developers (load averages per part below).",
        "runs": runs,
        "load_average": {},
    }
    steps = {
        "storage": lambda: storage_per_run(workdir),
        "commits": lambda: commit_times(workdir, runs, n, seed),
        "exactness_commit_code": lambda: exactness_commit_code(workdir, runs, 100, 10, seed),
        "exactness_full_d": lambda: exactness_full_d(runs, 100, 10, seed),
    }
    for part in parts:
        doc[part] = steps[part]()
        doc["load_average"][part] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        doc["summary"] = _summary(runs, doc)
        write_result("pca_history", doc, results_dir)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.pca_history [--runs 10000] [--workdir /tmp/…]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.pca_history")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-pca-history"))
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--parts", default="storage,commits,exactness_commit_code,exactness_full_d")
    args = parser.parse_args(argv)
    doc = run(args.workdir, args.runs, results_dir=args.results_dir, parts=args.parts.split(","))
    print(json.dumps(doc["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
