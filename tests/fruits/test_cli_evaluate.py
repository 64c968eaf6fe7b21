"""`fruits evaluate`: the linear probe on a tiny synthetic lake, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fruits.cli import evaluate
from fruits.cli import main as cli_main
from fruits.cli.errors import CliError
from tests.bench.lake_fixtures import CLASSES, separable_rows, write_batch


@pytest.fixture
def only_evaluate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register only the evaluate command so the test does not depend on the other command groups."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("fruits.cli.evaluate",))


def test_probe_separates_clusters_and_reports_model_id(tmp_path: Path) -> None:
    # GIVEN a lake whose PCA coordinates form one well separated cluster per class, in two batches
    rows = separable_rows()
    write_batch(tmp_path, "b000001-aaaa", rows[::2])
    write_batch(tmp_path, "b000002-bbbb", rows[1::2])
    # WHEN the probe runs
    result = evaluate.evaluate_lake(tmp_path)
    # THEN Test rows are all classified right, per class, and the model_id is the lake's
    assert result.model_id == "resnet50-random0-224"
    assert (result.n_train, result.n_test, result.n_classes, result.k) == (36, 12, 3, 5)
    assert result.accuracy == 1.0
    assert [s.label for s in result.per_class] == sorted(CLASSES)
    assert all(s.support == 4 and s.correct == 4 and s.recall == 1.0 for s in result.per_class)
    assert result.to_dict()["per_class"][0]["label"] == "Apple Braeburn"


def test_probe_scores_wrong_labels_as_errors(tmp_path: Path) -> None:
    # GIVEN Test rows of one class whose coordinates sit in another class's cluster
    rows = separable_rows()
    for row in rows:
        if "/Test/Kiwi/" in row["image_uri"]:
            row["pca"] = next(r["pca"] for r in rows if "/Training/Banana/" in r["image_uri"])
    write_batch(tmp_path, "b1", rows)
    # WHEN the probe runs
    result = evaluate.evaluate_lake(tmp_path)
    # THEN exactly the 4 Kiwi Test rows are wrong
    assert result.accuracy == pytest.approx(8 / 12)
    kiwi = next(s for s in result.per_class if s.label == "Kiwi")
    assert (kiwi.correct, kiwi.recall) == (0, 0.0)


def test_label_falls_back_to_folder(tmp_path: Path) -> None:
    # GIVEN rows with an empty label column
    rows = separable_rows()
    for row in rows:
        row["label"] = ""
    write_batch(tmp_path, "b1", rows)
    # WHEN the lake is read THEN labels come from the image's folder
    table = evaluate.read_probe_table(tmp_path)
    assert set(table.labels) == set(CLASSES)
    assert evaluate.folder_label("s3://b/images/Test/Apple Braeburn/3_100.jpg") == "Apple Braeburn"


def test_refuses_to_mix_model_ids(tmp_path: Path) -> None:
    # GIVEN a lake holding features of two different weights
    write_batch(tmp_path, "b1", separable_rows("resnet50-random0-224"))
    write_batch(tmp_path, "b2", separable_rows("resnet50-imagenet-224", seed=1))
    # WHEN no model_id is chosen THEN the probe refuses
    with pytest.raises(CliError, match="mixes 2 model_ids"):
        evaluate.evaluate_lake(tmp_path)
    # WHEN one is chosen THEN only its rows are used
    result = evaluate.evaluate_lake(tmp_path, "resnet50-imagenet-224")
    assert result.model_id == "resnet50-imagenet-224" and result.n_train == 36
    with pytest.raises(CliError, match="not in the lake"):
        evaluate.evaluate_lake(tmp_path, "resnet50-random7-224")


def test_refuses_mixed_pca_versions_without_pca_state(tmp_path: Path) -> None:
    # GIVEN rows of one model projected with two different PCA versions, and no pca/ state to re-project on
    write_batch(tmp_path, "b1", separable_rows(pca_version=1))
    write_batch(tmp_path, "b2", separable_rows(pca_version=2))
    # WHEN/THEN the probe refuses to compare them
    with pytest.raises(CliError, match="2 PCA versions"):
        evaluate.read_probe_table(tmp_path)


def test_stale_rows_are_reprojected_on_latest_pca_version(tmp_path: Path) -> None:
    # GIVEN two batches: batch 1 projected on PCA version 1, batch 2 on version 2 (fitted on both batches)
    from spark_jobs.pca.stats import SufficientStats
    from spark_jobs.pca.versions import commit_version, plan_version

    model_id = "resnet50-random0-224"
    rng = np.random.default_rng(3)
    rows = separable_rows(k=8)
    for row in rows:
        row["features"] = np.asarray(row["pca"]) + rng.normal(size=8)
    first, second = rows[::2], rows[1::2]
    versions = []
    for batch_id, part in (("b1", first), ("b2", second)):
        stats = SufficientStats.from_array(np.array([r["features"] for r in part], dtype=np.float32))
        planned = plan_version(str(tmp_path), model_id, batch_id, stats, 3)
        commit_version(str(tmp_path), planned)
        versions.append(planned)
        for r in part:
            r["pca"] = planned.fit.components @ (np.float32(r["features"]).astype(np.float64) - planned.mean)
            r["pca_version"] = planned.version
        write_batch(tmp_path, batch_id, part)
    # WHEN the probe table is read
    table = evaluate.read_probe_table(tmp_path)
    # THEN every row is on version 2, batch-1 rows re-projected exactly like spark_jobs.pca.projection
    latest = versions[-1]
    assert table.pca_versions == ["2"]
    by_uri = dict(zip(table.image_uris, table.x, strict=True))
    for r in first:
        expected = latest.fit.components @ (np.float32(r["features"]).astype(np.float64) - latest.mean)
        np.testing.assert_allclose(by_uri[r["image_uri"]], expected, rtol=1e-5, atol=1e-5)
    assert evaluate.linear_probe(table).accuracy == 1.0


def test_cli_prints_accuracy_table_and_model_id(tmp_path: Path, only_evaluate: None,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a valid lake
    write_batch(tmp_path, "b1", separable_rows())
    # WHEN `fruits evaluate --lake DIR` runs
    code = cli_main.main(["evaluate", "--lake", str(tmp_path)])
    # THEN it exits 0 and prints accuracy, the model_id and one row per class
    out = capsys.readouterr().out
    assert code == 0
    assert "accuracy: 1.0000" in out
    assert "resnet50-random0-224" in out
    assert all(label in out for label in CLASSES)


@pytest.mark.parametrize(
    ("argv", "expected_code", "message"),
    [
        (["evaluate", "--lake", "/no/such/lake"], 2, "not a directory"),
        (["evaluate"], 2, "--lake"),
    ],
)
def test_cli_bad_arguments_are_one_line(argv: list[str], expected_code: int, message: str, only_evaluate: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN the CLI gets bad arguments THEN it exits non-zero with one line on stderr, no traceback
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == expected_code
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "no features table"),
        ("no_training", "no rows under /Training/ among 12 rows: upload labelled photos under images/Training/"),
        ("one_class", "at least 2 classes"),
    ],
)
def test_cli_unusable_lake_is_one_line(tmp_path: Path, setup: str, message: str, only_evaluate: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a lake the probe cannot use
    rows = separable_rows()
    if setup == "no_training":
        write_batch(tmp_path, "b1", [r for r in rows if "/Test/" in r["image_uri"]])
    elif setup == "one_class":
        write_batch(tmp_path, "b1", [r for r in rows if "/Kiwi/" in r["image_uri"]])
    # WHEN evaluate runs THEN it exits 1 with one line naming the problem
    code = cli_main.main(["evaluate", "--lake", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1


def test_without_test_rows_the_probe_falls_back_to_a_stratified_split_and_says_so(tmp_path: Path, only_evaluate,
                                                                                   capsys) -> None:
    # GIVEN a lake with Training rows only (what `make demo` writes)
    write_batch(tmp_path, "b1", [r for r in separable_rows(per_class=(12, 4)) if "/Training/" in r["image_uri"]])
    # WHEN evaluate runs
    assert cli_main.main(["evaluate", "--lake", str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    # THEN it scores a stratified 75/25 split of the 36 Training rows (9 held out, 3 per class) and says how to add Test
    assert "split: no Test rows: stratified 75%/25% split of the Training rows" in out
    assert "images/Test/<label>/" in out
    assert "train rows: 27 test rows: 9 classes: 3" in out
    assert "accuracy: 1.0000" in out


def test_group_aware_split_keeps_each_near_duplicate_group_on_one_side(tmp_path: Path, only_evaluate,
                                                                        capsys) -> None:
    # GIVEN Training rows only, 3 classes x 16 photos, each class in 4 groups of 4 near-identical feature vectors
    rng = np.random.default_rng(1)
    rows = [r for r in separable_rows(per_class=(16, 0)) if "/Training/" in r["image_uri"]]
    directions = rng.normal(size=(12, 32))
    for i, row in enumerate(rows):
        row["features"] = directions[i // 4] + 1e-4 * rng.normal(size=32)
    write_batch(tmp_path, "b1", rows)
    table = evaluate.read_probe_table(tmp_path)
    # WHEN the naive and group-aware splits are scored (no near_duplicates table: groups computed from the features)
    result = evaluate.evaluate_groups(tmp_path, table)
    # THEN there are 12 groups of 4; the group-aware test side shares no group with its training side, the naive does
    assert (result.rows, result.groups, result.grouped_photos) == (48, 12, 48)
    assert "computed now from the features" in result.source
    aware, naive = result.group_aware, result.naive
    assert aware.leaked_test_photos == 0 and aware.train_groups + aware.test_groups == 12
    assert aware.train_photos + aware.test_photos == 48 == naive.train_photos + naive.test_photos
    assert naive.leaked_test_photos > 0
    # AND the CLI prints both accuracies
    assert cli_main.main(["evaluate", "--lake", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "naive accuracy:" in out and "group-aware accuracy:" in out
