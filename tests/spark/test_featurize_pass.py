"""The one-pass featurize_batch equals the old multi-pass computation (features, rejects, statistics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from spark_jobs.featurize.images import load_images
from spark_jobs.featurize.models import FEATURE_DIM, featurize, resolve_weights
from spark_jobs.featurize.one_pass import FEATURES_ARROW_SCHEMA, REJECTS_ARROW_SCHEMA, featurize_batch
from spark_jobs.manifest import read_manifest
from spark_jobs.pca.aggregate import batch_statistics

from .conftest import FAST_WEIGHTS, copy_subset, write_manifest


def _multi_pass(manifest, spec, size: int, batch: int):
    """The pre-issue-11 computation: decode pass (persisted pixels), featurize pass, statistics pass."""
    decoded = load_images(manifest, size).cache()
    rejects = decoded.where("reason IS NOT NULL").select("image_uri", "reason").toPandas()
    features_df = featurize(decoded.where("reason IS NULL"), spec, batch).cache()
    features = features_df.toPandas()
    stats = batch_statistics(features_df, FEATURE_DIM)
    return features, rejects, stats


def test_one_pass_equals_multi_pass(spark, sample_dir: Path, odd_files, tmp_path) -> None:
    # GIVEN real photos over 3 partitions, plus odd and corrupt files and a missing one
    real = copy_subset(sample_dir, tmp_path / "in", ["Banana", "Kiwi", "Lemon"], per_class=4)
    missing = tmp_path / "in" / "gone.jpg"
    path = write_manifest(tmp_path / "m.jsonl", [*real, *odd_files.values(), missing])
    # (partitions fixed by the reader: a Spark repartition's round robin follows the columns a plan projects, so
    # the one pass, which also reads version_id, would get other chunks than the old passes, and the featurizer's
    # sgemm rounds differently with the batch size)
    manifest = read_manifest(spark, path, num_partitions=3)
    spec = resolve_weights(FAST_WEIGHTS, 64)
    # WHEN the batch is featurized in one pass (chunks of 4) and with the old three passes
    one = featurize_batch(manifest, spec, image_size=64, infer_batch_size=4, engine="tensorflow")
    old_features, old_rejects, old_stats = _multi_pass(manifest, spec, 64, 4)
    # THEN the feature rows are the same, bit for bit
    got = one.features.sort_by("image_uri")
    want = pa.Table.from_pandas(old_features, schema=FEATURES_ARROW_SCHEMA, preserve_index=False).sort_by("image_uri")
    assert got.num_rows == len(real) + 7
    assert got.drop(["features"]).equals(want.drop(["features"]))
    np.testing.assert_array_equal(np.stack(got.column("features").to_numpy(zero_copy_only=False)),
                                  np.stack(want.column("features").to_numpy(zero_copy_only=False)))
    # AND the same rejects with the same reasons
    want_rejects = pa.Table.from_pandas(old_rejects, schema=REJECTS_ARROW_SCHEMA, preserve_index=False)
    assert one.rejects.sort_by("image_uri").equals(want_rejects.sort_by("image_uri"))
    assert one.listed == len(real) + len(odd_files) + 1
    # AND the merged per-partition statistics equal the old tree-reduced ones (float64 rounding only)
    assert one.stats.n == old_stats.n == got.num_rows
    np.testing.assert_allclose(one.stats.mean, old_stats.mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(one.stats.m2, old_stats.m2, rtol=1e-10, atol=1e-10 * np.abs(old_stats.m2).max())
    # AND the stage names and the per-task metrics describe the one pass
    assert set(one.seconds) == {"featurize", "merge_statistics"}
    assert one.task["tasks"] == 3 and one.task["engine"] == "tensorflow"
    assert 0 < one.task["peak_rss_mb"] < 4096
