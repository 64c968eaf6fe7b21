"""The Spark job on real photos (fast projection featurizer): two batches, re-run, PCA exactness, reader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from spark_jobs.lakehouse import reports as lake_io
from spark_jobs.main import main
from spark_jobs.pca import versions as pca
from spark_jobs.pca.stats import SufficientStats

from .conftest import FAST_WEIGHTS, copy_subset, write_manifest

K = 8
MODEL_ID = "projection7-224"
CLASSES = ["Apple Braeburn", "Banana", "Kiwi", "Lemon", "Pear", "Strawberry"]


def run_job(manifest: str, lake: str, batch_id: str) -> int:
    return main(["--manifest", manifest, "--lake", lake, "--batch-id", batch_id, "--weights", FAST_WEIGHTS,
                 "--pca-k", str(K), "--infer-batch-size", "8"])


def stored_features(spark, lake: str) -> np.ndarray:
    rows = lake_io.read_features(spark, lake).orderBy("image_uri").select("features").collect()
    return np.array([r.features for r in rows], dtype=np.float64)


@pytest.fixture(scope="module")
def two_batches(spark, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Batch b000001 (12 photos) then b000002 (10 other photos); b000001's files are deleted before b000002."""
    root = tmp_path_factory.mktemp("two_batches")
    lake = str(root / "lake")
    first = copy_subset(sample_dir, root / "in1", CLASSES, per_class=2)
    second = copy_subset(sample_dir, root / "in2", CLASSES[:5], per_class=2, offset=5)
    m1 = write_manifest(root / "b000001.jsonl", first)
    m2 = write_manifest(root / "b000002.jsonl", second)
    assert run_job(m1, lake, "b000001") == 0
    batch1_rows = lake_io.read_features(spark, lake, ["b000001"]).select("image_uri", "ingested_at").collect()
    shutil.rmtree(root / "in1")  # the second job can only succeed without rejects if it never reads these
    assert run_job(m2, lake, "b000002") == 0
    return {"lake": lake, "first": first, "second": second, "m2": m2, "batch1_rows": batch1_rows}


def test_second_batch_reads_only_its_own_images(spark, two_batches) -> None:
    # GIVEN batch 1 featurized and its image files deleted
    lake = two_batches["lake"]
    # WHEN batch 2 ran (fixture)
    report = lake_io.read_report(lake, "b000002")
    # THEN it listed and featurized exactly its own 10 images, with no reject for a missing batch-1 file
    assert report["counts"] == {"listed": 10, "featurized": 10, "rejected": 0}
    # AND batch 1's partition was not rewritten (same rows, same ingestion timestamps)
    after = lake_io.read_features(spark, lake, ["b000001"]).select("image_uri", "ingested_at").collect()
    assert sorted(after) == sorted(two_batches["batch1_rows"])
    assert report["pca_version"] == 2 and report["n_total"] == 22 and report["model_id"] == MODEL_ID
    assert set(report["seconds"]) >= {"featurize", "merge_statistics", "pca_fit", "write_features"}


def test_lake_holds_each_image_once_with_the_contract_columns(spark, two_batches) -> None:
    # GIVEN both batches WHEN the features table is read
    df = lake_io.read_features(spark, two_batches["lake"])
    rows = df.collect()
    # THEN every image is there exactly once, in its batch partition
    uris = [r.image_uri for r in rows]
    expected = {str(p) for p in two_batches["first"] + two_batches["second"]}
    assert len(uris) == len(set(uris)) == 22 and set(uris) == expected
    assert {r.batch_id for r in rows if r.image_uri in {str(p) for p in two_batches["second"]}} == {"b000002"}
    # AND rows follow the contract: label = folder, 2048 features, k pca coordinates, sha256, original size
    for r in rows:
        assert r.label == Path(r.image_uri).parent.name
        assert len(r.features) == 2048 and len(r.pca) == K
        assert len(r.content_sha256) == 64 and (r.width, r.height) == (100, 100)
        assert r.model_id == MODEL_ID and r.ingested_at is not None
    assert dict(df.dtypes)["pca_version"] == "int"


def test_parquet_files_on_disk_have_the_contract_types(two_batches) -> None:
    # GIVEN the features table's Parquet data files as written (read with pyarrow, no schema imposed by the reader)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spark_jobs.lakehouse import tables

    lake = Path(two_batches["lake"])
    data_files = tables.Lake.at(str(lake)).table(tables.FEATURES).inspect.data_files().column("file_path")
    paths = [Path(uri.removeprefix("file://")) for uri in data_files.to_pylist()]
    assert paths and all(path.is_relative_to(lake / "features" / "data") for path in paths)
    # WHEN their schema is read  THEN columns and types are those of the contract (docs/contracts.md)
    schema = pq.read_schema(paths[0])
    expected = {
        "image_uri": pa.string(), "label": pa.string(), "content_sha256": pa.string(),
        "width": pa.int32(), "height": pa.int32(), "features": pa.list_(pa.float32()),
        "pca": pa.list_(pa.float32()), "pca_version": pa.int32(), "model_id": pa.string(),
        "ingested_at": pa.timestamp("us", tz="UTC"), "batch_id": pa.string(),
        "event_time": pa.timestamp("us", tz="UTC"), "sequencer": pa.string(),
        "version_id": pa.string(), "last_modified": pa.timestamp("us", tz="UTC"),
    }
    assert schema.names == list(expected)  # Iceberg keeps partition source columns in the data files
    # PyIceberg writes Arrow's large_string / large_list: the same Parquet logical types (UTF8 BYTE_ARRAY, LIST)
    large = {pa.large_string(): pa.string()}
    for name, type_ in expected.items():
        actual = schema.field(name).type
        actual = large.get(actual, actual)
        if pa.types.is_list(actual) or pa.types.is_large_list(actual):  # element nullability varies: compare types
            assert pa.types.is_list(type_) and actual.value_type == type_.value_type, name
        else:
            assert actual == type_, name


