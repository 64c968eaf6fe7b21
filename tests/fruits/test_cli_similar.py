"""`fruits similar` / `fruits duplicates` on tiny synthetic lakes (no Spark): stored rows, one-line errors."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fruits.cli import main as cli_main
from spark_jobs.featurize import models
from tests.bench.lake_fixtures import separable_rows, write_batch


@pytest.fixture
def only_similar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register only the similar/duplicates commands."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("fruits.cli.similar",))


def imagenet_lake(tmp_path: Path) -> list[dict]:
    rng = np.random.default_rng(2)
    rows = separable_rows(model_id="resnet50-imagenet-224")
    for row in rows:
        row["features"] = rng.normal(size=16)
    write_batch(tmp_path, "b1", rows)
    return rows


def test_a_photo_of_the_lake_uses_its_row_and_matches_brute_force(tmp_path: Path, only_similar, capsys) -> None:
    # GIVEN a lake of 48 rows of an ImageNet model (no weights needed: every query is a stored row)
    rows = imagenet_lake(tmp_path)
    query = rows[5]["image_uri"]
    # WHEN similar runs on a stored URI, CSV output
    assert cli_main.main(["similar", query, "--lake", str(tmp_path), "-k", "4", "--format", "csv"]) == 0
    got = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    # THEN the 4 hits are the brute-force numpy ranking of centred cosines, the query itself excluded
    x = np.array([np.asarray(r["features"], dtype=np.float32) for r in rows], dtype=np.float64)
    x -= x.mean(axis=0)
    sims = x @ x[5] / (np.linalg.norm(x, axis=1) * np.linalg.norm(x[5]))
    order = [i for i in np.argsort(-sims, kind="stable") if i != 5][:4]
    assert [g["image_uri"] for g in got] == [rows[i]["image_uri"] for i in order]
    np.testing.assert_allclose([float(g["similarity"]) for g in got], sims[order], atol=1e-5)


def test_a_new_photo_without_the_models_weights_is_a_one_line_error_naming_the_model(
    tmp_path: Path, sample_dir: Path, only_similar, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an ImageNet model's lake, and no ImageNet weights on this machine
    imagenet_lake(tmp_path / "lake")

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(models, "fetch_imagenet_weights", offline)
    photo = next((sample_dir / "Test" / "Kiwi").glob("*.jpg"))
    # WHEN similar runs on a photo not in the lake
    code = cli_main.main(["similar", str(photo), "--lake", str(tmp_path / "lake")])
    # THEN one line names the model whose weights are missing
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "weights of model resnet50-imagenet-224 are not available here" in err
    # AND an unknown model is a one-line error listing the lake's models
    assert cli_main.main(["similar", str(photo), "--lake", str(tmp_path / "lake"), "--model-id", "nope"]) == 1
    assert "not in the lake (found: resnet50-imagenet-224)" in capsys.readouterr().err
    # AND a lake without pairs has no groups
    assert cli_main.main(["duplicates", "--lake", str(tmp_path / "lake")]) == 0
    assert "0 group(s) holding 0 of 48 photos" in " ".join(capsys.readouterr().out.split())


def test_similar_on_a_stored_uri_imports_neither_tensorflow_nor_pyspark_nor_other_commands(tmp_path: Path) -> None:
    # GIVEN a lake of 48 stored rows
    rows = imagenet_lake(tmp_path)
    # WHEN `fruits similar` runs on a stored URI in a new process (the console script's path: main())
    probe = (
        "import sys\n"
        "from fruits.cli.main import main\n"
        f"code = main(['similar', {rows[3]['image_uri']!r}, '--lake', {str(tmp_path)!r}, '--format', 'json'])\n"
        "heavy = ('tensorflow', 'pyspark', 'openvino', 'keras', 'boto3', 'fruits.lake_maintenance', 'lambdas.config')\n"
        "print('LOADED', code, sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout
    # THEN it answered without importing the featurizing engines, Spark, or the other commands' modules
    assert out.strip().splitlines()[-1] == "LOADED 0 []"
