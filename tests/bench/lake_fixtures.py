"""Build tiny synthetic lakes (pyarrow + PyIceberg, no Spark) shaped like docs/contracts.md "Lake tables"."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from spark_jobs.lakehouse import tables

CLASSES = ("Apple Braeburn", "Banana", "Kiwi")


def write_batch(lake: Path, batch_id: str, rows: list[dict]) -> tables.Lake:
    """Commit ``rows`` (dicts with image_uri, label, pca, model_id, pca_version; one model_id) as one batch run
    of the ``features`` table of the lake at ``lake`` (its default SQLite catalog)."""
    (model_id,) = {r["model_id"] for r in rows}
    n = len(rows)
    table = pa.table({
        "image_uri": [r["image_uri"] for r in rows],
        "label": [r["label"] for r in rows],
        "content_sha256": pa.nulls(n, pa.string()),
        "width": pa.nulls(n, pa.int32()),
        "height": pa.nulls(n, pa.int32()),
        "features": pa.array([list(map(float, r.get("features", [0.0] * 4))) for r in rows],
                             type=pa.list_(pa.float32())),
        "pca": pa.array([list(map(float, r["pca"])) for r in rows], type=pa.list_(pa.float32())),
        "pca_version": pa.array([r["pca_version"] for r in rows], type=pa.int32()),
        "model_id": [model_id] * n,
        "ingested_at": pa.array([dt.datetime(2026, 11, 1, tzinfo=dt.UTC)] * n, type=pa.timestamp("us", tz="UTC")),
        "batch_id": [batch_id] * n,
    })
    target = tables.Lake.at(str(lake))
    tables.replace_batch_rows(target, tables.FEATURES, table, batch_id=batch_id, model_id=model_id)
    return target


def separable_rows(model_id: str = "resnet50-random0-224", per_class: tuple[int, int] = (12, 4), k: int = 5,
                   seed: int = 0, pca_version: int = 1) -> list[dict]:
    """Gaussian clusters, one per class, far apart: a linear probe must score 1.0 on them."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, label in enumerate(CLASSES):
        centre = np.zeros(k)
        centre[c] = 20.0
        for split, count in zip(("Training", "Test"), per_class, strict=True):
            for i in range(count):
                rows.append({"image_uri": f"/data/fruits/{split}/{label}/{i}_100.jpg", "label": label,
                             "pca": centre + rng.normal(size=k), "model_id": model_id, "pca_version": pca_version})
    return rows
