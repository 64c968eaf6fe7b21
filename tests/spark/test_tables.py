"""The lake's Iceberg tables: one atomic commit per batch run, kills at every step, models side by side, Glue."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from spark_jobs import job
from spark_jobs.job import JobConfig, run_batch
from spark_jobs.lakehouse import tables
from spark_jobs.pca import versions as pca
from spark_jobs.pca.stats import SufficientStats

from .conftest import FAST_WEIGHTS, copy_subset, write_manifest

K = 6
CLASSES = ["Banana", "Kiwi", "Lemon"]


class Killed(RuntimeError):
    """Stands for the job process dying at that point."""


@pytest.fixture(scope="module")
def manifests(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two small batches of real photos (6 + 6) and a manifest with one corrupt file (for rejects)."""
    root = tmp_path_factory.mktemp("tables")
    first = copy_subset(sample_dir, root / "a", CLASSES, per_class=2)
    second = copy_subset(sample_dir, root / "b", CLASSES, per_class=2, offset=4)
    (root / "bad.jpg").write_bytes(b"not an image")
    return {
        "b1": write_manifest(root / "b1.jsonl", first),
        "b2": write_manifest(root / "b2.jsonl", [*second, root / "bad.jpg"]),
    }


def config(manifest: str, lake: Path, batch_id: str, weights: str = FAST_WEIGHTS) -> JobConfig:
    return JobConfig(manifest, str(lake), batch_id, weights, K, 224, 8)


def features(lake: Path, model_id: str | None = None) -> pa.Table:
    return tables.scan(tables.Lake.at(str(lake)), tables.FEATURES, model_id=model_id)


def assert_pca_matches_table(lake: Path, model_id: str) -> None:
    """The committed PCA state equals the statistics of the model's current feature rows (batch PCA)."""
    rows = features(lake, model_id)
    x = np.stack(rows.column("features").to_numpy(zero_copy_only=False)).astype(np.float64)
    expected = SufficientStats.from_array(x)
    state = pca.load_version(str(lake), model_id).state
    assert state.n == expected.n
    np.testing.assert_allclose(state.mean, expected.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state.m2, expected.m2, rtol=1e-9, atol=1e-9 * np.abs(expected.m2).max())


