"""Run every benchmark in one process, write ``bench/results/*.json`` and regenerate ``bench/README.md``.

    python -m bench.run_all            # make bench: the full run (< 15 min on 2 cores)
    python -m bench.run_all --only ingestion   # partial run: run.json (timings of the full run) is kept
    python -m bench.run_all --only cost        # re-price the stored throughput / faster-mode measurements
    python -m bench.run_all --tiny --results-dir /tmp/r   # seconds-long plumbing check (tests)

Order: ingestion (moto) -> throughput (arms a, b, c; its lake feeds the next ones) -> quality -> faster mode ->
incremental (adds batches to the throughput lake, so it runs after the probes) -> lake_commit -> engines -> demo_wall
-> capacity (the model uses the engines' per-photo cost) -> cost -> README.
A failing benchmark is reported and the others still run (those depending on it are skipped); exit 1 then.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, SAMPLE_DIR, write_result
from bench.config import FULL, TINY, BenchConfig
from bench.report import summary_row, write_readme

NAMES = ("ingestion", "throughput", "quality", "faster_mode", "incremental", "lake_commit", "engines", "sustained",
         "demo_wall", "capacity", "cost")
NEEDS_THROUGHPUT = {"quality", "faster_mode", "incremental"}  # cost can reuse stored results (see below)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (see module doc)."""
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=NAMES, help="run these benchmarks only (and what they need)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: plumbing check, figures meaningless")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--readme", type=Path, default=None, help="README to regenerate (default bench/README.md; "
                        "with --results-dir elsewhere: <results-dir>/README.md)")
    parser.add_argument("--sample-dir", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch lakes/manifests (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser.parse_args(argv)


def selected(only: Sequence[str] | None) -> list[str]:
    """Benchmarks to run in order, adding ``throughput`` when a selected one depends on it."""
    wanted = set(only or NAMES)
    if wanted & NEEDS_THROUGHPUT:
        wanted.add("throughput")
    return [name for name in NAMES if name in wanted]


def _stored(cfg: BenchConfig, name: str, required: bool = True) -> dict[str, Any] | None:
    """A result document written by an earlier run (``--only cost`` re-prices stored measurements)."""
    path = cfg.results_dir / f"{name}.json"
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} is missing: run the {name} benchmark first")
        return None
    return json.loads(path.read_text())


def run_benchmarks(cfg: BenchConfig, names: Sequence[str], workdir: Path,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``names`` in order; returns ``{"seconds": {name: s}, "failed": {name: error}, "skipped": [...]}``."""
    from bench import (
        capacity,
        cost,
        demo_wall,
        engines,
        faster_mode,
        incremental,
        ingestion,
        lake_commit,
        quality,
        sustained,
        throughput,
    )

    state: dict[str, Any] = {}
    steps: dict[str, Callable[[], Any]] = {
        "ingestion": lambda: ingestion.run(cfg),
        "throughput": lambda: throughput.run(cfg, workdir),
        "quality": lambda: quality.run(cfg, state["throughput"]["lake"]),
        "faster_mode": lambda: faster_mode.run(cfg, workdir, state["throughput"]),
        "incremental": lambda: incremental.run(cfg, workdir, state["throughput"]),
        "lake_commit": lambda: lake_commit.run(cfg, workdir),
        "cost": lambda: cost.run(cfg, state.get("throughput") or _stored(cfg, "throughput"),
                                 state.get("faster_mode") or _stored(cfg, "faster_mode", required=False)),
        "engines": lambda: engines.run(cfg, workdir),
        "demo_wall": lambda: demo_wall.run(cfg, workdir),
        # 12 sealed batches in one job run vs one job of the same photos (issue 19's sustained rate)
        "sustained": lambda: sustained.run(workdir / "sustained", photos=12 * max(1, cfg.engine_job_images // 12),
                                           batch=max(1, cfg.engine_job_images // 12), weights=cfg.weights,
                                           results_dir=cfg.results_dir),
        # after engines (its per-photo cost)
        "capacity": lambda: capacity.run(cfg.results_dir, validate_locally=cfg.capacity_validate,
                                         sample_dir=cfg.sample_dir, workdir=workdir),
    }
    outcome: dict[str, Any] = {"seconds": {}, "failed": {}, "skipped": []}
    for name in names:
        if name in NEEDS_THROUGHPUT and "throughput" not in state:
            outcome["skipped"].append(name)
            log(f"[bench] {name}: skipped (throughput did not run)")
            continue
        log(f"[bench] {name}: start")
        start = time.perf_counter()
        try:
            state[name] = steps[name]()
        except Exception as err:  # report, keep going with the independent benchmarks
            traceback.print_exc()
            outcome["failed"][name] = f"{type(err).__name__}: {err}"
            log(f"[bench] {name}: FAILED ({type(err).__name__}: {err})")
        outcome["seconds"][name] = round(time.perf_counter() - start, 1)
        log(f"[bench] {name}: {outcome['seconds'][name]} s")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks, write the run summary and the README; exit code 1 if any benchmark failed."""
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    base = TINY if args.tiny else FULL
    cfg = replace(base, results_dir=args.results_dir, sample_dir=args.sample_dir.resolve())
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fruits-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names = selected(args.only)
    start = time.perf_counter()
    try:
        outcome = run_benchmarks(cfg, names, workdir)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    total = round(time.perf_counter() - start, 1)
    rows = [summary_row(f"{name}", seconds, "s", note=outcome["failed"].get(name, ""))
            for name, seconds in outcome["seconds"].items()]
    rows.append(summary_row("total (make bench)", total, "s", "< 900 s on 2 cores", total < 900))
    if not args.only:  # a partial run keeps the full run's timing table
        write_result("run", {"description": "Wall time of each benchmark in this run.", "summary": rows,
                             "tiny": args.tiny, "failed": outcome["failed"], "skipped": outcome["skipped"],
                             "total_seconds": total}, cfg.results_dir)
    readme = args.readme or (cfg.results_dir / "README.md" if args.results_dir != RESULTS_DIR else None)
    path = write_readme(cfg.results_dir, readme) if readme else write_readme(cfg.results_dir)
    print(f"[bench] total {total} s; results in {cfg.results_dir}; table in {path}")
    return 1 if outcome["failed"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
