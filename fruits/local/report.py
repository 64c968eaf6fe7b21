"""`report.png` of a lake: explained variance curve + 2-D projection on the latest PCA version, by label."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or CI
import matplotlib.pyplot as plt
import numpy as np

from spark_jobs import tables
from spark_jobs.pca import load_version


def write_report_png(lake: Path, max_points: int = 5000) -> Path:
    """Draw ``<lake>/report.png`` and return its path.

    Left: explained variance ratio of the latest PCA version (per component and cumulative, in %).
    Right: every stored feature vector (at most ``max_points``, evenly sampled) projected on that version's
    first two components — from the raw ``features`` column, so rows written under older versions are
    projected on the latest one too — coloured by ``label``. Uses the most frequent ``model_id``.

    Raises ``FileNotFoundError`` if the lake has no features or no PCA version for that ``model_id``.
    """
    lake_ref = tables.Lake.at(str(lake))
    if not lake_ref.exists(tables.FEATURES):
        raise FileNotFoundError(f"no features table in {lake}")
    table = tables.scan(lake_ref, tables.FEATURES, columns=("features", "label", "model_id"))
    models = table.column("model_id").to_pylist()
    model_id = max(set(models), key=models.count)
    version = load_version(str(lake), model_id)
    if version is None:
        raise FileNotFoundError(f"no PCA version for {model_id} in {lake}")
    keep = np.flatnonzero(np.asarray(models) == model_id)
    if keep.size > max_points:
        keep = keep[np.linspace(0, keep.size - 1, max_points).astype(int)]
    features = np.asarray(table.column("features").take(keep).to_pylist(), dtype=np.float64)
    labels = np.asarray([label or "(none)" for label in table.column("label").take(keep).to_pylist()])
    coords = (features - version.mean) @ version.fit.components[:2].T

    fig, (left, right) = plt.subplots(1, 2, figsize=(17, 6.5), gridspec_kw={"width_ratios": [1, 1.25]})
    ratio = version.fit.explained_variance_ratio[: version.fit.k_effective] * 100
    ks = np.arange(1, ratio.size + 1)
    left.bar(ks, ratio, color="tab:blue", alpha=0.6, label="per component")
    left.plot(ks, np.cumsum(ratio), color="tab:red", label="cumulative")
    left.set(xlabel="principal component", ylabel="explained variance (%)", ylim=(0, 100))
    left.set_title(f"PCA v{version.version} of {model_id}: n={version.state.n}, k={version.fit.k}")
    left.legend(loc="center right")
    palette = [*plt.get_cmap("tab20").colors, *plt.get_cmap("tab20b").colors]  # 40 distinct colours
    markers = "o^sD"
    for index, label in enumerate(sorted(set(labels))):
        mask = labels == label
        colour, marker = palette[index % len(palette)], markers[(index // len(palette)) % len(markers)]
        right.scatter(coords[mask, 0], coords[mask, 1], s=6, color=colour, marker=marker, label=label)
    right.set(xlabel="PC 1", ylabel="PC 2", title="feature vectors on the latest PCA version, by label")
    right.legend(fontsize=7, markerscale=2, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    path = lake / "report.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
