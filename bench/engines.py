"""Benchmark 7 — inference engines side by side: raw rate, the Spark job end to end, % of the measured peak, cost.

In one run, on the same images and the same ResNet50 (``--weights random:0``: throughput does not depend on the
weight values):

* raw rate of each engine (:mod:`spark_jobs.featurize.engines`) in float32, bf16 and int8 (post-training quantization
  calibrated on ``calibration_images`` Training photos, :mod:`spark_jobs.featurize.quantization`): ``infer_batch_size``
  chunks of decoded uint8 224x224 pixels already in memory, all cores in one process, one warm-up chunk excluded.
  Every engine is built first, then measured in ``engine_repeats`` rounds, each round timing every arm back to
  back (f32 and int8 under the same load: the machine is shared); the median round is reported, with each round's
  rate and load average. Also the largest difference to Keras TF float32 features (max |a - b| / max |b|), the
  mean cosine to the same engine's f32 features, and the engine's build time;
* the Spark job end to end (``spark_jobs.main.main`` on ``local[*]``) per engine on an ``engine_job_images``
  run (1,200 by default: since issue 19 a job run takes every waiting batch, so ~1,000-1,200 images is the
  representative run under load), after a small warm-up job of the same engine (JVM, Python workers, engine build
  or quantization, the int8 fidelity gate), whose wall time and the workers' engine-build seconds are reported as
  the per-run start-up cost. A second, smaller run (``engine_fit_images``, 300) in the same session gives the
  line ``seconds = fixed + n x seconds_per_image`` (:func:`job_fit`): the fixed seconds of every run and the
  per-image rate, so job/raw (= job images/s on the stated run size / raw images/s) is explained, not only given.
  Each engine starts from a new SparkSession (new Python workers), as a job run does: a worker that had
  loaded TensorFlow for the previous arm made the next engine's inference 12 % slower (26.3 vs 23.6 task-s on
  OpenVINO f32). The default engine's f32 and int8 jobs are then run again ``job_repeats`` - 1 times, back to
  back, and their median is reported;
* % of the measured peak: the peak GEMM throughput of this CPU (:func:`peak_gemm`: a square OpenVINO MatMul in
  f32, bf16 and int8 on all cores, best of several calls) divided by ResNet50-224's operation count (4.1 G
  multiply-adds, He et al. 2016 table 1 = 8.2 GFLOP or 8.2 G int8 operations per image) gives the images/s the
  cores could reach at GEMM speed; each engine's rate is shown as % of the limit of its precision;
* cost per 1,000 images per engine from the job's rate (:func:`bench.cost.cost_model`).

Every raw and job row records the CPU model, core count and its relevant flags (VNNI, bf16, AMX): machines of
the same size differ (issue 22).

Targets (issue 11): job >= 0.85 x the default engine's raw rate; default f32 job >= 1.25 x the TF job; bf16 job
>= 2 x the TF job. Issue 22: default int8 job >= 2.2 x the default f32 job, int8 job/raw >= 0.85.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import pick_images, ratio, stopwatch, write_manifest, write_result
from bench.report import summary_row

GFLOP_PER_IMAGE = 8.2  # ResNet50 at 224x224: 4.1 G multiply-adds (He et al. 2016, table 1) x 2 FLOP
TARGET_JOB_OVER_RAW = 0.85
TARGET_DEFAULT_OVER_TF = 1.25
TARGET_BF16_OVER_TF = 2.0
TARGET_INT8_OVER_F32 = 2.2
ARMS = (("tensorflow", "float32"), ("openvino", "float32"), ("onnxruntime", "float32"),
        ("tensorflow", "bfloat16"), ("openvino", "bfloat16"), ("openvino", "int8"), ("onnxruntime", "int8"))
# /proc/cpuinfo flags that decide which kernels run (x86: AVX-512, VNNI, bf16, AMX; ARM: dot product, i8mm, bf16)
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
                  "amx_tile", "asimddp", "i8mm", "bf16", "sve", "sve2")


def cpu_record() -> dict[str, Any]:
    """The CPU a figure ran on: model name, cores available to this process, relevant flags (present ones)."""
    from bench.common import cpu_flags, cpu_model

    flags = cpu_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": cpu_model(), "machine": platform.machine(), "cores": cores,
            "flags": [f for f in RELEVANT_FLAGS if f in flags]}


def _matmul_model(size: int):
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([size, size], np.float32, name="x")
    w = ops.constant((rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32))
    return ov.Model([ops.matmul(x, w, False, False)], [x], "gemm")


def _gemm_rate(compiled: Any, x: np.ndarray, calls: int) -> float:
    request = compiled.create_infer_request()
    request.infer(x)
    best = float("inf")
    for _ in range(calls):
        with stopwatch() as t:
            request.infer(x)
        best = min(best, t["seconds"])
    return 2 * x.shape[0] ** 3 / best / 1e9


def peak_gemm(size: int = 1024, calls: int = 40) -> dict[str, Any]:
    """Measured peak GEMM throughput of this CPU (GFLOP/s or G int8 ops/s) and the ResNet50-224 images/s it bounds.

    A ``size`` x ``size`` x ``size`` MatMul (2 size^3 operations) in OpenVINO on all cores: f32
    (``INFERENCE_PRECISION_HINT=f32``), bf16 (hint bf16), and int8 (the same model quantized by NNCF, as the int8
    ResNet50 is); also numpy's f32 ``@`` (its BLAS). Best of ``calls`` calls after one warm-up (peak = what the
    cores reach when not disturbed; the machine is shared). ``images_per_s_<precision>`` = GFLOP/s / 8.2.
    """
    import nncf
    import openvino as ov

    cores = os.cpu_count() or 1
    rng = np.random.default_rng(1)
    x = rng.standard_normal((size, size)).astype(np.float32)
    core = ov.Core()
    model = _matmul_model(size)
    base = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(cores)}
    quantized = nncf.quantize(_matmul_model(size), nncf.Dataset([x[:size], -x[:size]]), subset_size=2)
    gflops = {
        "f32": _gemm_rate(core.compile_model(model, "CPU", {**base, "INFERENCE_PRECISION_HINT": "f32"}), x, calls),
        "bf16": _gemm_rate(core.compile_model(model, "CPU", {**base, "INFERENCE_PRECISION_HINT": "bf16"}), x, calls),
        "int8": _gemm_rate(core.compile_model(quantized, "CPU", {**base, "INFERENCE_PRECISION_HINT": "f32"}), x,
                           calls),
    }
    best = float("inf")
    for _ in range(calls):
        with stopwatch() as t:
            x @ x
        best = min(best, t["seconds"])
    return {"method": f"OpenVINO MatMul {size}x{size}x{size} on {cores} cores, best of {calls} calls; int8 = "
                      "the model quantized by NNCF", "size": size,
            "gflop_per_s": {k: round(v, 1) for k, v in gflops.items()},
            "numpy_f32_gflop_per_s": round(2 * size**3 / best / 1e9, 1),
            "gflop_per_image": GFLOP_PER_IMAGE,
            **{f"images_per_s_{k}": round(v / GFLOP_PER_IMAGE, 1) for k, v in gflops.items()},
            "loadavg_1min": round(os.getloadavg()[0], 2), "cpu": cpu_record()}


def interleave(paths: list[Path]) -> list[Path]:
    """``paths`` (grouped class by class, :func:`bench.common.pick_images`) reordered round-robin over the classes
    (parent folders), so every prefix, e.g. the smaller job of the fit, is class-balanced."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(path.parent.name, []).append(path)
    rounds = max((len(g) for g in groups.values()), default=0)
    return [g[i] for i in range(rounds) for g in groups.values() if i < len(g)]


