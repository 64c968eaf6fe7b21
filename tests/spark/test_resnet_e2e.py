"""The real ResNet50 architecture end to end, through the job and through `fruits featurize`.

ImageNet weights cannot download here: the job falls back loudly to random:0. Both tests use the same
model, so the second reuses the networks already built in the Spark Python workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spark_jobs.featurize.images import decode_image
from spark_jobs.featurize.models import ModelSpec, get_featurizer
from spark_jobs.lakehouse import reports as lake_io
from spark_jobs.main import main

from .conftest import copy_subset, write_manifest
from .test_cli_featurize import parser


@pytest.mark.slow
def test_resnet50_end_to_end_on_real_photos(spark, sample_dir: Path, odd_files, tmp_path, capfd) -> None:
    # GIVEN 4 real Fruits-360 photos, a 4032x3024 phone photo and a truncated JPEG
    images = [*copy_subset(sample_dir, tmp_path / "in", ["Mango", "Raspberry"], per_class=2),
              odd_files["big"], odd_files["truncated"]]
    manifest = write_manifest(tmp_path / "m.jsonl", images)
    lake = str(tmp_path / "lake")
    # WHEN the job runs with --weights imagenet (offline here: Keras cannot download the file)
    code = main(["--manifest", manifest, "--lake", lake, "--batch-id", "b000001", "--pca-k", "4",
                 "--infer-batch-size", "4"])
    # THEN it succeeds and the weights actually used are recorded in model_id (and the fallback announced)
    assert code == 0
    report = lake_io.read_report(lake, "b000001")
    if report["weights_fallback"]:
        assert report["model_id"] == "resnet50-random0-224"
        assert "FALLING BACK" in capfd.readouterr().err
    else:  # a machine with network access really loads ImageNet
        assert report["model_id"] == "resnet50-imagenet-224"
    assert report["counts"] == {"listed": 6, "featurized": 5, "rejected": 1}
    # AND each image has a finite 2048-d ResNet50 feature vector (non-negative: ReLU then average pooling)
    rows = {Path(r.image_uri).name: r for r in lake_io.read_features(spark, lake).collect()}
    for r in rows.values():
        f = np.asarray(r.features)
        assert f.shape == (2048,) and np.isfinite(f).all() and f.min() >= 0 and f.std() > 0
    # AND the Spark workers computed what the same ResNet50 computes in this process (deterministic weights)
    spec = ModelSpec("imagenet" if not report["weights_fallback"] else "random", 224, 0)
    name = images[0].name
    pixels = np.frombuffer(decode_image(images[0].read_bytes()).pixels, dtype=np.uint8).reshape(1, 224, 224, 3)
    local = get_featurizer(spec)(pixels)[0]
    np.testing.assert_allclose(rows[name].features, local, rtol=1e-3, atol=1e-3 * float(np.abs(local).max()))


@pytest.mark.slow
def test_cli_featurize_folder_into_a_local_lake_with_resnet50(spark, sample_dir: Path, tmp_path, capsys) -> None:
    # GIVEN a folder of real photos
    copy_subset(sample_dir, tmp_path / "photos", ["Peach", "Plum"], per_class=3)
    lake = tmp_path / "lake"
    argv = ["featurize", "--images", str(tmp_path / "photos"), "--lake", str(lake), "--weights", "random:0",
            "--pca-k", "3", "--limit", "4"]
    # WHEN `fruits featurize` runs
    args = parser().parse_args(argv)
    assert args.func(args) == 0
    # THEN the summary is printed and the lake holds the batch (id derived from the manifest content)
    out = capsys.readouterr().out
    assert "4 featurized, 0 rejected of 4 listed" in out and "resnet50-random0-224" in out
    reports = list((lake / "batches").glob("manual-*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["counts"]["featurized"] == 4 and report["model_id"] == "resnet50-random0-224"
    from spark_jobs.lakehouse import tables

    rows = tables.scan(tables.Lake.at(str(lake)), tables.FEATURES, batch_ids=[report["batch_id"]])
    assert rows.num_rows == 4 and set(rows.column("model_id").to_pylist()) == {"resnet50-random0-224"}
