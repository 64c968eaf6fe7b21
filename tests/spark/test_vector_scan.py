"""vector_scan reads exactly the rows (and vectors) a PyIceberg scan returns, after deletes and overwrites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pyiceberg.expressions import EqualTo

from spark_jobs.lakehouse import tables, vector_scan
from tests.bench.lake_fixtures import separable_rows, write_batch


def reference(lake: tables.Lake, model_id: str, exclude_batch: str | None, exclude_uris: list[str]) -> dict:
    where = vector_scan.model_filter(model_id, exclude_batch, exclude_uris)
    rows = lake.table(tables.FEATURES, create=False).scan(row_filter=where).to_arrow()
    return dict(zip(rows.column("image_uri").to_pylist(), rows.column("features").to_pylist(), strict=True))


def test_model_rows_equal_a_pyiceberg_scan(tmp_path: Path) -> None:
    # GIVEN two models, three batches of one of them, then one batch re-run (its old file replaced) and a row
    # deleted from another batch (the file rewritten)
    rng = np.random.default_rng(0)
    for batch, model, seed in (("b1", "m-a", 1), ("b2", "m-a", 2), ("b3", "m-a", 3), ("b4", "m-b", 4)):
        rows = separable_rows(model_id=model, seed=seed)
        for i, row in enumerate(rows):
            row["image_uri"] = f"s3://b/images/{batch}/{i}.jpg"
            row["features"] = rng.normal(size=6)
        lake = write_batch(tmp_path, batch, rows)
    rerun = separable_rows(model_id="m-a", seed=9)[:5]
    for i, row in enumerate(rerun):
        row["image_uri"], row["features"] = f"s3://b/images/b2/{i}.jpg", rng.normal(size=6)
    write_batch(tmp_path, "b2", rerun)
    lake.table(tables.FEATURES).delete(EqualTo("image_uri", "s3://b/images/b3/7.jpg"))
    for exclude_batch, exclude_uris in ((None, []), ("b1", ["s3://b/images/b3/0.jpg", "s3://b/images/b2/1.jpg"])):
        # WHEN the rows of model m-a are read in small chunks, with and without exclusions
        got: dict[str, list[float]] = {}
        for part, vectors in vector_scan.model_rows(lake, "m-a", columns=("image_uri", "label"), chunk_rows=7,
                                                    exclude_batch=exclude_batch, exclude_uris=exclude_uris):
            assert vectors.dtype == np.float32 and vectors.shape == (part.num_rows, 6)
            got.update(zip(part.column("image_uri").to_pylist(), vectors.tolist(), strict=True))
        # THEN they are exactly the scan's rows with the same vectors
        want = reference(lake, "m-a", exclude_batch, exclude_uris)
        assert got.keys() == want.keys() and len(got) > 0
        for uri, vector in want.items():
            np.testing.assert_array_equal(np.float32(got[uri]), np.float32(vector))
    # AND the models come from partition metadata, as tables.model_ids reads them from the rows
    assert vector_scan.partition_models(lake) == tables.model_ids(lake) == ["m-a", "m-b"]
    # AND read_model of a model without rows is empty
    rows, vectors = vector_scan.read_model(lake, "m-none")
    assert rows.num_rows == 0 and len(vectors) == 0