def job_fit(seconds_by_images: dict[int, float]) -> dict[str, Any] | None:
    """Least-squares line ``seconds = fixed_seconds + images * seconds_per_image`` through job runs of different
    sizes (wall seconds by featurized images; two sizes: the line through both). None with fewer than two sizes.

    ``fixed_seconds`` is what a job run costs whatever its size (Spark stages, lake commits, PCA fit, the int8
    calibration resolve and gate, ...), ``images_per_s_per_image`` = 1 / ``seconds_per_image`` the rate a very
    large run tends to; the rate of an ``n``-image run is ``n / (fixed_seconds + n * seconds_per_image)``.
    """
    if len(seconds_by_images) < 2:
        return None
    n = np.array(sorted(seconds_by_images), dtype=np.float64)
    slope, intercept = np.polyfit(n, [seconds_by_images[int(k)] for k in n], 1)
    return {"fixed_seconds": round(float(intercept), 2), "seconds_per_image": round(float(slope), 5),
            "images_per_s_per_image": round(1 / slope, 3) if slope > 0 else None,
            "points": {str(int(k)): seconds_by_images[int(k)] for k in n}}


_PEAK_KEY = {"float32": "images_per_s_f32", "bfloat16": "images_per_s_bf16", "int8": "images_per_s_int8"}


