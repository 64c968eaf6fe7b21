"""Erasure (GDPR): rows leave every table, the PCA is downdated exactly, a killed erasure rolls forward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fruits.cli import main as cli_main
from fruits.lake_maintenance import expire_snapshots
from spark_jobs.job import JobConfig, run_batch
from spark_jobs.lakehouse import erasure, tables
from spark_jobs.pca import versions as pca
from spark_jobs.pca.stats import SufficientStats

from .conftest import FAST_WEIGHTS, copy_subset, write_manifest

K = 8
CLASSES = ["Apricot", "Banana", "Cocos", "Kiwi", "Lemon"]


class Killed(RuntimeError):
    """Stands for the process dying at that point."""


@pytest.fixture(scope="module")
def photos(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """50 real photos in two manifests (30 + 20) and one corrupt file (a rejects row)."""
    root = tmp_path_factory.mktemp("erasure")
    images = copy_subset(sample_dir, root / "img", CLASSES, per_class=10)
    (root / "bad.jpg").write_bytes(b"not an image")
    return {
        "images": images,
        "bad": root / "bad.jpg",
        "m1": write_manifest(root / "m1.jsonl", images[:30]),
        "m2": write_manifest(root / "m2.jsonl", [*images[30:], root / "bad.jpg"]),
    }


def featurized_lake(spark, photos: dict[str, object], lake: Path) -> str:
    """A lake with the 50 photos featurized in two batches; returns the model id."""
    for batch_id, manifest in (("b000001-aaaaaaaa", photos["m1"]), ("b000002-bbbbbbbb", photos["m2"])):
        report = run_batch(spark, JobConfig(manifest, str(lake), batch_id, FAST_WEIGHTS, K, 224, 8))
    return report["model_id"]


def current_rows(lake: Path, model_id: str):
    return tables.scan(tables.Lake.at(str(lake)), tables.FEATURES, model_id=model_id)


def assert_pca_is_batch_pca_of_rows(lake: Path, model_id: str, rtol: float = 1e-6) -> None:
    """Committed state and fit equal a batch PCA over the model's current rows (relative ``rtol``)."""
    rows = current_rows(lake, model_id)
    x = np.stack(rows.column("features").to_numpy(zero_copy_only=False)).astype(np.float64)
    expected = SufficientStats.from_array(x)
    committed = pca.load_version(str(lake), model_id)
    assert committed.state.n == expected.n == rows.num_rows
    np.testing.assert_allclose(committed.state.mean, expected.mean, rtol=rtol, atol=rtol * np.abs(expected.mean).max())
    np.testing.assert_allclose(committed.state.m2, expected.m2, rtol=rtol, atol=rtol * np.abs(expected.m2).max())
    refit = pca.fit_pca(expected, K)
    np.testing.assert_allclose(committed.fit.explained_variance, refit.explained_variance, rtol=rtol)


def test_erasing_5_of_50_leaves_45_rows_an_exact_pca_and_after_expiry_no_file_holds_them(
    spark, photos, tmp_path: Path
) -> None:
    # GIVEN 50 photos featurized in two batches and one corrupt file in rejects
    lake = tmp_path / "lake"
    model_id = featurized_lake(spark, photos, lake)
    before = pca.load_version(str(lake), model_id).version
    erased = [str(p) for p in photos["images"][27:32]] + [str(photos["bad"])]  # rows of both batches + a reject
    # WHEN the 5 images and the corrupt file are erased
    report = erasure.erase_images(str(lake), erased)
    # THEN 45 rows remain, none of the erased URIs, and the PCA is a new version equal to a batch PCA of the 45
    rows = current_rows(lake, model_id)
    assert rows.num_rows == 45 and not set(erased) & set(rows.column("image_uri").to_pylist())
    assert [(m.model_id, m.rows, m.pca_version, m.n_total) for m in report.models] == [(model_id, 5, before + 1, 45)]
    assert report.rejects_deleted == 1
    assert_pca_is_batch_pca_of_rows(lake, model_id)
    meta = pca.read_metadata(str(lake), model_id, before + 1)
    assert (meta["kind"], meta["parent"], meta["erased"]) == (
        "erase", before, {"b000001-aaaaaaaa": 3, "b000002-bbbbbbbb": 2})
    # WHEN old snapshots expire (retention 0 days)
    lake_tables = tables.Lake.at(str(lake))
    expire_snapshots(lake_tables, retention_days=0)
    # THEN no data file on storage holds an erased URI any more
    for name in (tables.FEATURES, tables.REJECTS):
        data_dir = Path(lake_tables.table(name, create=False).location().removeprefix("file://")) / "data"
        files = list(data_dir.rglob("*.parquet"))
        assert files or name == tables.REJECTS  # the one rejects row was erased: its table may hold no file
        for file in files:
            assert not set(erased) & set(pq.ParquetFile(file).read(columns=["image_uri"]).column(0).to_pylist()), file


