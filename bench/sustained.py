"""Benchmark — sustained job-run rate under a backlog (issue 19): a job run takes every sealed batch waiting.

When photos arrive faster than the job featurizes them, sealed batches pile up behind the single job-run slot and
the next job run takes all of them (``lambdas.service.job_runs``). This benchmark measures what such a run gives,
without the local ingest (moto + the local Lambda share this machine's cores and would cap the arrival rate, see
the issue-19 closing note), in one local SparkSession after a warm-up job, each arm on a fresh lake:

* ``single_job``: one job of N photos as one batch: the default engine's single-job rate (``bench/engines.py``);
* ``one_run_of_all_batches``: the same N photos as N / B sealed batches of B photos, in ONE job run (repeated
  ``--manifest``/``--batch-id`` pairs): the new policy under a backlog;
* ``one_run_per_batch``: the same batches, one job run each: the old policy.

Target (issue 19): one_run_of_all_batches >= 0.8 x single_job.

    python -m bench.sustained [--photos 1200] [--batch 100]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import SAMPLE_DIR, pick_images, stopwatch, write_manifest, write_result
from bench.report import summary_row

TARGET = 0.8


def _job(argv: list[str]) -> float:
    """Run the job entry point in this process; wall seconds. Raises RuntimeError on a non-zero exit."""
    from spark_jobs.main import main as job_main

    with stopwatch() as t:
        code = job_main(argv)
    if code != 0:
        raise RuntimeError(f"spark job exited {code}: {' '.join(argv[:6])} …")
    return float(t["seconds"])


def run(workdir: Path, *, photos: int = 1200, batch: int = 100, weights: str = "random:0",
        results_dir: Path | None = None) -> dict[str, Any]:
    """Measure the three arms (module doc) on ``photos`` Training photos in batches of ``batch``; write
    ``sustained.json`` and return the document. Raises RuntimeError when a job fails, ValueError on bad sizes."""
    from bench import spark_arm
    from bench.engines import interleave

    if photos <= 0 or batch <= 0 or photos % batch:
        raise ValueError(f"photos ({photos}) must be a positive multiple of batch ({batch})")
    classes = len([d for d in (SAMPLE_DIR / "Training").iterdir() if d.is_dir()])
    paths = interleave(pick_images(SAMPLE_DIR, "Training", -(-photos // classes)))[:photos]
    if len(paths) < photos:
        raise ValueError(f"the sample has only {len(paths)} Training photos")
    common = ["--weights", weights, "--pca-k", "150"]
    manifests = workdir / "manifests"
    whole = write_manifest(paths, manifests / "all.jsonl")
    batches = [(f"b{i:06d}", write_manifest(paths[i * batch:(i + 1) * batch], manifests / f"b{i:06d}.jsonl"))
               for i in range(photos // batch)]
    spark_arm.fresh_session()
    warm = write_manifest(pick_images(SAMPLE_DIR, "Test", 1)[:24], manifests / "warm.jsonl")
    warm_s = _job(["--manifest", str(warm), "--lake", str(workdir / "lake-warm"), "--batch-id", "w000001", *common])
    load = {"before": round(os.getloadavg()[0], 2)}
    single = _job(["--manifest", str(whole), "--lake", str(workdir / "lake-single"), "--batch-id", "s000001",
                   *common])
    pairs = [arg for batch_id, uri in batches for arg in ("--manifest", str(uri), "--batch-id", batch_id)]
    grouped = _job([*pairs, "--lake", str(workdir / "lake-grouped"), *common])
    separate = sum(_job(["--manifest", str(uri), "--lake", str(workdir / "lake-separate"), "--batch-id", batch_id,
                         *common]) for batch_id, uri in batches)
    load["after"] = round(os.getloadavg()[0], 2)
    rates = {"single_job": photos / single, "one_run_of_all_batches": photos / grouped,
             "one_run_per_batch": photos / separate}
    ratio = rates["one_run_of_all_batches"] / rates["single_job"]
    old_ratio = rates["one_run_per_batch"] / rates["single_job"]
    doc = {
        "benchmark": "sustained",
        "description": __doc__.splitlines()[0],
        "photos": photos, "batch": batch, "batches": len(batches), "weights": weights, "loadavg_1min": load,
        "warmup_seconds": round(warm_s, 2),
        "seconds": {"single_job": round(single, 2), "one_run_of_all_batches": round(grouped, 2),
                    "one_run_per_batch": round(separate, 2)},
        "images_per_s": {k: round(v, 2) for k, v in rates.items()},
        "summary": [
            summary_row(f"{len(batches)} sealed batches in one job run / one {photos}-photo job", round(ratio, 3), "x",
                        target=f">= {TARGET}", met=ratio >= TARGET,
                        note=f"{rates['one_run_of_all_batches']:.1f} vs {rates['single_job']:.1f} images/s"),
            summary_row(f"the same batches, one job run each / one {photos}-photo job", round(old_ratio, 3), "x",
                        note=f"{rates['one_run_per_batch']:.1f} images/s (the policy before issue 19)"),
        ],
    }
    if results_dir is None:
        write_result("sustained", doc)
    else:
        write_result("sustained", doc, results_dir)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.sustained``: measure and print the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.sustained", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        doc = run(Path(tempfile.mkdtemp(prefix="fruits-sustained-")), photos=args.photos, batch=args.batch)
    except ValueError as err:
        parser.error(str(err))
    for row in doc["summary"]:
        print(f"{row['metric']}: {row['value']} {row['unit']} {row['note']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