def build_arm(engine: str, precision: str, image_size: int, calibration: Any = None) -> tuple[Any, float]:
    """The featurizer of one arm (``random:0`` weights; int8: calibrated on ``calibration``) and its build seconds."""
    from spark_jobs.featurize import engines
    from spark_jobs.featurize.models import ModelSpec

    spec = ModelSpec("random", image_size, 0, precision=precision,
                     calibration=calibration if precision == "int8" else None)
    with stopwatch() as build:
        fn = engines.build_engine(spec, engine, threads=os.cpu_count() or 1)
    return fn, build["seconds"]


def time_arm(fn: Any, pixels: np.ndarray, batch: int) -> tuple[float, float, np.ndarray]:
    """(images/s, 1-min load average before, features) of ``fn`` on ``pixels`` in chunks of ``batch`` after one
    warm-up chunk."""
    fn(pixels[:batch])
    outputs = []
    load = os.getloadavg()[0]
    with stopwatch() as t:
        for start in range(0, len(pixels), batch):
            outputs.append(fn(pixels[start : start + batch]))
    return len(pixels) / t["seconds"], load, np.concatenate(outputs)


def raw_rates(pixels: np.ndarray, batch: int, image_size: int, repeats: int, calibration: Any,
              arms: tuple[tuple[str, str], ...] = ARMS) -> dict[str, Any]:
    """Build every arm of ``arms``, then time them in ``repeats`` rounds, all arms back to back in each round;
    per arm: the median rate, every round's rate and load average, build seconds, and the features (first round)."""
    built = {f"{e}-{p}": (e, p, *build_arm(e, p, image_size, calibration)) for e, p in arms}
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in built}
    features: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, (_, _, fn, _) in built.items():
            rate, load, out = time_arm(fn, pixels, batch)
            rounds[name].append((rate, load))
            features.setdefault(name, out)
    raw = {}
    for name, (engine, precision, _, build_seconds) in built.items():
        rates = [r for r, _ in rounds[name]]
        raw[name] = {"engine": engine, "precision": precision, "images": len(pixels), "repeats": repeats,
                     "images_per_s": round(statistics.median(rates), 3),
                     "images_per_s_rounds": [round(r, 3) for r in rates],
                     "loadavg_1min_rounds": [round(load, 2) for _, load in rounds[name]],
                     "loadavg_1min_before": round(rounds[name][0][1], 2),
                     "build_seconds": round(build_seconds, 2), "features": features[name]}
    return raw


def fit_note(job: dict[str, Any]) -> str:
    """`` = fixed F s + n / R images/s per image (job/raw per image x)`` of a job row with a fit, else ``""``."""
    fit = job.get("fit")
    if not fit:
        return ""
    return (f"; time = {fit['fixed_seconds']} s fixed per run + n / {fit['images_per_s_per_image']} images/s "
            f"(per-image part alone: {fit.get('job_over_raw_per_image')} x raw; fit of the "
            f"{'/'.join(fit['points'])}-image runs)")


