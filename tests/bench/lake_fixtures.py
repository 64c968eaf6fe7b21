"""Build tiny synthetic lakes (pyarrow, no Spark) shaped like docs/contracts.md "Lake layout"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CLASSES = ("Apple Braeburn", "Banana", "Kiwi")


def write_batch(lake: Path, batch_id: str, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with image_uri, label, pca, model_id, pca_version) as one features partition."""
    part = lake / "features" / f"batch_id={batch_id}"
    part.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "image_uri": [r["image_uri"] for r in rows],
        "label": [r["label"] for r in rows],
        "features": pa.array([list(map(float, r.get("features", [0.0] * 4))) for r in rows],
                             type=pa.list_(pa.float32())),
        "pca": pa.array([list(map(float, r["pca"])) for r in rows], type=pa.list_(pa.float32())),
        "pca_version": pa.array([r["pca_version"] for r in rows], type=pa.int32()),
        "model_id": [r["model_id"] for r in rows],
    })
    path = part / "part-00000.parquet"
    pq.write_table(table, path)
    return path


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
