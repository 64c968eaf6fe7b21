"""Benchmark 7 — inference engines side by side: raw rate, the Spark job end to end, % of the physical limit, cost.

In one run, on the same images and the same ResNet50 (``--weights random:0``: throughput does not depend on the
weight values):

* raw rate of each engine (:mod:`spark_jobs.engines`) in float32 and bf16: ``infer_batch_size`` chunks of decoded
  uint8 224x224 pixels already in memory, all cores in one process, one warm-up chunk excluded; also the
  largest difference to Keras TF float32 features (max |a - b| / max |b|) and the engine's build time;
* the Spark job end to end (``spark_jobs.main.main`` on ``local[*]``) per engine on a ``job_images`` batch,
  after a small warm-up job of the same engine (JVM, Python workers, engine build), whose wall time and the
  workers' engine-build seconds are reported as the per-run start-up cost. Each engine starts from a new
  SparkSession (new Python workers), as a job run does: a worker that had loaded TensorFlow for the previous arm
  made the next engine's inference 12 % slower (26.3 vs 23.6 task-s on OpenVINO f32);
* % of the physical limit: ``cores x FLOP/cycle x GHz / 8.2 GFLOP`` per ResNet50-224 image (4.1 G multiply-adds,
  He et al. 2016 table 1 = 8.2 GFLOP); FLOP/cycle per core from /proc/cpuinfo flags: 2 FMA units x SIMD lanes x 2
  (AVX-512: 16 float32 lanes -> 64; AVX2: 32), bf16 (``avx512_bf16``) twice that; GHz from ``cpu MHz``.
  The number of FMA units is an assumption (2 on Xeon Gold/Platinum); the figure is an upper bound.
* cost per 1,000 images per engine from the job's rate (:func:`bench.cost.cost_model`).

Targets (issue 11): job >= 0.85 x the default engine's raw rate; default f32 job >= 1.25 x the TF job; bf16 job
>= 2 x the TF job.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import pick_images, ratio, stopwatch, write_manifest, write_result
from bench.report import summary_row

GFLOP_PER_IMAGE = 8.2  # ResNet50 at 224x224: 4.1 G multiply-adds (He et al. 2016, table 1) x 2 FLOP
TARGET_JOB_OVER_RAW = 0.85
TARGET_DEFAULT_OVER_TF = 1.25
TARGET_BF16_OVER_TF = 2.0
ARMS = (("tensorflow", "float32"), ("openvino", "float32"), ("onnxruntime", "float32"),
        ("tensorflow", "bfloat16"), ("openvino", "bfloat16"))


def physical_limit(cores: int, flags: set[str], mhz: float) -> dict[str, Any]:
    """ResNet50-224 images/s the cores could do at peak FLOP rate (module doc), float32 and bf16."""
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    flop_cycle = 2 * lanes * 2  # 2 FMA units x lanes x (multiply + add)
    f32 = cores * flop_cycle * mhz / 1000 / GFLOP_PER_IMAGE
    bf16 = f32 * 2 if ("avx512_bf16" in flags or "amx_bf16" in flags) else f32
    return {"formula": "cores x FLOP/cycle x GHz / 8.2 GFLOP", "cores": cores, "flop_per_cycle_f32": flop_cycle,
            "ghz": round(mhz / 1000, 3), "images_per_s_f32": round(f32, 1), "images_per_s_bf16": round(bf16, 1)}


def _cpu_mhz() -> float:
    try:
        values = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("cpu MHz")]
        return max(values) if values else 3000.0
    except OSError:
        return 3000.0


def raw_rate(engine: str, precision: str, pixels: np.ndarray, batch: int, image_size: int) -> dict[str, Any]:
    """Build ``engine`` (timed), then time it on ``pixels`` (uint8 (n, s, s, 3)) in chunks of ``batch``."""
    from spark_jobs import engines
    from spark_jobs.models import ModelSpec

    spec = ModelSpec("random", image_size, 0, precision=precision)
    with stopwatch() as build:
        fn = engines.build_engine(spec, engine, threads=os.cpu_count() or 1)
    fn(pixels[:batch])
    outputs = []
    load = os.getloadavg()[0]
    with stopwatch() as t:
        for start in range(0, len(pixels), batch):
            outputs.append(fn(pixels[start : start + batch]))
    return {"engine": engine, "precision": precision, "images": len(pixels), "seconds": round(t["seconds"], 3),
            "images_per_s": round(len(pixels) / t["seconds"], 3), "build_seconds": round(build["seconds"], 2),
            "loadavg_1min_before": round(load, 2), "features": np.concatenate(outputs)}


def run(cfg: Any, workdir: Path) -> dict[str, Any]:
    """Measure every arm of :data:`ARMS`; write ``engines.json``; return the document."""
    from bench import spark_arm
    from bench.common import cpu_flags, machine_info
    from bench.cost import cost_model
    from spark_jobs.engines import default_engine
    from spark_jobs.images import decode_image

    size, batch = cfg.image_size, cfg.infer_batch_size
    classes = len([d for d in (cfg.sample_dir / "Training").iterdir() if d.is_dir()])
    per_class = -(-cfg.engine_job_images // classes)
    images = pick_images(cfg.sample_dir, "Training", per_class, cfg.seed)[: cfg.engine_job_images]
    raw_paths = images[: cfg.ceiling_images]
    pixels = np.stack([np.frombuffer(decode_image(p.read_bytes(), size).pixels, np.uint8).reshape(size, size, 3)
                       for p in raw_paths])
    raw = {f"{e}-{p}": raw_rate(e, p, pixels, batch, size) for e, p in ARMS}
    reference = raw["tensorflow-float32"].pop("features")
    for arm in raw.values():
        features = arm.pop("features", None)
        if features is not None:
            arm["max_relative_difference_to_tf"] = float(np.abs(features - reference).max() / np.abs(reference).max())
    raw["tensorflow-float32"]["max_relative_difference_to_tf"] = 0.0

    warm_paths = pick_images(cfg.sample_dir, "Test", 1, cfg.seed)[: cfg.warmup_images]
    warm_manifest = write_manifest(warm_paths, workdir / "manifests" / "engines-warmup.jsonl")
    manifest = write_manifest(images, workdir / "manifests" / "engines-job.jsonl")
    options = {"weights": cfg.weights, "image_size": size, "pca_k": cfg.pca_k, "infer_batch_size": batch}
    jobs = {}
    for n, (engine, precision) in enumerate(ARMS):
        name = f"{engine}-{precision}"
        spark_arm.fresh_session()
        warm = spark_arm.run_job(warm_manifest, workdir / f"lake-engine-warm-{name}", f"b{n:06d}-warm",
                                 engine=engine, precision=precision, **options)
        job = spark_arm.run_job(manifest, workdir / f"lake-engine-{name}", f"b{n:06d}-engine",
                                engine=engine, precision=precision, **options)
        report = job.pop("report") or {}
        warm_report = warm.pop("report") or {}
        jobs[name] = {**job, "warmup_seconds": warm["seconds"],
                      "warmup_engine_build_task_seconds": (warm_report.get("task") or {}).get("engine_build_s"),
                      "stages": report.get("seconds"), "task": report.get("task"),
                      "job_over_raw": ratio(job["images_per_s"], raw[name]["images_per_s"])}

    default = default_engine(platform.machine())
    tf_job = jobs["tensorflow-float32"]["images_per_s"]
    best_bf16 = max((j for k, j in jobs.items() if k.endswith("bfloat16")), key=lambda j: j["images_per_s"])
    bf16_name = next(k for k, j in jobs.items() if j is best_bf16)
    info = machine_info()
    limit = physical_limit(int(info["cores"]), cpu_flags(), _cpu_mhz())
    for name, arm in raw.items():
        peak = limit["images_per_s_bf16" if name.endswith("bfloat16") else "images_per_s_f32"]
        arm["percent_of_physical_limit"] = round(100 * arm["images_per_s"] / peak, 1)
    costs = cost_model({f"job {k}": j["images_per_s"] for k, j in jobs.items()}, int(info["cores"]))
    default_name = f"{default}-float32"
    job_over_raw = jobs[default_name]["job_over_raw"]
    default_over_tf = ratio(jobs[default_name]["images_per_s"], tf_job)
    bf16_over_tf = ratio(best_bf16["images_per_s"], tf_job)
    summary = [
        summary_row(f"job / raw rate, default engine ({default_name})", job_over_raw, "x",
                    target=f">= {TARGET_JOB_OVER_RAW}", met=job_over_raw is not None
                    and job_over_raw >= TARGET_JOB_OVER_RAW,
                    note=f"{jobs[default_name]['images_per_s']} vs {raw[default_name]['images_per_s']} images/s, "
                         f"{len(images)}-image batch"),
        summary_row(f"default f32 job / TF job ({default_name})", default_over_tf, "x",
                    target=f">= {TARGET_DEFAULT_OVER_TF}", met=default_over_tf is not None
                    and default_over_tf >= TARGET_DEFAULT_OVER_TF,
                    note=f"{jobs[default_name]['images_per_s']} vs {tf_job} images/s"),
        summary_row(f"bf16 job / TF f32 job ({bf16_name})", bf16_over_tf, "x", target=f">= {TARGET_BF16_OVER_TF}",
                    met=bf16_over_tf is not None and bf16_over_tf >= TARGET_BF16_OVER_TF,
                    note=f"{best_bf16['images_per_s']} vs {tf_job} images/s"),
    ]
    for name, arm in raw.items():
        summary.append(summary_row(f"raw rate {name}", arm["images_per_s"], "images/s",
                                   note=f"{arm['percent_of_physical_limit']}% of the physical limit, "
                                        f"max rel. diff to TF {arm['max_relative_difference_to_tf']:.1e}, "
                                        f"build {arm['build_seconds']} s"))
    for name, job in jobs.items():
        usd = costs["arms"][f"job {name}"]["usd_per_1000_images"]
        summary.append(summary_row(f"job end to end {name}", job["images_per_s"], "images/s",
                                   note=f"{job['seconds']} s for {job['images']} images, job/raw "
                                        f"{job['job_over_raw']}, warm-up job {job['warmup_seconds']} s, "
                                        f"USD/1000 images x86 {usd['x86_64']} arm64 {usd['arm64']}, "
                                        f"load {job['loadavg_1min_before']}"))
    notes = [
        f"Physical limit: {limit['formula']} = {limit['cores']} x {limit['flop_per_cycle_f32']} x {limit['ghz']} / "
        f"{GFLOP_PER_IMAGE} = {limit['images_per_s_f32']} images/s f32, {limit['images_per_s_bf16']} bf16 "
        "(FLOP/cycle from /proc/cpuinfo flags assuming 2 FMA units; GHz = cpu MHz).",
        "Job = spark_jobs.main on local[*] in a new SparkSession per engine, after a warm-up job of the same engine "
        "(its wall time = the per-run start-up: Python workers, engine import and model build or cached-file load); "
        "job/raw = job rate / the same engine's raw rate in this run.",
        "Default engine per architecture: openvino on X86_64 (fastest exact); onnxruntime on ARM64 because "
        "OpenVINO's aarch64 wheel needs glibc 2.35 and EMR 7.x images are Amazon Linux 2023 (glibc 2.34).",
    ]
    doc = {"description": __doc__.splitlines()[0], "notes": notes, "default_engine": default, "physical_limit": limit,
           "raw": raw, "jobs": jobs, "cost": costs, "summary": summary}
    write_result("engines", doc, cfg.results_dir)
    return doc
