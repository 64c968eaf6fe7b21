"""A job run of several batches (issue 19): one featurize pass, one PCA version and one commit per table per run,
while each batch keeps its own rows, report and re-run guarantees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from spark_jobs import main
from spark_jobs.job import JobConfig, run_batches
from spark_jobs.lakehouse import reports as lake_io
from spark_jobs.lakehouse import tables
from spark_jobs.manifest import merge_manifests
from spark_jobs.pca import versions as pca
from spark_jobs.pca.stats import SufficientStats

from .conftest import FAST_WEIGHTS, copy_subset, write_manifest

K = 6
CLASSES = ["Banana", "Kiwi", "Lemon"]
IDS = ["b000001-aaaaaaaa", "b000002-bbbbbbbb", "b000003-cccccccc"]


class Killed(RuntimeError):
    """Stands for the job process dying at that point."""


@pytest.fixture(scope="module")
def photos(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three batches of real photos (6 + 6 + 6 + a corrupt file in the third); the second also lists a copy of a
    photo of the first under another name (a near-duplicate pair across two batches of one run)."""
    root = tmp_path_factory.mktemp("runs")
    images = [copy_subset(sample_dir, root / f"s{i}", CLASSES, per_class=2, offset=2 * i) for i in range(3)]
    twin = root / "twin" / "Banana" / "twin.jpg"
    twin.parent.mkdir(parents=True)
    shutil.copyfile(images[0][0], twin)
    (root / "bad.jpg").write_bytes(b"not an image")
    lists = [images[0], [*images[1], twin], [*images[2], root / "bad.jpg"]]
    return {"root": root, "images": images, "twin": twin,
            "manifests": [write_manifest(root / f"{b}.jsonl", files) for b, files in zip(IDS, lists, strict=True)]}


def run_config(photos: dict[str, object], lake: Path, which: list[int]) -> JobConfig:
    manifests = photos["manifests"]
    return JobConfig.for_run([(IDS[i], manifests[i]) for i in which], str(lake), weights=FAST_WEIGHTS, pca_k=K,
                             infer_batch_size=8)


def features(lake: Path) -> pa.Table:
    return tables.scan(tables.Lake.at(str(lake)), tables.FEATURES)


def assert_pca_is_batch_pca_of_rows(lake: Path, model_id: str) -> None:
    """The committed PCA state equals the statistics of the model's current feature rows (batch PCA)."""
    rows = features(lake)
    x = np.stack(rows.column("features").to_numpy(zero_copy_only=False)).astype(np.float64)
    expected = SufficientStats.from_array(x)
    state = pca.load_version(str(lake), model_id).state
    assert state.n == expected.n == rows.num_rows
    np.testing.assert_allclose(state.mean, expected.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state.m2, expected.m2, rtol=1e-9, atol=1e-9 * np.abs(expected.m2).max())


def rows_by_batch(lake: Path) -> dict[str, list[str]]:
    rows = features(lake)
    out: dict[str, list[str]] = {}
    for uri, batch_id in zip(rows.column("image_uri").to_pylist(), rows.column("batch_id").to_pylist(), strict=True):
        out.setdefault(batch_id, []).append(uri)
    return {b: sorted(u) for b, u in sorted(out.items())}


def expected_rows(photos: dict[str, object]) -> dict[str, list[str]]:
    images = photos["images"]
    return {IDS[0]: sorted(map(str, images[0])), IDS[1]: sorted([*map(str, images[1]), str(photos["twin"])]),
            IDS[2]: sorted(map(str, images[2]))}