def _target_rows(jobs: dict[str, Any], raw: dict[str, Any], default: str, images: int,
                 job_repeats: int) -> list[dict[str, Any]]:
    """The target rows (issues 11 and 22) whose arms were measured; job/raw = the job's images/s on an
    ``images``-image run (its fixed per-run seconds included) / the engine's raw images/s."""
    rows = []
    default_name, int8_name, tf_name = f"{default}-float32", f"{default}-int8", "tensorflow-float32"
    if default_name in jobs:
        value = jobs[default_name]["job_over_raw"]
        rows.append(summary_row(f"job / raw rate, default engine ({default_name})", value, "x",
                                target=f">= {TARGET_JOB_OVER_RAW}", met=value is not None
                                and value >= TARGET_JOB_OVER_RAW,
                                note=f"{jobs[default_name]['images_per_s']} vs {raw[default_name]['images_per_s']} "
                                     f"images/s, {images}-image job run" + fit_note(jobs[default_name])))
    if default_name in jobs and tf_name in jobs:
        value = ratio(jobs[default_name]["images_per_s"], jobs[tf_name]["images_per_s"])
        rows.append(summary_row(f"default f32 job / TF job ({default_name})", value, "x",
                                target=f">= {TARGET_DEFAULT_OVER_TF}", met=value is not None
                                and value >= TARGET_DEFAULT_OVER_TF,
                                note=f"{jobs[default_name]['images_per_s']} vs {jobs[tf_name]['images_per_s']} "
                                     "images/s"))
    bf16 = {k: j for k, j in jobs.items() if k.endswith("bfloat16")}
    if bf16 and tf_name in jobs:
        bf16_name = max(bf16, key=lambda k: bf16[k]["images_per_s"])
        value = ratio(bf16[bf16_name]["images_per_s"], jobs[tf_name]["images_per_s"])
        rows.append(summary_row(f"bf16 job / TF f32 job ({bf16_name})", value, "x", target=f">= {TARGET_BF16_OVER_TF}",
                                met=value is not None and value >= TARGET_BF16_OVER_TF,
                                note=f"{bf16[bf16_name]['images_per_s']} vs {jobs[tf_name]['images_per_s']} images/s"))
    if int8_name in jobs and default_name in jobs:
        value = ratio(jobs[int8_name]["images_per_s"], jobs[default_name]["images_per_s"])
        rows.append(summary_row(f"int8 job / default f32 job ({int8_name})", value, "x",
                                target=f">= {TARGET_INT8_OVER_F32}", met=value is not None
                                and value >= TARGET_INT8_OVER_F32,
                                note=f"{jobs[int8_name]['images_per_s']} vs {jobs[default_name]['images_per_s']} "
                                     f"images/s, median of {job_repeats} back-to-back runs each"))
        value = jobs[int8_name]["job_over_raw"]
        rows.append(summary_row(f"job / raw rate, int8 ({int8_name})", value, "x", target=f">= {TARGET_JOB_OVER_RAW}",
                                met=value is not None and value >= TARGET_JOB_OVER_RAW,
                                note=f"{jobs[int8_name]['images_per_s']} vs {raw[int8_name]['images_per_s']} "
                                     f"images/s, {images}-image job run" + fit_note(jobs[int8_name])))
    return rows