@pytest.mark.parametrize("step", ["write_rejects", "pca_commit", "write_features", "write_batch_row"])
def test_a_job_killed_at_any_step_then_rerun_leaves_one_copy_and_an_exact_pca(
    spark, manifests, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    # GIVEN batch b1 committed, then batch b2 killed at `step`
    lake = tmp_path / "lake"
    run_batch(spark, config(manifests["b1"], lake, "b1"))
    replace = tables.replace_batch_rows
    table_of = {"write_rejects": tables.REJECTS, "write_features": tables.FEATURES, "write_batch_row": tables.BATCHES}

    def dying_replace(target, name, *args, **kwargs):
        if table_of.get(step) == name:
            raise Killed(step)
        return replace(target, name, *args, **kwargs)

    def dying_commit(*args, **kwargs):
        raise Killed(step)

    with monkeypatch.context() as patch:
        patch.setattr(tables, "replace_batch_rows", dying_replace)
        if step == "pca_commit":
            patch.setattr(job, "commit_version", dying_commit)
        with pytest.raises(Killed):
            run_batch(spark, config(manifests["b2"], lake, "b2"))
    # WHEN b2 is re-run to completion
    report = run_batch(spark, config(manifests["b2"], lake, "b2"))
    # THEN every image is in the table exactly once, the reject once, one batches row per batch
    rows = features(lake)
    uris = rows.column("image_uri").to_pylist()
    assert len(uris) == len(set(uris)) == 12
    rejects = tables.scan(tables.Lake.at(str(lake)), tables.REJECTS).column("image_uri").to_pylist()
    assert len(rejects) == 1 and rejects[0].endswith("bad.jpg")
    assert sorted(tables.scan(tables.Lake.at(str(lake)), tables.BATCHES).column("batch_id").to_pylist()) == ["b1", "b2"]
    # AND the committed PCA state is the batch PCA of the table's current rows of the model
    assert_pca_matches_table(lake, report["model_id"])
    b2_versions = {v for v, b in zip(rows.column("pca_version").to_pylist(), rows.column("batch_id").to_pylist(),
                                     strict=True) if b == "b2"}
    assert b2_versions == {report["pca_version"]}


def test_a_batch_run_is_one_commit_with_its_pca_version_in_the_snapshot_summary(spark, manifests, tmp_path) -> None:
    # GIVEN an empty lake  WHEN one batch runs
    lake = tmp_path / "lake"
    report = run_batch(spark, config(manifests["b2"], lake, "b2"))
    table = tables.Lake.at(str(lake)).table(tables.FEATURES)
    # THEN the features table has one snapshot whose summary names the batch, the model and the PCA version
    (snapshot,) = table.snapshots()
    summary = snapshot.summary.additional_properties
    assert summary["fruits.batch_id"] == "b2" and summary["fruits.model_id"] == report["model_id"]
    assert summary["fruits.pca_version"] == str(report["pca_version"])
    # AND its 6 rows are in one data file, partitioned by model and month
    assert len(table.inspect.data_files()) == 1
    assert [f.name for f in table.spec().fields] == ["model_id", "ingested_month"]


def test_models_side_by_side_keep_their_rows_and_pca_states(spark, manifests, tmp_path) -> None:
    # GIVEN both batches featurized by model A
    lake = tmp_path / "lake"
    first = run_batch(spark, config(manifests["b1"], lake, "b1"))
    run_batch(spark, config(manifests["b2"], lake, "b2"))
    state_a = pca.load_version(str(lake), first["model_id"])
    # WHEN batch b1 is featurized again with other weights (model B)
    other = run_batch(spark, config(manifests["b1"], lake, "b1", weights="projection:8"))
    # THEN B's rows are added, A's rows, PCA state and versions are untouched
    assert other["model_id"] != first["model_id"]
    assert features(lake, first["model_id"]).num_rows == 12
    assert features(lake, other["model_id"]).num_rows == 6
    after_a = pca.load_version(str(lake), first["model_id"])
    assert after_a.version == state_a.version == 2
    np.testing.assert_array_equal(after_a.state.m2, state_a.state.m2)
    assert_pca_matches_table(lake, first["model_id"])
    assert_pca_matches_table(lake, other["model_id"])
    # AND re-running b1 for model A replaces exactly the rows of (b1, A)
    run_batch(spark, config(manifests["b1"], lake, "b1"))
    assert features(lake, first["model_id"]).num_rows == 12 and features(lake, other["model_id"]).num_rows == 6
    assert_pca_matches_table(lake, first["model_id"])


def test_glue_catalog_under_moto_holds_the_tables_under_the_lake_prefix(aws_credentials, tmp_path) -> None:
    # GIVEN moto's Glue with the database CDK creates
    import boto3
    from moto import mock_aws
    from pyiceberg.catalog.glue import GlueCatalog

    with mock_aws():
        tables.reset_catalogs()
        boto3.client("glue").create_database(DatabaseInput={"Name": tables.NAMESPACE})
        lake = tables.Lake.at(str(tmp_path / "lake"), "glue")
        n = 4
        rows = pa.table({
            "image_uri": [f"s3://b/images/x/{i}.jpg" for i in range(n)], "label": ["x"] * n,
            "content_sha256": ["0" * 64] * n, "width": pa.array([100] * n, pa.int32()),
            "height": pa.array([100] * n, pa.int32()), "features": [np.full(8, i, np.float32) for i in range(n)],
            "pca": [np.zeros(2, np.float32)] * n, "pca_version": pa.array([1] * n, pa.int32()),
            "model_id": ["m"] * n, "ingested_at": pa.array([dt.datetime.now(dt.UTC)] * n, pa.timestamp("us", tz="UTC")),
            "batch_id": ["b1"] * n,
        })
        # WHEN a batch run is committed twice (a re-run)
        tables.replace_batch_rows(lake, tables.FEATURES, rows, batch_id="b1", model_id="m")
        tables.replace_batch_rows(lake, tables.FEATURES, rows, batch_id="b1", model_id="m")
        # THEN the table exists in fruits_lake with its metadata under <lake>/features/, and a plain PyIceberg
        # scan (no project code) returns every row once
        glue_table = boto3.client("glue").get_table(DatabaseName=tables.NAMESPACE, Name="features")["Table"]
        assert glue_table["Parameters"]["table_type"] == "ICEBERG"
        metadata = str(tmp_path / "lake" / "features" / "metadata")
        assert glue_table["Parameters"]["metadata_location"].startswith(metadata)
        plain = GlueCatalog("any").load_table((tables.NAMESPACE, "features")).scan().to_arrow()
        assert sorted(plain.column("image_uri").to_pylist()) == sorted(rows.column("image_uri").to_pylist())
        tables.reset_catalogs()


def test_bad_catalog_settings_are_refused() -> None:
    for bad in ("hive", "sql:", "", "rest:http://x"):
        with pytest.raises(tables.CatalogSpecError):
            tables.parse_catalog(bad)
    assert tables.parse_catalog("glue").describe() == "glue:fruits_lake"
    with pytest.raises(tables.CatalogSpecError, match="on S3"):
        tables.default_catalog("s3://bucket/lake")