def test_a_run_of_three_batches_commits_their_rows_once_with_one_pca_version_and_one_commit_per_table(
    spark, photos, tmp_path: Path
) -> None:
    # GIVEN an empty lake  WHEN one job run takes three batches
    lake = tmp_path / "lake"
    reports = run_batches(spark, run_config(photos, lake, [0, 1, 2]))
    # THEN each batch's rows are in features once, carrying their own batch id, the corrupt file in rejects
    assert rows_by_batch(lake) == expected_rows(photos)
    rejects = tables.scan(tables.Lake.at(str(lake)), tables.REJECTS)
    assert rejects.column("batch_id").to_pylist() == [IDS[2]]
    # AND the run made ONE PCA version, equal to a batch PCA over all 19 rows, and one commit on features
    model_id = reports[0]["model_id"]
    assert pca.latest_version(str(lake), model_id) == 1 and {r["pca_version"] for r in reports} == {1}
    assert pca.read_metadata(str(lake), model_id, 1)["batch_ids"] == IDS
    assert_pca_is_batch_pca_of_rows(lake, model_id)
    (snapshot,) = tables.Lake.at(str(lake)).table(tables.FEATURES).snapshots()
    assert snapshot.summary.additional_properties["fruits.batch_id"] == ",".join(IDS)
    # AND each batch has its own batches row and report, with its own counts and the run it was in
    batch_rows = tables.scan(tables.Lake.at(str(lake)), tables.BATCHES)
    assert sorted(batch_rows.column("batch_id").to_pylist()) == IDS
    for batch_id, featurized, rejected in ((IDS[0], 6, 0), (IDS[1], 7, 0), (IDS[2], 6, 1)):
        report = lake_io.read_report(str(lake), batch_id)
        assert report["counts"] == {"listed": featurized + rejected, "featurized": featurized, "rejected": rejected}
        assert report["run"]["batch_ids"] == IDS and report["run"]["images"] == 20
        assert report["run"]["run_id"] == reports[0]["run"]["run_id"]
    # AND the copy of a b1 photo listed by b2 is recorded once as a near-duplicate pair within the run, and every
    # pair carries the batch of its image_uri
    pairs = tables.scan(tables.Lake.at(str(lake)), tables.NEAR_DUPLICATES).to_pylist()
    twins = {str(photos["twin"]), str(photos["images"][0][0])}
    assert len([p for p in pairs if {p["image_uri"], p["duplicate_uri"]} == twins]) == 1
    owner = {u: b for b, uris in expected_rows(photos).items() for u in uris}
    assert all(p["batch_id"] == owner[p["image_uri"]] for p in pairs)


