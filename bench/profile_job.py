"""Where the Spark job's Python workers spend their time: py-spy sampling of every PySpark worker process.

    python -m bench.profile_job [--images-per-class 8]     # needs py-spy (pip install py-spy); not in make bench

A warm-up job starts the workers and builds the model once per worker; then py-spy (``record --idle``,
25 Hz, raw collapsed stacks) is attached to every ``pyspark.daemon`` process under this process while the
measured job runs. Samples are classified by the first matching frame (see :data:`CATEGORIES`); the share of
each category among the busy samples of the worker processes is written to ``bench/results/profile.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, SAMPLE_DIR, pick_images, write_manifest, write_result
from bench.report import summary_row

# (category, substrings of a frame); the first category with a matching frame wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ResNet50 inference (TF predict_on_batch)", ("predict_on_batch",)),
    ("model build", ("build_resnet",)),
    ("image read + decode (Pillow)", ("_decode_partition", "decode_image", "fetch_bytes")),
    ("PCA sufficient statistics", ("_partition_stats",)),
    ("PCA projection", ("_project_partition",)),
    ("Arrow <-> pandas conversion", ("ArrowStreamPandasSerializer", "ArrowStreamSerializer.load_stream",
                                     "arrow_to_pandas", "_create_batch")),
    ("PySpark per-task import-cache invalidation", ("invalidate_caches",)),
    ("waiting for the JVM (next task / data)", ("read_int",)),
)
IDLE_DAEMON = ("manager (daemon.py",)


def descendants(pid: int) -> list[int]:
    """All descendant process ids of ``pid`` (``ps --ppid``, recursively)."""
    found, todo = [], [pid]
    while todo:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(todo.pop())], capture_output=True, text=True)
        kids = [int(p) for p in out.stdout.split()]
        found += kids
        todo += kids
    return found


def spark_workers() -> list[int]:
    """PySpark daemon/worker processes started by this process's Spark JVM."""
    pids = []
    for pid in descendants(os.getpid()):
        try:
            if b"pyspark.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def classify(raw: str) -> Counter[str]:
    """Sample counts per category from py-spy ``--format raw`` text (one ``stack count`` per line)."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, number = line.rstrip().rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_DAEMON):
            continue  # the daemon's accept loop, not a worker
        category = next((name for name, keys in CATEGORIES if any(k in f for f in frames for k in keys)), "other")
        counts[category] += int(number)
    return counts


def profile(images_per_class: int, workdir: Path, py_spy: str, duration: int = 40) -> dict[str, Any]:
    """Run warm-up + measured job with py-spy on the workers; returns category shares and the job report."""
    from bench import spark_arm

    paths = pick_images(SAMPLE_DIR, "Training", images_per_class)
    options = {"weights": "random:0", "image_size": 224, "pca_k": 150, "infer_batch_size": 32}
    spark_arm.run_job(write_manifest(paths[:8], workdir / "warm.jsonl"), workdir / "lake-warm", "bw", **options)
    outputs: list[Path] = []
    recorders: list[subprocess.Popen] = []

    def attach() -> None:
        time.sleep(1)  # let the measured job start
        for pid in spark_workers():
            out = workdir / f"py-spy-{pid}.txt"
            outputs.append(out)
            recorders.append(subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--duration", str(duration), "--rate", "25", "--format", "raw",
                 "--nonblocking", "--idle", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))

    thread = threading.Thread(target=attach)
    thread.start()
    job = spark_arm.run_job(write_manifest(paths, workdir / "m.jsonl"), workdir / "lake", "b1", **options)
    thread.join()
    for recorder in recorders:
        recorder.wait()
    counts: Counter[str] = Counter()
    for out in outputs:
        if out.is_file():
            counts += classify(out.read_text())
    return {"counts": dict(counts), "job": {k: v for k, v in job.items() if k != "report"},
            "stage_seconds": (job["report"] or {}).get("seconds", {}), "workers_sampled": len(outputs)}


def main(argv: Sequence[str] | None = None) -> int:
    """Profile one job run and write ``profile.json``; exit 2 when py-spy is not installed."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_job", description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=8)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).is_file():
        sys.stderr.write("bench.profile_job: error: py-spy not found (pip install py-spy)\n")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="fruits-profile-"))
    try:
        result = profile(args.images_per_class, workdir, py_spy)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    counts = result["counts"]
    busy = sum(v for k, v in counts.items() if not k.startswith("waiting"))
    rows = [summary_row(name, round(100 * n / busy, 1), "% of busy worker samples")
            for name, n in sorted(counts.items(), key=lambda kv: -kv[1]) if not name.startswith("waiting")]
    rows.append(summary_row("waiting for the JVM (share of all samples)",
                            round(100 * counts.get("waiting for the JVM (next task / data)", 0)
                                  / max(sum(counts.values()), 1), 1), "%",
                            note="all sampled worker processes, idle ones included, over the whole job run"))
    stages = result["stage_seconds"]
    write_result("profile", {
        "description": f"py-spy on {result['workers_sampled']} PySpark worker processes during one job run of "
                       f"{result['job']['images']} images (224, warm workers): stages "
                       + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])[:5]),
        "summary": rows, **result,
    }, args.results_dir)
    print(f"profile written to {args.results_dir / 'profile.json'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
