"""Near-duplicates: exact search equals brute force; the job's near_duplicates table through re-runs, overwrites and
erasure; `fruits similar` / `fruits duplicates` never name an erased photo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fruits.cli import main as cli_main
from fruits.similarity import similar
from spark_jobs.job import JobConfig, run_batch
from spark_jobs.lakehouse import erasure, tables
from spark_jobs.lakehouse import near_duplicates as nd

from .conftest import FAST_WEIGHTS, copy_subset, write_manifest

CLASSES = ["Apricot", "Banana", "Kiwi"]
# Exact copies have cosine 1 (float32 rounding ~1e-7); distinct real photos stay below this with the projection model.
COPY_SIMILARITY = 0.99999


def brute_force_top_k(query: np.ndarray, x: np.ndarray, uris: list[str], k: int, exclude: str) -> list[tuple]:
    """Reference: float64 cosine of every row centred on the rows' mean, sorted by (-similarity, uri), the query's
    own URI left out."""
    mean = x.astype(np.float64).mean(axis=0)
    x64, q64 = x.astype(np.float64) - mean, query.astype(np.float64) - mean
    sims = x64 @ q64 / (np.linalg.norm(x64, axis=1) * np.linalg.norm(q64))
    ranked = sorted((-s, u) for s, u in zip(sims, uris, strict=True) if u != exclude)
    return [(u, -s) for s, u in ranked[:k]]


def test_search_functions_equal_brute_force() -> None:
    # GIVEN random vectors with a few planted near-copies
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 64)).astype(np.float32)
    x[10] = x[200] + 0.01 * rng.normal(size=64)
    x[20] = x[21]  # an exact copy: cosine 1
    x += 30.0  # a shared offset (as ReLU features have): centring removes it
    mean = x.astype(np.float64).mean(axis=0)
    uris = [f"s3://b/images/{i:04d}.jpg" for i in range(300)]
    # WHEN the batch is rows 0..49 and the history rows 50..299 come in chunks of 64
    history = ((uris[s : s + 64], x[s : s + 64]) for s in range(50, 300, 64))
    pairs = nd.pairs_above(uris[:50], x[:50], history, 0.99, mean)
    # THEN the pairs equal a brute-force float64 centred cosine over batch x (history + later batch rows)
    centred = x.astype(np.float64) - mean
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    sims = unit @ unit.T
    expected = {(uris[i], uris[j]) for i in range(50) for j in range(300) if j > i and sims[i, j] >= 0.99}
    assert {(a, b) for a, b, _ in pairs} == expected == {(uris[10], uris[200]), (uris[20], uris[21])}
    assert all(abs(s - sims[uris.index(a), uris.index(b)]) < 1e-5 for a, b, s in pairs)
    # AND all_pairs over every row finds the same unordered pairs
    assert {(a, b) for a, b, _ in nd.all_pairs(uris, x, 0.99, chunk_rows=37, mean=mean)} == expected
    # AND without centring the shared offset makes every pair look alike
    assert len(nd.all_pairs(uris, x, 0.99)) > 40_000
    # AND top_k equals the brute-force ranking
    got = [(n.image_uri, n.similarity) for n in nd.top_k(x[5], uris, x, 7, exclude=uris[5], mean=mean)]
    want = brute_force_top_k(x[5], x, uris, 7, exclude=uris[5])
    assert [u for u, _ in got] == [u for u, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
    # AND groups are connected components; a lone photo is its own group
    pairs_table = nd.pair_rows([(uris[0], uris[1], 1.0), (uris[1], uris[2], 1.0)], model_id="m", batch_id="b")
    labels = nd.components(uris[:4], pairs_table)
    assert labels[0] == labels[1] == labels[2] != labels[3]


@pytest.mark.parametrize(("batch", "dim", "offset"), [(40, 256, 30.0), (300, 512, 0.3)])
def test_pairs_above_equals_float64_brute_force_at_every_threshold(batch: int, dim: int, offset: float) -> None:
    # GIVEN ReLU-like vectors (a shared offset) with near-copies planted at graded distances, a row equal to the mean
    # (zero after centring) and an exact copy; 40 batch rows use the full float32 filter, 300 the projection filter
    rng = np.random.default_rng(batch)
    history = 1500
    x = np.maximum(rng.normal(size=(batch + history, dim)) + offset, 0).astype(np.float32)
    for k, eps in enumerate(np.geomspace(1e-4, 0.3, 25)):
        x[batch + 7 * k] = x[k] + eps * rng.normal(size=dim).astype(np.float32)
    x[batch + 400] = x.mean(axis=0)
    x[batch + 401] = x[batch + 402]
    mean = x.astype(np.float64).mean(axis=0)
    uris = [f"u{i:05d}" for i in range(len(x))]
    centred = x.astype(np.float64) - mean
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    sims = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)[:batch] @ (
        np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0).T)
    for threshold in (0.999, 0.996, 0.99, 0.9, 0.0, -1.0):
        # WHEN the batch's pairs are searched against the history in chunks of 333 rows
        chunks = ((uris[s : s + 333], x[s : s + 333]) for s in range(batch, len(x), 333))
        pairs = nd.pairs_above(uris[:batch], x[:batch], chunks, threshold, mean)
        # THEN they are exactly the float64 brute-force pairs (i < j), with their float64 cosines
        i, j = np.nonzero(sims >= threshold)
        expected = {(uris[a], uris[b]) for a, b in zip(i, j, strict=True) if b > a}
        assert {(a, b) for a, b, _ in pairs} == expected, threshold
        got = np.array([s for _, _, s in pairs])
        want = np.array([sims[int(a[1:]), int(b[1:])] for a, b, _ in pairs])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert len(expected) > 0


@pytest.fixture(scope="module")
def photos(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """15 real photos (3 classes x 5) and exact copies of three of them under other names."""
    root = tmp_path_factory.mktemp("near_duplicates")
    images = copy_subset(sample_dir, root / "img", CLASSES, per_class=5)
    dup = root / "dup" / "Apricot"
    dup.mkdir(parents=True)
    copies = {}
    for name, source in (("a", images[0]), ("b", images[6]), ("c", images[12]), ("d", images[1])):
        copies[name] = dup / f"copy_{name}.jpg"
        shutil.copyfile(source, copies[name])
    return {"root": root, "images": [str(p) for p in images], "copies": {k: str(v) for k, v in copies.items()}}


def pair_set(lake: Path) -> set[tuple[str, frozenset[str]]]:
    rows = tables.scan(tables.Lake.at(str(lake)), nd.NEAR_DUPLICATES).to_pylist()
    assert all(r["similarity"] >= COPY_SIMILARITY for r in rows)
    return {(r["batch_id"], frozenset((r["image_uri"], r["duplicate_uri"]))) for r in rows}


def run(spark, root: Path, lake: Path, batch_id: str, images: list[str]) -> dict:
    manifest = write_manifest(root / f"{batch_id}.jsonl", images)
    return run_batch(spark, JobConfig(manifest, str(lake), batch_id, FAST_WEIGHTS, 4, 224, 8,
                                      near_duplicate_similarity=COPY_SIMILARITY))


def test_batch_runs_record_pairs_once_rerun_replaces_overwrite_replaces_erasure_removes(
    spark, photos, tmp_path: Path
) -> None:
    # GIVEN this test's own copy of the photos (it overwrites one)
    source = Path(photos["root"])
    root, lake = tmp_path / "photos", tmp_path / "lake"
    shutil.copytree(source, root)
    images = [str(root / Path(p).relative_to(source)) for p in photos["images"]]
    copies = {k: str(root / Path(p).relative_to(source)) for k, p in photos["copies"].items()}
    # AND batch 1 (10 photos) then batch 2 (5 photos + byte copies of photos 0 and 6 of batch 1 and 12 of its own)
    run(spark, root, lake, "b000001-aaaaaaaa", images[:10])
    report = run(spark, root, lake, "b000002-bbbbbbbb", [*images[10:], copies["a"], copies["b"], copies["c"]])
    # THEN batch 2 recorded exactly the 3 copy pairs: 2 against history, 1 within the batch, each once
    expected = {("b000002-bbbbbbbb", frozenset((copies["a"], images[0]))),
                ("b000002-bbbbbbbb", frozenset((copies["b"], images[6]))),
                ("b000002-bbbbbbbb", frozenset((copies["c"], images[12])))}
    assert pair_set(lake) == expected
    assert report["near_duplicates"]["pairs"] == 3
    # WHEN batch 1 is re-run (its photos are named by batch 2's pairs)
    run(spark, root, lake, "b000001-aaaaaaaa", images[:10])
    # THEN the pairs naming its photos move to it, never twice
    rows = tables.scan(tables.Lake.at(str(lake)), nd.NEAR_DUPLICATES)
    assert rows.num_rows == 3
    assert {pair for _, pair in pair_set(lake)} == {pair for _, pair in expected}
    # WHEN photo 6 is overwritten with the bytes of photo 3 and featurized by batch 3
    shutil.copyfile(images[3], images[6])
    run(spark, root, lake, "b000003-cccccccc", [images[6]])
    # THEN its old pair (with copy b) is gone and its new pair (with photo 3) is recorded by batch 3
    pairs = pair_set(lake)
    assert frozenset((copies["b"], images[6])) not in {p for _, p in pairs}
    assert ("b000003-cccccccc", frozenset((images[6], images[3]))) in pairs
    # WHEN photo 0 (one of a pair) is erased
    done = erasure.erase_images(str(lake), [images[0]])
    # THEN no pair names it, and similar() never returns it, even for its exact copy
    assert done.pairs_deleted == 1
    assert not any(images[0] in pair for _, pair in pair_set(lake))
    hits = similar(tables.Lake.at(str(lake)), copies["a"], k=100).hits
    assert images[0] not in {h.image_uri for h in hits} and len(hits) == 16  # 17 live rows minus the query


def test_similar_equals_brute_force_and_featurizes_a_new_photo(spark, photos, tmp_path: Path, capsys) -> None:
    root, lake = Path(photos["root"]), tmp_path / "lake"
    images, copies = photos["images"], photos["copies"]
    # GIVEN a lake of 16 photos (copy a is a byte copy of photo 0)
    run(spark, root, lake, "b000001-aaaaaaaa", [*images, copies["a"]])
    rows = tables.scan(tables.Lake.at(str(lake)), tables.FEATURES)
    uris, x = rows.column("image_uri").to_pylist(), nd.vectors_of(rows.column("features"))
    # WHEN similar() runs on a photo of the lake
    result = similar(tables.Lake.at(str(lake)), images[4], k=5)
    # THEN it used the stored row and its hits equal the brute-force numpy reference
    want = brute_force_top_k(x[uris.index(images[4])], x, uris, 5, exclude=images[4])
    assert result.in_lake and [h.image_uri for h in result.hits] == [u for u, _ in want]
    np.testing.assert_allclose([h.similarity for h in result.hits], [s for _, s in want], atol=1e-5)
    # WHEN it runs on a photo not in the lake (copy d = photo 1's bytes), through the CLI
    code = cli_main.main(["similar", copies["d"], "--lake", str(lake), "-k", "3", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    # THEN the photo was featurized now with the model's featurizer: photo 1 comes first at cosine 1
    assert code == 0 and out["in_lake"] is False and out["model_id"] == "projection7-224"
    assert out["hits"][0]["image_uri"] == images[1] and out["hits"][0]["similarity"] > COPY_SIMILARITY
    # AND `fruits duplicates` lists the one group (photo 0 + copy a) with its size
    assert cli_main.main(["duplicates", "--lake", str(lake), "--format", "json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [(g["size"], sorted(g["image_uris"])) for g in groups] == [(2, sorted([images[0], copies["a"]]))]
    # AND bad input is a one-line error
    assert cli_main.main(["similar", str(tmp_path / "missing.jpg"), "--lake", str(lake)]) == 1
    err = capsys.readouterr().err
    assert "not a photo of model projection7-224 in the lake, nor a readable file" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["duplicates", "--lake", str(lake), "--min-similarity", "2"])
    assert exc.value.code == 2


def test_rebuild_records_the_pairs_of_a_lake_written_before_the_table(spark, photos, tmp_path: Path) -> None:
    root, lake = Path(photos["root"]), tmp_path / "lake"
    images, copies = photos["images"], photos["copies"]
    # GIVEN two batches, then the near_duplicates table dropped (a lake written by older code)
    run(spark, root, lake, "b000001-aaaaaaaa", images[:8])
    run(spark, root, lake, "b000002-bbbbbbbb", [*images[8:], copies["a"], copies["c"]])
    before = {p for _, p in pair_set(lake)}
    ref = tables.Lake.at(str(lake))
    tables.load_catalog(ref.catalog).drop_table((ref.namespace, nd.NEAR_DUPLICATES))
    # WHEN the pairs are rebuilt
    count = nd.rebuild(ref, "projection7-224", COPY_SIMILARITY)
    # THEN they are the pairs the batch runs recorded
    assert count == len(before) == 2 and {p for _, p in pair_set(lake)} == before
    assert isinstance(tables.scan(ref, nd.NEAR_DUPLICATES), pa.Table)