@pytest.mark.parametrize("regrouped", [False, True], ids=["same-run", "regrouped"])
def test_a_run_killed_after_its_pca_version_then_retried_loses_nothing_and_doubles_nothing(
    spark, photos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, regrouped: bool
) -> None:
    # GIVEN a run of three batches killed after its PCA version was written, before its features commit
    lake = tmp_path / "lake"
    replace = tables.replace_batch_rows

    def dying_replace(target, name, *args, **kwargs):
        if name == tables.FEATURES:
            raise Killed(name)
        return replace(target, name, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(tables, "replace_batch_rows", dying_replace)
        with pytest.raises(Killed):
            run_batches(spark, run_config(photos, lake, [0, 1, 2]))
    # WHEN its batches are retried: in the same run, or grouped differently (b2+b3, then b1 alone)
    for which in ([[1, 2], [0]] if regrouped else [[0, 1, 2]]):
        reports = run_batches(spark, run_config(photos, lake, which))
    # THEN every photo has exactly one row, with its own batch id, the reject once
    assert rows_by_batch(lake) == expected_rows(photos)
    assert tables.scan(tables.Lake.at(str(lake)), tables.REJECTS).num_rows == 1
    assert sorted(tables.scan(tables.Lake.at(str(lake)), tables.BATCHES).column("batch_id").to_pylist()) == IDS
    # AND the PCA state is exact, its versions ordered (the dead pending version 1 replaced, never skipped)
    model_id = reports[0]["model_id"]
    assert_pca_is_batch_pca_of_rows(lake, model_id)
    assert pca.latest_version(str(lake), model_id) == (3 if regrouped else 2)


def test_a_rerun_of_one_batch_of_a_run_alone_replaces_exactly_its_rows(spark, photos, tmp_path: Path) -> None:
    # GIVEN a run of three batches committed
    lake = tmp_path / "lake"
    first = run_batches(spark, run_config(photos, lake, [0, 1, 2]))
    before = features(lake)
    # WHEN the middle batch is re-run alone
    (report,) = run_batches(spark, run_config(photos, lake, [1]))
    # THEN its rows are replaced (new PCA version), the other batches' rows untouched, nothing doubled
    assert rows_by_batch(lake) == expected_rows(photos)
    after = features(lake)
    for rows in (before, after):
        assert len(set(rows.column("image_uri").to_pylist())) == rows.num_rows == 19
    versions = {(b, v) for b, v in zip(after.column("batch_id").to_pylist(), after.column("pca_version").to_pylist(),
                                       strict=True)}
    assert versions == {(IDS[0], 1), (IDS[1], 2), (IDS[2], 1)}
    assert report["pca_version"] == 2 and report["run"]["batch_ids"] == [IDS[1]]
    # AND the PCA state is still a batch PCA over all the model's rows
    assert_pca_is_batch_pca_of_rows(lake, first[0]["model_id"])
    assert lake_io.read_report(str(lake), IDS[0])["run"]["batch_ids"] == IDS  # the others' reports unchanged


def test_an_erasure_listed_by_one_batch_of_a_run_erases_a_photo_of_another_batch_of_the_run(
    spark, photos, tmp_path: Path
) -> None:
    # GIVEN a run of three batches whose third carries an erasure line for a photo of the first
    lake = tmp_path / "lake"
    work = tmp_path / "manifests"
    work.mkdir()
    manifests = [shutil.copyfile(m, work / Path(m).name) for m in photos["manifests"]]
    victim = str(photos["images"][0][1])
    (work / f"{IDS[2]}.erase.jsonl").write_text(json.dumps({"image_uri": victim, "reason": "deleted"}) + "\n")
    config = JobConfig.for_run(list(zip(IDS, map(str, manifests), strict=True)), str(lake), weights=FAST_WEIGHTS,
                               pca_k=K, infer_batch_size=8)
    # WHEN the run commits
    reports = run_batches(spark, config)
    # THEN the photo has no row left, every other photo one, and the PCA is downdated to the remaining rows
    expected = expected_rows(photos)
    expected[IDS[0]].remove(victim)
    assert rows_by_batch(lake) == expected
    assert_pca_is_batch_pca_of_rows(lake, reports[0]["model_id"])
    # AND the erasure is in the ledger, reported by the batch that listed it
    ledger = tables.scan(tables.Lake.at(str(lake)), tables.ERASURES).column("image_uri").to_pylist()
    assert ledger == [victim]
    by_id = {r["batch_id"]: r for r in reports}
    assert by_id[IDS[2]]["erased"]["requested"] == 1 and by_id[IDS[0]]["erased"]["requested"] == 0
    assert by_id[IDS[2]]["erased"]["rows"] == 1


def test_an_image_listed_by_two_batches_of_a_run_is_featurized_once_at_its_newest_version(
    spark, photos, tmp_path: Path
) -> None:
    # GIVEN two batches that both list one photo: the first at a later S3 event than the second
    lake = tmp_path / "lake"
    shared = str(photos["images"][0][0])
    lines = {IDS[0]: [(shared, "2026-12-01T10:00:05Z"), (str(photos["images"][0][1]), "2026-12-01T10:00:01Z")],
             IDS[1]: [(shared, "2026-12-01T10:00:02Z"), (str(photos["images"][1][0]), "2026-12-01T10:00:03Z")]}
    batches = []
    for batch_id, entries in lines.items():
        path = tmp_path / f"{batch_id}.jsonl"
        path.write_text("".join(json.dumps({"image_uri": uri, "label": "x", "event_time": time}) + "\n"
                                for uri, time in entries))
        batches.append((batch_id, str(path)))
    # WHEN one run takes both
    reports = run_batches(spark, JobConfig.for_run(batches, str(lake), weights=FAST_WEIGHTS, pca_k=K,
                                                   infer_batch_size=8))
    # THEN the photo has one row, of the batch that listed its newest version; the other batch reports it superseded
    rows = features(lake)
    assert sorted(zip(rows.column("image_uri").to_pylist(), rows.column("batch_id").to_pylist(), strict=True)) == \
        sorted([(shared, IDS[0]), (lines[IDS[0]][1][0], IDS[0]), (lines[IDS[1]][1][0], IDS[1])])
    assert reports[0]["run"]["featurized"] == 3
    assert reports[1]["counts"] == {"listed": 2, "featurized": 1, "rejected": 0}
    assert reports[1]["stale"] == {"images": 1, "by_reason": {"superseded": 1}}
    assert_pca_is_batch_pca_of_rows(lake, reports[0]["model_id"])


def test_merge_manifests_keeps_the_newest_version_and_the_later_batch_on_equal_stamps() -> None:
    # GIVEN the same URI in three batches: stamps 5 s, 9 s, 9 s (equal to the second's)
    def record(second: int) -> dict:
        return {"image_uri": "s3://b/k.jpg", "event_time": None, "sequencer": f"{second:016X}",
                "last_modified": None, "version_id": None}

    parsed = [("b1", [record(5)]), ("b2", [record(9)]), ("b3", [record(9)])]
    # WHEN the run's manifests are merged
    run = merge_manifests(parsed)
    # THEN the URI is featurized once, for the last batch with the newest stamp; the others lost it
    assert len(run.records) == 1 and run.owner == {"s3://b/k.jpg": "b3"}
    assert run.superseded == {"b1": ["s3://b/k.jpg"], "b2": ["s3://b/k.jpg"], "b3": []}


def test_arguments_in_pairs_make_one_run_in_seal_order() -> None:
    # GIVEN the arguments a Lambda gives a run of two batches
    argv = ["--manifest", "s3://m/b1.jsonl", "--batch-id", "b1", "--manifest", "s3://m/b2.jsonl", "--batch-id", "b2",
            "--lake", "s3://l/lake", "--catalog", "glue"]
    # WHEN they are parsed
    config = main.parse_args(argv)
    # THEN the run holds both batches in that order, the first one also as batch_id/manifest
    assert config.batches == (("b1", "s3://m/b1.jsonl"), ("b2", "s3://m/b2.jsonl"))
    assert (config.batch_id, config.manifest) == ("b1", "s3://m/b1.jsonl")


def test_one_pair_of_arguments_is_the_job_of_one_batch_as_before() -> None:
    # GIVEN the arguments of a job started by an older Lambda (one batch)
    config = main.parse_args(["--manifest", "m.jsonl", "--lake", "/tmp/lake", "--batch-id", "b1"])
    # THEN the config is the one-batch job's
    assert config == JobConfig("m.jsonl", "/tmp/lake", "b1", engine=None)
    assert config.batches == (("b1", "m.jsonl"),)


@pytest.mark.parametrize(("argv", "message"), [
    (["--manifest", "a", "--manifest", "b", "--batch-id", "b1"], "2 --manifest for 1 --batch-id"),
    (["--manifest", "a", "--batch-id", "b1", "--manifest", "b", "--batch-id", "b1"], "batch id given twice"),
], ids=["count-mismatch", "duplicate-id"])
def test_bad_pairs_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    # GIVEN pairs that do not match, or a batch given twice  WHEN the job starts
    code = main.main([*argv, "--lake", "/tmp/lake"])
    # THEN it exits 2 before any Spark work, with one line naming the problem
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err