def run(cfg: Any, workdir: Path, arms: tuple[tuple[str, str], ...] = ARMS) -> dict[str, Any]:
    """Measure every arm of ``arms`` (default :data:`ARMS`) and the peak GEMM throughput; write ``engines.json``;
    return the document. Summary rows whose arms were not measured are left out."""
    from bench import spark_arm
    from bench.common import machine_info
    from bench.cost import cost_model
    from spark_jobs.featurize.engines import default_engine
    from spark_jobs.featurize.fidelity import cosine_similarities
    from spark_jobs.featurize.images import decode_image
    from spark_jobs.featurize.quantization import resolve_calibration

    size, batch = cfg.image_size, cfg.infer_batch_size
    cpu = cpu_record()
    calibration_source = cfg.sample_dir / "Training"
    calibration = resolve_calibration(str(calibration_source), cfg.calibration_images, cfg.holdout_images, size)
    classes = len([d for d in (cfg.sample_dir / "Training").iterdir() if d.is_dir()])
    per_class = -(-cfg.engine_job_images // classes)
    images = interleave(pick_images(cfg.sample_dir, "Training", per_class, cfg.seed))[: cfg.engine_job_images]
    raw_paths = images[: cfg.ceiling_images]
    pixels = np.stack([np.frombuffer(decode_image(p.read_bytes(), size).pixels, np.uint8).reshape(size, size, 3)
                       for p in raw_paths])
    raw = raw_rates(pixels, batch, size, cfg.engine_repeats, calibration, arms)
    reference = raw["tensorflow-float32"]["features"] if "tensorflow-float32" in raw else None
    for arm in raw.values():
        features = arm["features"]
        arm["max_relative_difference_to_tf"] = (None if reference is None else
                                                float(np.abs(features - reference).max() / np.abs(reference).max()))
        same_engine_f32 = raw.get(f"{arm['engine']}-float32") or raw.get("tensorflow-float32") or arm
        arm["mean_cosine_to_f32"] = float(cosine_similarities(same_engine_f32["features"], features).mean())
        arm["cpu"] = cpu
    for arm in raw.values():
        arm.pop("features")

    warm_paths = pick_images(cfg.sample_dir, "Test", 1, cfg.seed)[: cfg.warmup_images]
    warm_manifest = write_manifest(warm_paths, workdir / "manifests" / "engines-warmup.jsonl")
    sizes = sorted({n for n in (cfg.engine_fit_images, len(images)) if 0 < n <= len(images)})
    manifests = {n: write_manifest(images[:n], workdir / "manifests" / f"engines-job-{n}.jsonl") for n in sizes}
    options = {"weights": cfg.weights, "image_size": size, "pca_k": cfg.pca_k, "infer_batch_size": batch,
               "calibration": str(calibration_source), "calibration_images": cfg.calibration_images,
               "holdout_images": cfg.holdout_images}
    default = default_engine(platform.machine())
    jobs: dict[str, dict[str, Any]] = {}

    def job_arm(n: int, engine: str, precision: str, tag: str, job_sizes: list[int]) -> dict[str, Any]:
        """A warm-up job, then one job per size of ``job_sizes`` (ascending), in one new SparkSession; the row
        of the largest size, with ``sizes`` (every size's seconds, images/s, stages) and the linear fit."""
        name = f"{engine}-{precision}"
        spark_arm.fresh_session()
        warm = spark_arm.run_job(warm_manifest, workdir / f"lake-engine-warm-{name}{tag}", f"b{n:06d}-warm{tag}",
                                 engine=engine, precision=precision, **options)
        runs = {}
        for k in job_sizes:
            job = spark_arm.run_job(manifests[k], workdir / f"lake-engine-{name}{tag}-{k}", f"b{n:06d}-engine{tag}",
                                    engine=engine, precision=precision, **options)
            report = job.pop("report") or {}
            runs[k] = {**job, "stages": report.get("seconds"), "task": report.get("task"),
                       "fidelity": report.get("fidelity")}
        warm_report = warm.pop("report") or {}
        return {**runs[job_sizes[-1]], "warmup_seconds": warm["seconds"],
                "warmup_engine_build_task_seconds": (warm_report.get("task") or {}).get("engine_build_s"),
                "sizes": {str(k): {key: r[key] for key in ("images", "seconds", "images_per_s", "loadavg_1min_before",
                                                          "stages")} for k, r in runs.items()},
                "fit": job_fit({r["images"]: r["seconds"] for r in runs.values()}), "cpu": cpu}

    for n, (engine, precision) in enumerate(arms):
        jobs[f"{engine}-{precision}"] = job_arm(n, engine, precision, "", sizes)
    pair = (f"{default}-float32", f"{default}-int8")
    pair = pair if all(name in jobs for name in pair) else ()
    for r in range(1, cfg.job_repeats):  # the default engine's f32 and int8 jobs again (largest size), back to back
        for name in pair:
            engine, precision = name.rsplit("-", 1)
            again = job_arm(100 + r, engine, precision, f"-r{r}", sizes[-1:])
            jobs[name].setdefault("repeats", [{k: jobs[name][k] for k in ("images_per_s", "loadavg_1min_before")}])
            jobs[name]["repeats"].append({k: again[k] for k in ("images_per_s", "loadavg_1min_before")})
    for name in pair:
        if "repeats" in jobs[name]:
            jobs[name]["images_per_s_first_run"] = jobs[name]["images_per_s"]
            jobs[name]["images_per_s"] = round(statistics.median(x["images_per_s"] for x in jobs[name]["repeats"]), 3)
    for name, job in jobs.items():
        job["job_over_raw"] = ratio(job["images_per_s"], raw[name]["images_per_s"])
        fit = job["fit"]
        if fit is not None:
            fit["job_over_raw_per_image"] = ratio(fit["images_per_s_per_image"], raw[name]["images_per_s"])

    info = machine_info()
    peak = peak_gemm(cfg.gemm_size)
    for arm in raw.values():
        arm["percent_of_measured_peak"] = round(100 * arm["images_per_s"] / peak[_PEAK_KEY[arm["precision"]]], 1)
    costs = cost_model({f"job {k}": j["images_per_s"] for k, j in jobs.items()}, int(info["cores"]))
    cpu_note = f"{cpu['model']}, {cpu['cores']} cores, flags {' '.join(cpu['flags'])}"
    summary = _target_rows(jobs, raw, default, len(images), cfg.job_repeats)
    summary.append(summary_row("peak GEMM f32 / bf16 / int8 (measured)", peak["gflop_per_s"]["f32"], "GFLOP/s",
                               note=f"bf16 {peak['gflop_per_s']['bf16']}, int8 {peak['gflop_per_s']['int8']} G "
                                    f"ops/s; ResNet50 limit {peak['images_per_s_f32']} / {peak['images_per_s_bf16']}"
                                    f" / {peak['images_per_s_int8']} images/s; {cpu_note}"))
    for name, arm in raw.items():
        to_tf = arm["max_relative_difference_to_tf"]
        summary.append(summary_row(f"raw rate {name}", arm["images_per_s"], "images/s",
                                   note=f"{arm['percent_of_measured_peak']}% of the measured peak, "
                                        f"max rel. diff to TF {'n/a' if to_tf is None else f'{to_tf:.1e}'}, "
                                        f"cosine to f32 {arm['mean_cosine_to_f32']:.5f}, "
                                        f"build {arm['build_seconds']} s, rounds {arm['images_per_s_rounds']}, "
                                        f"load {arm['loadavg_1min_rounds']}"))
    for name, job in jobs.items():
        usd = costs["arms"][f"job {name}"]["usd_per_1000_images"]
        summary.append(summary_row(f"job end to end {name}", job["images_per_s"], "images/s",
                                   note=f"{job['seconds']} s for {job['images']} images, job/raw "
                                        f"{job['job_over_raw']}, warm-up job {job['warmup_seconds']} s, "
                                        f"USD/1000 images x86 {usd['x86_64']} arm64 {usd['arm64']}, "
                                        f"load {job['loadavg_1min_before']}" + fit_note(job)))
    for row in summary:
        row["cpu"] = cpu
    notes = [
        f"Measured peak: {peak['method']}: {peak['gflop_per_s']} G ops/s (numpy f32 {peak['numpy_f32_gflop_per_s']})"
        f" / {GFLOP_PER_IMAGE} G ops per ResNet50-224 image = {peak['images_per_s_f32']} images/s f32, "
        f"{peak['images_per_s_bf16']} bf16, {peak['images_per_s_int8']} int8 (replaces the guessed "
        "cores x FLOP/cycle x GHz limit).",
        f"CPU: {cpu_note}. The machine is shared by six developers: f32, bf16 and int8 raw rates are measured back "
        f"to back in {cfg.engine_repeats} rounds (median; each round's rate and load average recorded) and the "
        f"default engine's f32/int8 jobs {cfg.job_repeats} times back to back (median).",
        "Job = spark_jobs.main on local[*] in a new SparkSession per engine, after a warm-up job of the same engine "
        "(its wall time = the per-run start-up: Python workers, engine import and model build, quantization or "
        "cached-file load, the int8 fidelity gate); job/raw = job rate / the same engine's raw rate in this run.",
        f"int8 = post-training static quantization calibrated on {cfg.calibration_images} Training photos (a "
        f"deterministic sample, spark_jobs.featurize.quantization), fidelity gate on {cfg.holdout_images} other "
        "photos.",
        "Default engine per architecture: openvino on X86_64 (fastest exact); onnxruntime on ARM64 because "
        "OpenVINO's aarch64 wheel needs glibc 2.35 and EMR 7.x images are Amazon Linux 2023 (glibc 2.34).",
    ]
    doc = {"description": __doc__.splitlines()[0], "notes": notes, "default_engine": default, "cpu": cpu,
           "measured_peak": peak, "calibration": calibration.describe(), "raw": raw, "jobs": jobs, "cost": costs,
           "summary": summary}
    write_result("engines", doc, cfg.results_dir)
    return doc


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.engines [--tiny]``: run this benchmark alone (results in bench/results/engines.json)."""
    import argparse
    import tempfile
    from dataclasses import replace

    from bench.config import FULL, TINY

    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (plumbing check), results to a temp dir")
    parser.add_argument("--arms", default=",".join(f"{e}-{p}" for e, p in ARMS),
                        help="comma-separated ENGINE-PRECISION arms (default: all of ARMS)")
    parser.add_argument("--job-images", type=int, default=None,
                        help="images of the headline job run per arm (default: config, 1200: a run takes every "
                             "waiting batch, up to JOB_MAX_IMAGES); job/raw is measured on it")
    parser.add_argument("--fit-images", type=int, default=None,
                        help="images of a second, smaller job run per arm; the two give fixed seconds per run + "
                             "per-image rate (default: config, 300; 0: no fit)")
    parser.add_argument("--raw-images", type=int, default=None, help="images of each raw timing (default: config)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where engines.json goes (default: config)")
    args = parser.parse_args(argv)
    arms = tuple(tuple(arm.strip().rsplit("-", 1)) for arm in args.arms.split(","))
    if any(arm not in ARMS for arm in arms):
        parser.error(f"--arms: each must be one of {', '.join(f'{e}-{p}' for e, p in ARMS)}")
    with tempfile.TemporaryDirectory(prefix="fruits-bench-engines-") as tmp:
        cfg = TINY if args.tiny else FULL
        if args.tiny:
            cfg = replace(cfg, results_dir=Path(tmp) / "results")
        cfg = replace(cfg, results_dir=args.results_dir or cfg.results_dir,
                      engine_job_images=args.job_images or cfg.engine_job_images,
                      engine_fit_images=cfg.engine_fit_images if args.fit_images is None else args.fit_images,
                      ceiling_images=args.raw_images or cfg.ceiling_images)
        doc = run(cfg, Path(tmp), arms)  # type: ignore[arg-type]
    doc["command"] = "python -m bench.engines " + " ".join(argv if argv is not None else sys.argv[1:])
    write_result("engines", doc, cfg.results_dir)
    for row in doc["summary"]:
        print(f"{row['metric']}: {row['value']} {row['unit']}  {row['note']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
