"""The measuring arms on tiny inputs: real handler under moto (ingestion), real ResNet50 (TF arms).

Correctness only (counts, shapes, files written); no timing is asserted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench import run_all


def test_ingestion_counts_calls_of_the_real_handler(sample_dir: Path, tmp_path: Path) -> None:
    # GIVEN the tiny configuration (6 uploads, threshold 3, 3 records per invocation)
    before = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "DATA_BUCKET", "AWS_ENDPOINT_URL")}
    # WHEN only the ingestion benchmark runs through the run_all entry point
    code = run_all.main(["--tiny", "--only", "ingestion", "--results-dir", str(tmp_path),
                         "--sample-dir", str(sample_dir)])
    doc = json.loads((tmp_path / "ingestion.json").read_text())
    # THEN every image was recorded through DynamoDB, batches were sealed with a manifest and a job run start
    assert code == 0
    assert doc["images"] == 6 and doc["threshold"] == 3
    ops = doc["calls_by_operation"]
    assert ops["dynamodb.TransactWriteItems"] >= 6
    assert ops["s3.PutObject"] == 2 and ops["emr-serverless.StartJobRun"] >= 1
    assert sum(i["failed"] for i in doc["invocations"]) == 0
    assert sum(i["records"] for i in doc["invocations"]) == doc["sqs_records"]
    rows = {r["metric"]: r for r in doc["summary"]}
    assert rows["AWS API calls per image (all)"]["value"] == pytest.approx(sum(ops.values()) / 6, abs=1e-3)
    # AND the README was regenerated next to the results (a partial run writes no run.json), env restored
    assert not (tmp_path / "run.json").exists() and "Ingestion cost" in (tmp_path / "README.md").read_text()
    assert {k: os.environ.get(k) for k in before} == before


@pytest.mark.slow
def test_tf_arms_on_real_resnet50(sample_dir: Path) -> None:
    from bench import tf_arms
    from bench.common import pick_images

    # GIVEN the job's ResNet50 at 32x32 and 4 real images
    paths = pick_images(sample_dir, "Test", 1)[:4]
    model = tf_arms.build_resnet50(32, seed=0)
    x = tf_arms.decode_batch(paths, 32)
    # THEN the preprocessed batch has the model's input shape
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32
    # WHEN the ceiling and seed-style arms run
    ceiling = tf_arms.ceiling_arm(model, x, batch_size=2)
    seed = tf_arms.seed_arm(model, paths[:2], 32)
    # THEN they report the images processed and a positive rate
    assert ceiling["images"] == 4 and ceiling["batch_size"] == 2 and ceiling["images_per_s"] > 0
    assert seed["images"] == 2 and seed["images_per_s"] > 0
    # WHEN the bf16 arm runs THEN it reports its policy and restores the global float32 policy
    import keras

    bf16 = tf_arms.bf16_arm(x[:2], 32, batch_size=2)
    assert bf16["policy"] == "mixed_bfloat16" and bf16["images"] == 2
    assert keras.mixed_precision.global_policy().name == "float32"

