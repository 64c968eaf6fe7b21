"""A batch of corrupt and odd files finishes; bad files land in rejects/ with their reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spark_jobs.lakehouse import reports as lake_io
from spark_jobs.main import main
from spark_jobs.pca import versions as pca

from .conftest import FAST_WEIGHTS, copy_subset, write_manifest

K = 16


def test_corrupt_batch_finishes_with_rejects_and_padded_pca(spark, sample_dir: Path, odd_files, tmp_path) -> None:
    # GIVEN a manifest mixing 3 real photos, odd-but-valid files, corrupt files and a missing file
    real = copy_subset(sample_dir, tmp_path / "in", ["Cocos"], per_class=3)
    missing = tmp_path / "in" / "Cocos" / "gone.jpg"
    manifest = write_manifest(tmp_path / "odd.jsonl", [*real, *odd_files.values(), missing])
    lake = str(tmp_path / "lake")
    # WHEN the job runs
    code = main(["--manifest", manifest, "--lake", lake, "--batch-id", "b000003-odd", "--weights", FAST_WEIGHTS,
                 "--pca-k", str(K)])
    # THEN it succeeds, and each bad file is rejected once with its reason
    assert code == 0
    rejects = {Path(r.image_uri).name: r.reason for r in lake_io.read_rejects(spark, lake).collect()}
    assert rejects == {"truncated.jpg": "truncated", "empty.jpg": "empty", "text.jpg": "not_an_image",
                       "bomb.png": "too_large", "gone.jpg": "unreadable"}
    # AND every other file is featurized (RGBA, CMYK, grayscale, palette, 16-bit, 4032x3024, EXIF-rotated)
    rows = lake_io.read_features(spark, lake).collect()
    featurized = {Path(r.image_uri).name: r for r in rows}
    assert set(featurized) == {p.name for p in real} | {
        "rgba.png", "cmyk.jpg", "gray.jpg", "palette.png", "gray16.png", "big_4032x3024.jpg", "rotated_exif6.jpg"}
    assert (featurized["big_4032x3024.jpg"].width, featurized["big_4032x3024.jpg"].height) == (4032, 3024)
    assert (featurized["rotated_exif6.jpg"].width, featurized["rotated_exif6.jpg"].height) == (3024, 4032)
    report = lake_io.read_report(lake, "b000003-odd")
    assert report["counts"] == {"listed": 15, "featurized": 10, "rejected": 5}
    assert report["rejected_by_reason"] == {"empty": 1, "not_an_image": 1, "too_large": 1, "truncated": 1,
                                            "unreadable": 1}
    # AND with 10 images only n - 1 = 9 of the k = 16 components are meaningful: the rest are zero padding
    assert report["pca_k_effective"] == 9 and len(report["explained_variance_ratio"]) == K
    assert all(v == 0.0 for v in report["explained_variance_ratio"][9:])
    for r in rows:
        assert len(r.pca) == K and np.all(np.asarray(r.pca[9:]) == 0.0)
    assert pca.load_version(lake, report["model_id"]).state.n == 10
