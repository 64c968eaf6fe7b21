"""PCA files in lake maintenance: ``fruits expire`` deletes old states and fits, ``fruits migrate-lake`` compacts a
legacy ``pca/`` tree (pure numpy + PyIceberg SQLite catalog, no Spark)."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import numpy as np

from fruits.cli import main as cli_main
from fruits.lake_maintenance import expire_pca
from spark_jobs import storage
from spark_jobs.lakehouse import tables
from spark_jobs.pca import versions as pca
from spark_jobs.pca.stats import SufficientStats, merge
from tests.bench.lake_fixtures import write_batch

MODEL, D = "resnet50-random0-224", 4


def vectors(seed: int, n: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32).astype(np.float64)


def rows_of(batch_id: str, x: np.ndarray, version: int) -> list[dict]:
    return [{"image_uri": f"s3://b/{batch_id}/{i}.jpg", "label": "Kiwi", "pca": [0.0, 0.0], "model_id": MODEL,
             "pca_version": version, "features": list(v)} for i, v in enumerate(x)]


def test_expire_keeps_the_latest_checkpoints_and_fits_rows_carry(tmp_path: Path, monkeypatch, capsys) -> None:
    # GIVEN 7 versions with a checkpoint every 3, and current rows carrying versions 2 and 7
    monkeypatch.setattr(pca, "CHECKPOINT_EVERY", 3)
    lake = str(tmp_path)
    for i in range(1, 8):
        planned = pca.plan_version(lake, MODEL, f"b{i}", SufficientStats.from_array(vectors(i)), 2)
        pca.commit_version(lake, planned)
    write_batch(tmp_path, "b2", rows_of("b2", vectors(2), 2))
    write_batch(tmp_path, "b7", rows_of("b7", vectors(7), 7))
    folder = Path(pca.model_dir(lake, MODEL))
    assert sorted(p.name[:7] for p in folder.glob("*.state")) == ["v000003", "v000006", "v000007"]
    # WHEN nothing is old enough  THEN nothing is deleted
    assert [r.states_deleted + r.fits_deleted for r in expire_pca(tables.Lake.at(lake))] == [0]
    # WHEN every version is past the retention and one checkpoint is kept (the CLI: retention 0 days)
    assert cli_main.main(["expire", "--retention-days", "0", "--pca-checkpoints", "1", "--lake", lake]) == 0
    # THEN the states of the latest and of the newest checkpoint remain, and the fits of 2, 6 and 7
    assert f"pca/{MODEL}: 1 state(s) and 4 fit(s) deleted" in capsys.readouterr().out
    assert sorted(p.name[:7] for p in folder.glob("*.state")) == ["v000006", "v000007"]
    assert sorted(p.name[:7] for p in folder.glob("*.fit.npz")) == ["v000002", "v000006", "v000007"]
    assert len(list(folder.glob("v*.json"))) == 7  # the record of every version stays
    # AND the lake still commits exactly
    nxt = pca.plan_version(lake, MODEL, "b8", SufficientStats.from_array(vectors(8)), 2)
    expected = SufficientStats.from_array(np.vstack([vectors(i) for i in range(1, 9)]))
    np.testing.assert_allclose(nxt.state.m2, expected.m2, rtol=1e-9, atol=1e-9)


def legacy_pca_tree(lake: str, versions: int = 3) -> SufficientStats:
    """The layout before format 2: per version a JSON with the whole ledger and an npz with M2 and the fit,
    plus batch_stats/; returns the latest state."""
    root = pca.model_dir(lake, MODEL)
    state, ledger = SufficientStats.empty(D), []
    for v in range(1, versions + 1):
        part = SufficientStats.from_array(vectors(v))
        state = merge(state, part)
        fit = pca.fit_pca(state, 2)
        storage.write_bytes(storage.join(root, f"batch_stats/b{v}-r{v}.npz"), part.to_bytes())
        buf = io.BytesIO()
        np.savez(buf, n=np.int64(state.n), mean=state.mean, m2=state.m2, components=fit.components,
                 explained_variance=fit.explained_variance, explained_variance_ratio=fit.explained_variance_ratio,
                 k_effective=np.int64(fit.k_effective))
        storage.write_bytes(storage.join(root, f"v{v:06d}-r{v}.npz"), buf.getvalue())
        ledger.append({"batch_id": f"b{v}", "n": part.n, "version": v, "stats": f"batch_stats/b{v}-r{v}.npz"})
        meta = {"model_id": MODEL, "version": v, "batch_id": f"b{v}", "run_id": f"r{v}",
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "n_total": state.n, "dim": D,
                "k": 2, "k_effective": fit.k_effective, "state_file": f"v{v:06d}-r{v}.npz",
                "explained_variance_ratio": list(fit.explained_variance_ratio), "ledger": list(ledger)}
        storage.write_bytes(storage.join(root, f"v{v:06d}.json"), json.dumps(meta).encode())
    return state


def test_migrate_lake_compacts_a_legacy_pca_tree(tmp_path: Path, capsys) -> None:
    # GIVEN a pca/ tree written before format 2 (and no legacy Parquet tables)
    lake = str(tmp_path)
    state = legacy_pca_tree(lake)
    before_fit = pca.load_version(lake, MODEL, 2).fit
    # WHEN migrate-lake runs, twice (re-runnable)
    assert cli_main.main(["migrate-lake", lake]) == 0
    assert f"pca/{MODEL}: 3 legacy version(s) converted, 3 statistics file(s) deleted" in capsys.readouterr().out
    assert cli_main.main(["migrate-lake", lake]) == 1  # nothing left to do
    # THEN only format-2 files remain: a fit per version, the latest state, the pointer
    folder = Path(pca.model_dir(lake, MODEL))
    assert not list(folder.glob("*-r?.npz")) and not list((folder / "batch_stats").glob("*"))
    assert [p.name[:7] for p in folder.glob("*.state")] == ["v000003"] and len(list(folder.glob("*.fit.npz"))) == 3
    assert all(pca.read_metadata(lake, MODEL, v)["format"] == pca.FORMAT for v in (1, 2, 3))
    latest = pca.load_version(lake, MODEL)
    assert latest.version == 3 and latest.parent == 2
    np.testing.assert_array_equal(latest.state.m2, state.m2)
    _, fit = pca.load_fit(lake, MODEL, 2)
    np.testing.assert_allclose(fit.components, before_fit.components, rtol=1e-6, atol=1e-7)