def test_pca_state_equals_batch_pca_on_all_stored_features(spark, two_batches) -> None:
    # GIVEN the lake after both batches, and numpy batch PCA on every stored feature vector
    lake = two_batches["lake"]
    x = stored_features(spark, lake)
    version = pca.load_version(lake, MODEL_ID)
    # WHEN compared with the incremental state
    cov = np.cov(x.T)
    # THEN mean and covariance agree to 1e-9 relative, and components up to sign
    assert version.state.n == x.shape[0] == 22
    np.testing.assert_allclose(version.state.mean, x.mean(axis=0), rtol=1e-9, atol=1e-9 * np.abs(x.mean(0)).max())
    np.testing.assert_allclose(version.state.covariance(), cov, rtol=1e-9, atol=1e-9 * np.abs(cov).max())
    # batch PCA by SVD of the centred data (as scikit-learn does): eigenvalues s^2 / (n - 1), components Vt
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    w = s**2 / (x.shape[0] - 1)
    distinct = [i for i in range(K) if min(w[i] - w[i + 1], w[i - 1] - w[i] if i else np.inf) > 1e-6 * w[0]]
    assert len(distinct) >= K // 2  # the sign check below really compares components
    for i in distinct:
        assert abs(float(version.fit.components[i] @ vt[i])) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(version.fit.explained_variance_ratio, w[:K] / np.trace(cov), rtol=1e-8)
    report = lake_io.read_report(lake, "b000002")
    assert report["explained_variance_ratio"] == pytest.approx(list(version.fit.explained_variance_ratio))


def test_read_projected_uses_the_latest_version_for_every_batch(spark, two_batches) -> None:
    # GIVEN batch 1 stored with version 1 coordinates, batch 2 with version 2
    lake = two_batches["lake"]
    stored = {r.image_uri: r for r in lake_io.read_features(spark, lake).collect()}
    assert {r.pca_version for r in stored.values()} == {1, 2}
    # WHEN read through the projecting reader
    latest = pca.load_version(lake, MODEL_ID)
    rows = lake_io.read_projected(spark, lake).collect()
    # THEN every row carries the latest version's coordinates of its stored features
    assert len(rows) == 22
    for r in rows:
        assert r.pca_version == latest.version
        expected = latest.fit.components @ (np.asarray(r.features, dtype=np.float64) - latest.mean)
        np.testing.assert_allclose(r.pca, expected, rtol=1e-5, atol=1e-4)
    assert len(lake_io.read_projected(spark, lake, batch_ids=["b000002"], model_id=MODEL_ID).collect()) == 10


def test_rerun_of_a_batch_duplicates_nothing_and_keeps_the_state(spark, two_batches) -> None:
    # GIVEN the state after both batches
    lake = two_batches["lake"]
    before = pca.load_version(lake, MODEL_ID)
    # WHEN batch 2 is run again with the same manifest
    assert run_job(two_batches["m2"], lake, "b000002") == 0
    # THEN the lake still holds each image once and the state counts batch 2 once (same as before)
    uris = [r.image_uri for r in lake_io.read_features(spark, lake).select("image_uri").collect()]
    assert len(uris) == len(set(uris)) == 22
    after = pca.load_version(lake, MODEL_ID)
    assert after.version == before.version + 1 and after.state.n == 22
    np.testing.assert_allclose(after.state.mean, before.state.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(after.state.m2, before.state.m2, rtol=1e-9, atol=1e-9 * np.abs(before.state.m2).max())
    meta = pca.read_metadata(lake, MODEL_ID, after.version)  # the old rows of b000002 downdated, the new merged
    assert (meta["batch_id"], meta["parent"], meta["removed"], meta["added"]) == ("b000002", before.version, 10, 10)
    assert lake_io.read_report(lake, "b000002")["pca_version"] == after.version


def test_bad_arguments_and_missing_manifest_give_non_zero_exit(two_batches, tmp_path) -> None:
    # GIVEN a bad batch id / a manifest that does not exist
    # WHEN the job is started  THEN it exits 2 (arguments) or 1 (failure), and writes no report
    lake = two_batches["lake"]
    assert main(["--manifest", "x", "--lake", lake, "--batch-id", "../evil"]) == 2
    assert main(["--manifest", str(tmp_path / "none.jsonl"), "--lake", lake, "--batch-id", "b9",
                 "--weights", FAST_WEIGHTS]) == 1
    with pytest.raises(FileNotFoundError):
        lake_io.read_report(lake, "b9")


def test_state_matches_sufficient_statistics_of_the_stored_float32_values(spark, two_batches) -> None:
    # GIVEN the stored (float32) features  WHEN their statistics are recomputed in one pass
    x = stored_features(spark, two_batches["lake"])
    whole = SufficientStats.from_array(x)
    state = pca.load_version(two_batches["lake"], MODEL_ID).state
    # THEN the scatter matrix agrees to 1e-9 relative
    np.testing.assert_allclose(state.m2, whole.m2, rtol=1e-9, atol=1e-9 * np.abs(whole.m2).max())
