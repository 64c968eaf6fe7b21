"""Statistics of feature rows read back from the features table (PyIceberg, no Spark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spark_jobs.lakehouse import tables
from spark_jobs.pca import table_stats
from spark_jobs.pca.stats import SufficientStats
from tests.bench.lake_fixtures import write_batch

from .test_stats import assert_same_state

MODEL = "resnet50-random0-224"


def rows_of(batch_id: str, x: np.ndarray, model_id: str = MODEL) -> list[dict]:
    return [{"image_uri": f"s3://b/{batch_id}/{i}.jpg", "label": "Kiwi", "pca": [0.0], "model_id": model_id,
             "pca_version": 1, "features": list(v)} for i, v in enumerate(x)]


def test_rows_statistics_of_a_batch_of_all_but_a_batch_and_of_nothing(tmp_path: Path, monkeypatch) -> None:
    # GIVEN two batches of one model (float32 as stored) and a batch of another model
    rng = np.random.default_rng(0)
    xa, xb = (rng.standard_normal((n, 4)).astype(np.float32) for n in (7, 5))
    write_batch(tmp_path, "a", rows_of("a", xa))
    write_batch(tmp_path, "b", rows_of("b", xb))
    write_batch(tmp_path, "c", rows_of("c", xb * 10, model_id="other"))
    lake = tables.Lake.at(str(tmp_path))
    monkeypatch.setattr(table_stats, "CHUNK_ROWS", 3)  # several chunks merged
    # WHEN statistics are read for batch a, for every row but batch a, and for a batch that does not exist
    # THEN they equal the statistics of those float32 rows widened to float64
    assert_same_state(table_stats.rows_statistics(lake, MODEL, 4, batch_id="a"),
                      SufficientStats.from_array(xa.astype(np.float64)), rtol=1e-12)
    assert_same_state(table_stats.rows_statistics(lake, MODEL, 4, exclude_batch="a"),
                      SufficientStats.from_array(xb.astype(np.float64)), rtol=1e-12)
    assert table_stats.rows_statistics(lake, MODEL, 4, batch_id="zzz").n == 0
    assert table_stats.rows_statistics(tables.Lake.at(str(tmp_path / "empty")), MODEL, 4).n == 0
    # AND a dimension that does not match the stored vectors is an error
    with pytest.raises(ValueError, match="expected 8"):
        table_stats.rows_statistics(lake, MODEL, 8, batch_id="a")
