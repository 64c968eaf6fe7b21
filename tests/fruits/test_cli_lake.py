"""``fruits sql | compact | expire | migrate-lake`` on small synthetic lakes (PyIceberg SQLite catalog, no Spark)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fruits.cli import main as cli_main
from fruits.lake_maintenance import content_hash
from spark_jobs.lakehouse import tables
from tests.bench.lake_fixtures import separable_rows, write_batch


def lake_with_batches(root: Path, batches: int = 3) -> tables.Lake:
    rows = separable_rows()
    lake = None
    for i in range(batches):
        part = rows[i::batches]
        for j, row in enumerate(part):
            row["image_uri"] = row["image_uri"].replace(".jpg", f"-{i}-{j}.jpg")
            row["features"] = [float(i), float(j), 1.0, 2.0]
        lake = write_batch(root, f"b{i + 1}", part)
    assert lake is not None
    return lake


def test_sql_counts_the_whole_table_without_naming_batches(tmp_path: Path, capsys) -> None:
    # GIVEN a lake of 3 batches (48 rows)
    lake_with_batches(tmp_path)
    # WHEN a plain count and a group-by run  THEN they see every row
    assert cli_main.main(["sql", "SELECT count(*) AS n FROM features", "--lake", str(tmp_path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ['"n"', "48"]
    query = "SELECT label, count(*) AS n FROM features GROUP BY label ORDER BY label"
    assert cli_main.main(["sql", query, "--lake", str(tmp_path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ['"Apple Braeburn",16', '"Banana",16', '"Kiwi",16']


def test_sql_error_is_one_line(tmp_path: Path, capsys) -> None:
    lake_with_batches(tmp_path, 1)
    assert cli_main.main(["sql", "SELECT nope FROM features", "--lake", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "SQL error" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT count(*) FROM features, read_text('/etc/hostname')",
        "COPY (SELECT * FROM features) TO '{out}'",
        "ATTACH '{db}' AS other",
    ],
)
def test_sql_cannot_read_or_write_local_files_by_default(tmp_path: Path, capsys, query: str) -> None:
    # GIVEN a lake, and queries that read a local file, write one, attach a database
    lake_with_batches(tmp_path, 1)
    out, db = tmp_path / "leak.csv", tmp_path / "other.duckdb"
    # WHEN run without --allow-files
    code = cli_main.main(["sql", query.format(out=out, db=db), "--lake", str(tmp_path), "--format", "csv"])
    # THEN refused with one line naming the flag, nothing printed on stdout, no file written
    captured = capsys.readouterr()
    assert code != 0 and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "--allow-files" in captured.err
    assert not out.exists() and not db.exists()


def test_sql_cannot_turn_file_access_back_on(tmp_path: Path, capsys) -> None:
    lake_with_batches(tmp_path, 1)
    assert cli_main.main(["sql", "SET enable_external_access = true", "--lake", str(tmp_path)]) != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_sql_reads_local_files_with_allow_files(tmp_path: Path, capsys) -> None:
    # GIVEN a CSV of labels beside the lake / WHEN joined with --allow-files / THEN the file is read
    lake_with_batches(tmp_path, 1)
    (tmp_path / "labels.csv").write_text("label,family\nKiwi,berry\n")
    query = (f"SELECT l.family, count(*) AS n FROM features f JOIN read_csv('{tmp_path / 'labels.csv'}') l "
             "USING (label) GROUP BY l.family")
    assert cli_main.main(["sql", query, "--lake", str(tmp_path), "--format", "csv", "--allow-files"]) == 0
    assert capsys.readouterr().out.splitlines() == ['"family","n"', '"berry",16']


def test_compact_merges_small_files_and_keeps_every_row(tmp_path: Path, capsys) -> None:
    # GIVEN a model whose 3 batches sit in 3 data files of the same month partition
    lake = lake_with_batches(tmp_path)
    before = tables.scan(lake, tables.FEATURES)
    assert len(lake.table(tables.FEATURES).inspect.data_files()) == 3
    # WHEN compacted
    assert cli_main.main(["compact", "--model-id", "resnet50-random0-224", "--lake", str(tmp_path)]) == 0
    # THEN one data file holds the same rows (content hash equal)
    assert "3 -> 1 data files, 48 rows unchanged" in capsys.readouterr().out
    assert len(lake.table(tables.FEATURES).inspect.data_files()) == 1
    assert content_hash(tables.scan(lake, tables.FEATURES)) == content_hash(before)


def test_expire_makes_deleted_rows_disappear_from_every_data_file(tmp_path: Path, capsys) -> None:
    # GIVEN batch b1 re-run without one of its images (its old data file still referenced by an old snapshot)
    lake = lake_with_batches(tmp_path, 2)
    b1 = [r for r in tables.scan(lake, tables.FEATURES, batch_ids=["b1"]).to_pylist()]
    gone = b1[0]["image_uri"]
    kept = pa.Table.from_pylist(b1[1:], schema=tables.scan(lake, tables.FEATURES).schema)
    tables.replace_batch_rows(lake, tables.FEATURES, kept, batch_id="b1", model_id="resnet50-random0-224")
    files_with_gone = [p for p in _all_parquet(tmp_path / "features" / "data") if gone in _uris(p)]
    assert files_with_gone  # still on disk
    # WHEN snapshots are expired with retention 0 days
    assert cli_main.main(["expire", "--retention-days", "0", "--lake", str(tmp_path)]) == 0
    # THEN no data file holds the deleted image any more, and the current rows are intact
    assert "unreferenced data file(s) deleted" in capsys.readouterr().out
    assert not [p for p in _all_parquet(tmp_path / "features" / "data") if gone in _uris(p)]
    assert tables.scan(lake, tables.FEATURES).num_rows == 48 - 1


def _all_parquet(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def _uris(path: Path) -> set[str]:
    return set(pq.ParquetFile(path).read(columns=["image_uri"]).column(0).to_pylist())


def legacy_lake(root: Path) -> int:
    """A lake in the pre-Iceberg layout: features/ and rejects/ partitions by batch_id + batches/<id>.json."""
    n = 0
    for b, count in (("b000001-aa", 5), ("b000002-bb", 3)):
        part = root / "features" / f"batch_id={b}"
        part.mkdir(parents=True)
        pq.write_table(pa.table({
            "image_uri": [f"s3://x/images/Kiwi/{b}-{i}.jpg" for i in range(count)], "label": ["Kiwi"] * count,
            "content_sha256": ["0" * 64] * count, "width": pa.array([100] * count, pa.int32()),
            "height": pa.array([100] * count, pa.int32()),
            "features": pa.array([np.full(4, i, np.float32) for i in range(count)], pa.list_(pa.float32())),
            "pca": pa.array([np.zeros(2, np.float32)] * count, pa.list_(pa.float32())),
            "pca_version": pa.array([1] * count, pa.int32()), "model_id": ["resnet50-imagenet-224"] * count,
            "ingested_at": pa.array([1_700_000_000_000_000] * count, pa.timestamp("us", tz="UTC")),
        }), part / "part-00000.parquet")
        (root / "batches").mkdir(exist_ok=True)
        (root / "batches" / f"{b}.json").write_text(json.dumps({
            "batch_id": b, "model_id": "resnet50-imagenet-224", "counts": {"listed": count + 1, "featurized": count,
            "rejected": 1}, "pca_version": 1, "n_total": count, "explained_variance_ratio": [0.5, 0.2],
            "explained_variance_k": 0.7, "images_per_second": 10.0,
        }))
        rejects = root / "rejects" / f"batch_id={b}"
        rejects.mkdir(parents=True)
        pq.write_table(pa.table({"image_uri": [f"s3://x/images/Kiwi/{b}-bad.jpg"], "reason": ["not_an_image"]}),
                       rejects / "part-00000.parquet")
        n += count
    return n


def test_migrate_lake_turns_a_parquet_lake_into_equal_tables(tmp_path: Path, capsys) -> None:
    # GIVEN a lake written before the tables
    n = legacy_lake(tmp_path)
    # WHEN migrated (twice: the migration is re-runnable)
    assert cli_main.main(["migrate-lake", str(tmp_path)]) == 0
    assert cli_main.main(["migrate-lake", str(tmp_path)]) == 0
    # THEN counts and contents are equal, rejects got their model_id, each batch has its batches row
    assert "migrated 8 features rows, 2 rejects, 2 batch reports; contents equal" in capsys.readouterr().out
    lake = tables.Lake.at(str(tmp_path))
    assert tables.scan(lake, tables.FEATURES).num_rows == n
    assert set(tables.scan(lake, tables.REJECTS).column("model_id").to_pylist()) == {"resnet50-imagenet-224"}
    assert sorted(tables.scan(lake, tables.BATCHES).column("batch_id").to_pylist()) == ["b000001-aa", "b000002-bb"]


def test_migrate_lake_refuses_a_folder_without_a_legacy_lake(tmp_path: Path, capsys) -> None:
    assert cli_main.main(["migrate-lake", str(tmp_path)]) == 1
    assert "nothing to migrate" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["compact", "--lake", "."], ["sql"], ["expire", "--retention-days", "x"]])
def test_bad_arguments_are_one_line(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(argv)
    assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