def test_a_batch_rerun_after_an_erasure_keeps_the_pca_exact(spark, photos, tmp_path: Path) -> None:
    # GIVEN an erasure of 2 rows of batch 1, then batch 1 re-run from a manifest without them
    lake = tmp_path / "lake"
    model_id = featurized_lake(spark, photos, lake)
    gone = [str(p) for p in photos["images"][:2]]
    erasure.erase_images(str(lake), gone)
    manifest = write_manifest(tmp_path / "m1b.jsonl", photos["images"][2:30])
    # WHEN batch 1 is re-run (its rows and its PCA contribution are replaced whole)
    run_batch(spark, JobConfig(manifest, str(lake), "b000001-aaaaaaaa", FAST_WEIGHTS, K, 224, 8))
    # THEN the PCA equals a batch PCA over the 48 current rows (the erase entries of batch 1 left with it)
    assert current_rows(lake, model_id).num_rows == 48
    assert_pca_is_batch_pca_of_rows(lake, model_id)


def test_an_erasure_killed_after_its_pca_version_rolls_forward_once(
    spark, photos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an erasure that dies after committing its PCA version, before deleting the rows
    lake = tmp_path / "lake"
    model_id = featurized_lake(spark, photos, lake)
    erased = [str(p) for p in photos["images"][10:13]]
    original = erasure._delete_rows

    def dying(*args, **kwargs):
        raise Killed("killed between the PCA version and the delete")

    monkeypatch.setattr(erasure, "_delete_rows", dying)
    with pytest.raises(Killed):
        erasure.erase_images(str(lake), erased, erasure_id="e-killed")
    monkeypatch.setattr(erasure, "_delete_rows", original)
    assert current_rows(lake, model_id).num_rows == 50  # the rows are still there, the PCA already excludes them
    # WHEN the same erasure is requested again
    report = erasure.erase_images(str(lake), erased)
    # THEN the pending one is completed first (rows deleted), the retry finds nothing more to downdate
    assert report.models == []
    assert current_rows(lake, model_id).num_rows == 47
    assert_pca_is_batch_pca_of_rows(lake, model_id)
    # AND a later batch commit sees nothing pending
    assert erasure.complete_pending(tables.Lake.at(str(lake)), str(lake), model_id) is None


def test_fruits_erase_by_prefix_and_a_request_with_nothing_selected(
    spark, photos, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a featurized lake
    lake = tmp_path / "lake"
    model_id = featurized_lake(spark, photos, lake)
    kiwi = str(next(p for p in photos["images"] if p.parent.name == "Kiwi").parent) + "/"
    # WHEN `fruits erase --prefix <Kiwi folder>` runs
    assert cli_main.main(["erase", "--prefix", kiwi, "--lake", str(lake)]) == 0
    # THEN the 10 Kiwi rows are gone and the output names the model and the new PCA version
    out = capsys.readouterr().out
    assert f"{model_id}: 10 feature row(s) erased; PCA version" in out
    assert current_rows(lake, model_id).num_rows == 40
    assert_pca_is_batch_pca_of_rows(lake, model_id)
    # WHEN nothing is selected  THEN a one-line error and a non-zero exit code
    assert cli_main.main(["erase", "--lake", str(lake)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("fruits erase: error: nothing to erase") and err.count("\n") == 1


def test_a_batch_applies_the_erasure_list_beside_its_manifest_after_its_commit(spark, photos, tmp_path: Path) -> None:
    # GIVEN batch 1 featurized, then batch 2's manifest with an erasure list naming 2 images of batch 1, 1 of its own
    lake = tmp_path / "lake"
    first = run_batch(spark, JobConfig(photos["m1"], str(lake), "b000001-aaaaaaaa", FAST_WEIGHTS, K, 224, 8))
    model_id = first["model_id"]
    erased = [str(p) for p in (photos["images"][0], photos["images"][1], photos["images"][40])]
    manifest = tmp_path / "b000002-bbbbbbbb.jsonl"
    manifest.write_bytes(Path(photos["m2"]).read_bytes())
    lines = "".join(f'{{"image_uri": "{uri}", "sequencer": null, "reason": "deleted"}}\n' for uri in erased)
    (tmp_path / "b000002-bbbbbbbb.erase.jsonl").write_text(lines)
    # WHEN batch 2 runs
    report = run_batch(spark, JobConfig(str(manifest), str(lake), "b000002-bbbbbbbb", FAST_WEIGHTS, K, 224, 8))
    # THEN its own rows were committed, then the 3 images erased from the table and the PCA
    rows = current_rows(lake, model_id)
    assert rows.num_rows == 47 and not set(erased) & set(rows.column("image_uri").to_pylist())
    assert report["erased"]["requested"] == 3 and report["erased"]["rows"] == 3
    assert_pca_is_batch_pca_of_rows(lake, model_id)


def test_an_overwritten_photo_keeps_one_row_with_the_new_content_and_an_exact_pca(
    spark, photos, tmp_path: Path
) -> None:
    # GIVEN key K featurized with content A in batch 1 (with 9 other photos)
    import hashlib
    import shutil

    lake = tmp_path / "lake"
    key = tmp_path / "upload" / "Kiwi" / "K.jpg"
    key.parent.mkdir(parents=True)
    content_a, content_b = photos["images"][0], photos["images"][45]
    shutil.copyfile(content_a, key)
    others = photos["images"][1:10]
    first = run_batch(spark, JobConfig(write_manifest(tmp_path / "b1.jsonl", [key, *others]), str(lake),
                                       "b000001-aaaaaaaa", FAST_WEIGHTS, K, 224, 8))
    model_id = first["model_id"]
    # WHEN K is overwritten with content B and featurized in batch 2
    shutil.copyfile(content_b, key)
    second = run_batch(spark, JobConfig(write_manifest(tmp_path / "b2.jsonl", [key]), str(lake),
                                        "b000002-bbbbbbbb", FAST_WEIGHTS, K, 224, 8))
    # THEN K has one row, with B's sha256, from batch 2; the PCA equals a batch PCA over the current 10 rows
    rows = current_rows(lake, model_id).to_pylist()
    mine = [r for r in rows if r["image_uri"] == str(key)]
    assert len(rows) == 10 and len(mine) == 1
    assert mine[0]["content_sha256"] == hashlib.sha256(content_b.read_bytes()).hexdigest()
    assert mine[0]["batch_id"] == "b000002-bbbbbbbb" and second["superseded"]["rows"] == 1
    assert_pca_is_batch_pca_of_rows(lake, model_id)


def test_a_batch_of_zero_images_applies_its_erasures_only(spark, photos, tmp_path: Path) -> None:
    # GIVEN batch 1 featurized, then a sealed batch with an empty manifest that carries 2 erasures
    lake = tmp_path / "lake"
    first = run_batch(spark, JobConfig(photos["m1"], str(lake), "b000001-aaaaaaaa", FAST_WEIGHTS, K, 224, 8))
    model_id = first["model_id"]
    erased = [str(p) for p in photos["images"][3:5]]
    manifest = tmp_path / "b000002-cccccccc.jsonl"
    manifest.write_text("")
    lines = "".join(f'{{"image_uri": "{uri}", "sequencer": "0A", "reason": "deleted"}}\n' for uri in erased)
    (tmp_path / "b000002-cccccccc.erase.jsonl").write_text(lines)
    # WHEN that batch runs
    report = run_batch(spark, JobConfig(str(manifest), str(lake), "b000002-cccccccc", FAST_WEIGHTS, K, 224, 8))
    # THEN it featurized nothing, erased the 2 images, and the PCA is exact over the 28 rows left
    assert report["counts"] == {"listed": 0, "featurized": 0, "rejected": 0}
    assert report["erased"]["rows"] == 2 and current_rows(lake, model_id).num_rows == 28
    assert_pca_is_batch_pca_of_rows(lake, model_id)
