"""Benchmark 4 — opt-in faster modes: bf16 inference and ResNet50 on the native 100x100 Fruits-360 input.

* bf16: Keras ``mixed_bfloat16`` batch inference vs the float32 ceiling, same images, same process, then the
  Spark job end to end with ``--precision bfloat16`` on the throughput manifest and its linear-probe accuracy.
  Only worth it on CPUs with bf16 instructions (``avx512_bf16``/AMX on x86, BF16 on Graviton3); the CPU flags
  are recorded so the figure can be read against them.
* 100x100: ResNet50 (``include_top=False``, ``pooling="avg"`` works for any input >= 32x32) on the native
  100x100 images instead of upsampling to 224: raw TF speed-up, end-to-end job speed-up (``--image-size 100``),
  and the linear-probe accuracy cost on the same Training/Test images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import cpu_flags, ratio, write_manifest, write_result
from bench.config import BenchConfig
from bench.report import summary_row


def run(cfg: BenchConfig, workdir: Path, throughput: dict[str, Any]) -> dict[str, Any]:
    """Measure bf16 and 100x100 against the throughput run's arms; write ``faster_mode.json``; return it.

    Args:
        throughput: the document returned by :func:`bench.throughput.run` (arms, lake, manifest, images).
    """
    from bench import quality, spark_arm, tf_arms

    images: list[Path] = throughput["images"]
    arm_c = throughput["arms"]["c_spark_job"]

    # bf16 vs float32, same images, side by side
    x224 = tf_arms.decode_batch(images[: cfg.bf16_images], cfg.image_size)
    fp32 = tf_arms.ceiling_arm(tf_arms.build_resnet50(cfg.image_size, cfg.seed), x224,
                               min(cfg.infer_batch_size, cfg.bf16_images))
    bf16 = tf_arms.bf16_arm(x224, cfg.image_size, min(cfg.infer_batch_size, cfg.bf16_images), cfg.seed)
    del x224

    # raw TF at the native size vs 224, side by side on the same images (224, native, 224: best of each)
    size = cfg.fast_image_size
    subset = images[: cfg.native_images]
    x_default = tf_arms.decode_batch(subset, cfg.image_size)
    x_small = tf_arms.decode_batch(subset, size)
    default_model = tf_arms.build_resnet50(cfg.image_size, cfg.seed)
    small_model = tf_arms.build_resnet50(size, cfg.seed)
    batch = min(cfg.infer_batch_size, len(subset))
    raw_default = [tf_arms.ceiling_arm(default_model, x_default, batch)]
    raw_small = tf_arms.ceiling_arm(small_model, x_small, batch)
    raw_default.append(tf_arms.ceiling_arm(default_model, x_default, batch))
    raw_default_best = max(raw_default, key=lambda arm: arm["images_per_s"])
    del x_default, x_small, default_model, small_model

    # end to end at the native size on the same manifest, then the probe on both lakes
    options = {"weights": cfg.weights, "image_size": size, "pca_k": cfg.pca_k,
               "infer_batch_size": cfg.infer_batch_size}
    warm = write_manifest(images[: cfg.warmup_images], workdir / "manifests" / f"warmup-{size}.jsonl")
    spark_arm.run_job(warm, workdir / f"lake-warmup-{size}", "b000000-warmup", **options)
    lake_small = workdir / f"lake-{size}"
    job_small = spark_arm.run_job(throughput["manifest"], lake_small, "b000001-bench", **options)
    acc_default = quality.probe(throughput["lake"])
    acc_small = quality.probe(lake_small)

    # end to end in bf16 at 224 on the same manifest (warm workers: the bf16 network is built by a warm-up job)
    bf16_options = {**options, "image_size": cfg.image_size, "precision": "bfloat16"}
    spark_arm.run_job(warm, workdir / "lake-warmup-bf16", "b000000-warmup", **bf16_options)
    lake_bf16 = workdir / "lake-bf16"
    job_bf16 = spark_arm.run_job(throughput["manifest"], lake_bf16, "b000001-bench", **bf16_options)
    acc_bf16 = quality.probe(lake_bf16)

    bf16_speedup = ratio(bf16["images_per_s"], fp32["images_per_s"])
    raw_speedup = ratio(raw_small["images_per_s"], raw_default_best["images_per_s"])
    job_speedup = ratio(job_small["images_per_s"], arm_c["images_per_s"])
    job_bf16_speedup = ratio(job_bf16["images_per_s"], arm_c["images_per_s"])
    delta = round(acc_small["accuracy"] - acc_default["accuracy"], 4)
    delta_bf16 = round(acc_bf16["accuracy"] - acc_default["accuracy"], 4)
    flags = sorted(f for f in cpu_flags() if "bf16" in f or f.startswith("amx"))
    doc = {
        "description": "Speed-ups are ratios to the default (float32, 224x224) measured in the same run.",
        "summary": [
            summary_row("bf16 / float32 inference speed", bf16_speedup, "x",
                        note=f"{bf16['images']} images; CPU bf16 flags: {', '.join(flags) or 'none'}"),
            summary_row("bf16 / float32 Spark job end-to-end speed (224)", job_bf16_speedup, "x",
                        note=f"{job_bf16['images_per_s']} vs {arm_c['images_per_s']} images/s, --precision bfloat16"),
            summary_row("probe accuracy, bf16 at 224", round(acc_bf16["accuracy"], 4), "", note=acc_bf16["model_id"]),
            summary_row("accuracy change bf16 vs float32", delta_bf16, "", note="same Training/Test images"),
            summary_row(f"{size}x{size} / 224 raw TF inference speed", raw_speedup, "x",
                        note=f"{raw_small['images_per_s']} vs {raw_default_best['images_per_s']} images/s, "
                             f"{raw_small['images']} images"),
            summary_row(f"{size}x{size} / 224 Spark job end-to-end speed", job_speedup, "x",
                        note=f"{job_small['images_per_s']} vs {arm_c['images_per_s']} images/s"),
            summary_row("probe accuracy at 224", round(acc_default["accuracy"], 4), "",
                        note=acc_default["model_id"]),
            summary_row(f"probe accuracy at {size}", round(acc_small["accuracy"], 4), "",
                        note=acc_small["model_id"]),
            summary_row(f"accuracy change {size} vs 224", delta, "", note="same Training/Test images"),
        ],
        "bf16": {"fp32": fp32, "bf16": bf16, "cpu_bf16_flags": flags,
                 "spark_job": {k: v for k, v in job_bf16.items() if k != "report"}, "probe": acc_bf16},
        "native_size": {"image_size": size, "raw_tf": raw_small, "raw_tf_default": raw_default,
                        "spark_job": {k: v for k, v in job_small.items() if k != "report"},
                        "probe_224": acc_default, "probe_native": acc_small},
        "notes": [
            "bf16 is " + ("not beneficial on this CPU: it has no bf16 instructions, TensorFlow emulates bf16 "
                          "with conversions" if not flags else "measured on a CPU with bf16 instructions")
            + f" (measured {bf16_speedup}x). Keep it opt-in for Graviton3 / Sapphire Rapids workers.",
            f"{size}x{size} is opt-in: model_id changes (…-{size}) so its features never mix with 224 ones.",
        ],
    }
    write_result("faster_mode", doc, cfg.results_dir)
    return doc
