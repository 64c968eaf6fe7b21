"""Sizes of one benchmark run. ``FULL`` fits ``make bench`` on 2 cores in < 15 minutes (ResNet50 224x224 runs
about 9 images/s here); ``TINY`` exercises the same plumbing in seconds for tests."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import RESULTS_DIR, SAMPLE_DIR


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and locations of a run (counts are images unless stated)."""

    sample_dir: Path = SAMPLE_DIR
    results_dir: Path = RESULTS_DIR
    image_size: int = 224
    fast_image_size: int = 100
    weights: str = "random:0"
    pca_k: int = 150
    train_per_class: int = 12  # Training images per class featurized by the job (quality + arm c)
    test_per_class: int = 6  # Test images per class
    ceiling_images: int = 192  # arm a (in-memory tensors)
    seed_images: int = 96  # arm b (per-image predict)
    bf16_images: int = 32
    native_images: int = 64  # raw TF 100x100 vs 224 side by side
    warmup_images: int = 8  # job warm-up run (worker start, TF import, model build), reported separately
    infer_batch_size: int = 32
    engine_job_images: int = 1200  # batch of the per-engine job runs (bench/engines.py), Training photos: a run
    # takes every waiting batch (issue 19), up to JOB_MAX_IMAGES, so ~1,000-1,200 images is a job run under load
    engine_fit_images: int = 300  # a second, smaller job per arm: fixed s + n / rate fitted from the two (0: none)
    calibration_images: int = 300  # int8 calibration photos (Training folder, spark_jobs.featurize.quantization sample)
    holdout_images: int = 100  # int8 fidelity gate's held-back photos
    int8_train_per_class: int = 40  # bench.quality --int8: Training photos per class (calibration photos removed)
    int8_test_per_class: int = 25  # ... and Test photos per class (600: one photo = 0.17 accuracy points)
    int8_probe_splits: int = 10  # ... and random stratified re-splits of those photos (spread of int8 - f32)
    engine_repeats: int = 3  # rounds of raw f32/bf16/int8 measurements back to back (median reported)
    job_repeats: int = 2  # back-to-back job runs of the default engine in f32 and int8
    gemm_size: int = 1024  # side of the square MatMul of the peak-throughput measurement (best of 40 calls)
    incremental_n: int | None = None  # N of the incremental benchmark; None = history images // history_factor
    history_factor: int = 10
    lake_commit_n: int = 500  # rows of a batch in the lake_commit benchmark (a threshold-sized batch)
    history_weights: str = "projection:0"  # cheap featurizer for the history batches (job's test featurizer)
    pca_history_sizes: tuple[int, ...] = (64, 640, 6400)
    ingest_records: int = 40  # S3 objects/SQS records through the ingest handler
    ingest_batch_size: int = 10  # SQS records per invocation (SQS event source default batch size)
    demo_limit: int | None = None  # photos of the waves demo (None: every Training photo, 3,600)
    demo_threshold: int = 500
    demo_arrival_limit: int = 600  # photos of the Poisson-stream demo
    demo_arrival_rate: float = 5.0  # photos/s
    capacity_validate: bool = True  # bench.capacity: run the two local demos that validate the model
    seed: int = 0


FULL = BenchConfig()
TINY = replace(
    FULL, train_per_class=1, test_per_class=1, ceiling_images=4, seed_images=2, bf16_images=2, native_images=2,
    warmup_images=2, engine_job_images=4, engine_fit_images=2, calibration_images=4, holdout_images=4, engine_repeats=1,
    job_repeats=1, gemm_size=64, int8_train_per_class=2, int8_test_per_class=1, int8_probe_splits=2,
    infer_batch_size=4, image_size=32, fast_image_size=32, pca_k=4, incremental_n=2, history_factor=2,
    pca_history_sizes=(8, 16), ingest_records=6, ingest_batch_size=3, lake_commit_n=5,
    demo_limit=12, demo_threshold=6, demo_arrival_limit=6, demo_arrival_rate=20.0, capacity_validate=False,
)
