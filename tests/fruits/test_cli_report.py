"""``fruits report``: one PNG for any lake, variance zoomed where it moves, a one-line error for an empty lake."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fruits.cli.main import main
from fruits.local.report import components_to_show, read_lake
from spark_jobs.lakehouse import tables
from spark_jobs.pca import versions as pca
from spark_jobs.pca.stats import SufficientStats
from tests.bench.lake_fixtures import separable_rows, write_batch

MODEL = "resnet50-random0-224"


def _batch_row(batch_id: str, listed: int, seconds: dict[str, float]) -> pa.Table:
    report = {"batch_id": batch_id, "counts": {"listed": listed, "featurized": listed, "rejected": 0},
              "seconds": seconds, "images_per_second": listed / seconds["featurize"],
              "committed_at": f"2026-11-01T00:0{batch_id[-1]}:00+00:00"}  # fmt: skip
    return pa.table({
        "batch_id": [batch_id], "model_id": [MODEL], "committed_at": [dt.datetime(2026, 11, 1, tzinfo=dt.UTC)],
        "listed": [listed], "featurized": [listed], "rejected": [0], "pca_version": [1], "n_total": [listed],
        "explained_variance_ratio": [[0.5, 0.3]], "explained_variance_k": [0.8],
        "images_per_second": [report["images_per_second"]], "report": [json.dumps(report)],
    })  # fmt: skip


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A lake with 48 feature vectors (3 classes, d=6) in two batches, their PCA version and batch reports."""
    tables.reset_catalogs()
    rng = np.random.default_rng(0)
    rows = separable_rows()
    for row in rows:
        row["features"] = list(rng.normal(size=6) * np.array([9, 5, 2, 0.5, 0.1, 0.05]))
    for index, part in enumerate((rows[::2], rows[1::2]), start=1):
        batch_id = f"b00000{index}-aaaa"
        write_batch(tmp_path, batch_id, part)
        tables.replace_batch_rows(tables.Lake.at(str(tmp_path)), tables.BATCHES,
                                  _batch_row(batch_id, len(part), {"read_decode": 2.0, "featurize": 6.0 * index}),
                                  batch_id=batch_id, model_id=MODEL)  # fmt: skip
    stats = SufficientStats.from_array(np.array([r["features"] for r in rows]))
    planned = pca.plan_version(str(tmp_path), MODEL, "b000002-aaaa", stats, k=6)
    pca.commit_version(str(tmp_path), planned)
    return tmp_path


def test_report_draws_one_png_for_a_lake(lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a lake filled without the demo
    output = tmp_path / "out" / "report.png"
    # WHEN fruits report runs
    assert main(["report", "--lake", str(lake), "-o", str(output)]) == 0
    # THEN one PNG is written, large enough to hold the five panels, and its path is printed
    assert capsys.readouterr().out.strip() == f"wrote {output}"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(output).shape
    assert width > 1200 and height > 900
    # and what it draws is the lake's: both batches in commit order, every row, the PCA version
    view = read_lake(str(lake))
    assert [r["batch_id"] for r in view.batches] == ["b000001-aaaa", "b000002-aaaa"]
    assert view.features.num_rows == 48 and view.model_id == MODEL and view.pca.version == 1


def test_variance_axis_stops_where_the_curve_is_flat() -> None:
    # GIVEN 150 ratios of which the first 10 hold 99.9 % WHEN choosing the components to show THEN ~10, not 150
    ratio = np.r_[np.full(10, 0.0999), np.full(140, 0.001 / 140)]
    assert 10 <= components_to_show(ratio) <= 12
    assert components_to_show(np.full(4, 0.25)) == 4  # fewer than the minimum: all of them


def test_empty_lake_or_unknown_model_is_one_line(
    lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an empty folder and a real lake WHEN asking for a report of nothing / of a model it lacks
    empty = tmp_path / "empty"
    empty.mkdir()
    # THEN each is one line and exit 1
    assert main(["report", "--lake", str(empty)]) == 1
    assert main(["report", "--lake", str(lake), "--model-id", "vit-b16"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "no features table" in err[0] and "not in" in err[1]
