"""The lake's report PNG (``fruits report``, and the demo's ``report.png``): what a person asks of a lake.

Top: the explained variance ratio of the latest PCA version (zoomed on the components where it moves, with the
cumulative curve and the components needed for 90 % / 95 % / 99 %), and every stored feature vector projected on
that version's first two components, by label. Bottom, one bar per batch: seconds per stage (stacked), images/s,
and time-to-feature (``ingested_at`` − the row's event time) when the feature rows carry an event time column.

Everything is read through :func:`read_lake` (the Iceberg tables of :mod:`spark_jobs.lakehouse.tables` and the PCA store
of :mod:`spark_jobs.pca.versions`), so a lake written by ``fruits demo``, ``fruits featurize`` or AWS draws the same
way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or CI
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa

from spark_jobs import storage
from spark_jobs.lakehouse import tables
from spark_jobs.pca.versions import PcaVersion, load_version

EVENT_TIME_COLUMNS = ("recorded_at", "event_time")  # rows carrying one of these get a time-to-feature panel
STAGE_COLOURS = plt.get_cmap("tab10").colors


@dataclass(frozen=True)
class LakeView:
    """What the report draws, read from one lake for one ``model_id``.

    ``features``: Arrow rows (``features`` 2048 float32, ``label``, ``ingested_at``, an event time column if any),
    at most ``max_points`` evenly sampled; ``batches``: the per-batch report dicts (``seconds`` per stage,
    ``images_per_second``, ``counts``), oldest commit first; ``pca``: the latest PCA version of ``model_id``.
    """

    lake: str
    model_id: str
    features: pa.Table
    batches: list[dict[str, Any]]
    pca: PcaVersion


def read_lake(lake: str, model_id: str | None = None, catalog: str | None = None, max_points: int = 5000) -> LakeView:
    """Read what the report needs from the lake at ``lake`` (local directory or ``s3://``).

    ``model_id`` defaults to the one with the most feature rows. Raises ``FileNotFoundError`` when the lake has no
    feature rows (for ``model_id``) or no PCA version, ``ValueError`` for an unknown ``model_id``.
    """
    ref = tables.Lake.at(lake, catalog)
    if not ref.exists(tables.FEATURES):
        raise FileNotFoundError(f"no features table in {lake}: featurize some images first (fruits featurize/demo)")
    models = tables.scan(ref, tables.FEATURES, columns=("model_id",)).column("model_id").to_pylist()
    if not models:
        raise FileNotFoundError(f"the features table of {lake} is empty")
    if model_id is None:
        model_id = max(sorted(set(models)), key=models.count)
    elif model_id not in models:
        raise ValueError(f"model_id {model_id!r} not in {lake} (it has {', '.join(sorted(set(models)))})")
    version = load_version(lake, model_id)
    if version is None:
        raise FileNotFoundError(f"no PCA version for {model_id} in {lake}")
    rows = tables.scan(ref, tables.FEATURES, model_id=model_id)
    if rows.num_rows > max_points:
        rows = rows.take(np.linspace(0, rows.num_rows - 1, max_points).astype(int))
    batch_rows = tables.scan(ref, tables.BATCHES, model_id=model_id, columns=("committed_at", "report"))
    reports = [json.loads(text) for text in batch_rows.column("report").to_pylist() if text]
    reports.sort(key=lambda r: (str(r.get("committed_at", "")), r.get("batch_id", "")))
    return LakeView(lake, model_id, rows, reports, version)


def components_to_show(ratio: np.ndarray, reach: float = 0.995, minimum: int = 10) -> int:
    """How many leading components the variance panel shows: up to where the cumulative ratio reaches ``reach``
    (the curve is flat after that), at least ``minimum`` (or all there are)."""
    cumulative = np.cumsum(ratio)
    needed = int(np.searchsorted(cumulative, reach * cumulative[-1]) + 1) if cumulative.size else 0
    return min(ratio.size, max(minimum, int(np.ceil(needed * 1.15))))


def _variance_panel(ax: plt.Axes, view: LakeView) -> None:
    fit = view.pca.fit
    ratio = fit.explained_variance_ratio[: fit.k_effective] * 100
    shown = components_to_show(ratio / 100)
    ks = np.arange(1, shown + 1)
    ax.bar(ks, ratio[:shown], color="tab:blue", alpha=0.65, label="per component")
    rest = f"first {shown} of k={fit.k}; the rest add < 0.5 %" if shown < ratio.size else f"all {shown}"
    ax.set(xlabel=f"principal component ({rest})", ylabel="explained variance ratio (%)", xlim=(0.3, shown + 0.7))
    twin = ax.twinx()
    cumulative = np.cumsum(ratio)
    twin.plot(ks, cumulative[:shown], color="tab:red", marker=".", label="cumulative")
    twin.set(ylabel="cumulative (%)", ylim=(0, 101))
    for level in (90, 95, 99):
        if cumulative.size and cumulative[-1] >= level:
            k = int(np.searchsorted(cumulative, level) + 1)
            if k <= shown:
                twin.axhline(level, color="grey", lw=0.6, ls=":")
                twin.annotate(f"{level} % at k={k}", (k, level), textcoords="offset points", xytext=(6, -12),
                              fontsize=8, color="tab:red")  # fmt: skip
    total = float(cumulative[-1]) if cumulative.size else 0.0
    ax.set_title(f"PCA v{view.pca.version} of {view.model_id}: n={view.pca.state.n} images, "
                 f"k={fit.k} keeps {total:.1f} %", fontsize=10)  # fmt: skip
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center right", fontsize=8)


def _projection_panel(ax: plt.Axes, view: LakeView) -> None:
    features = np.asarray(view.features.column("features").to_pylist(), dtype=np.float64)
    labels = np.asarray([label or "(none)" for label in view.features.column("label").to_pylist()])
    coords = (features - view.pca.state.mean) @ view.pca.fit.components[:2].T
    palette = [*plt.get_cmap("tab20").colors, *plt.get_cmap("tab20b").colors]  # 40 distinct colours
    markers = "o^sD"
    size = 40 if len(labels) < 200 else 8
    for index, label in enumerate(sorted(set(labels))):
        mask = labels == label
        colour, marker = palette[index % len(palette)], markers[(index // len(palette)) % len(markers)]
        ax.scatter(coords[mask, 0], coords[mask, 1], s=size, color=colour, marker=marker, label=label, alpha=0.8)
    ratio = view.pca.fit.explained_variance_ratio
    ax.set(xlabel=f"PC 1 ({ratio[0]:.0%} of the variance)", ylabel=f"PC 2 ({ratio[1]:.0%})" if ratio.size > 1 else "")
    ax.set_title(f"{len(labels)} feature vectors on PCA v{view.pca.version}, by label", fontsize=10)
    ax.legend(fontsize=7, markerscale=1.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              ncol=1 if len(set(labels)) <= 30 else 2)  # fmt: skip


def _batch_names(view: LakeView) -> list[str]:
    return [str(r.get("batch_id", "?"))[:16] for r in view.batches]


def _stages_panel(ax: plt.Axes, view: LakeView) -> None:
    names = _batch_names(view)
    stages = list(dict.fromkeys(stage for r in view.batches for stage in r.get("seconds", {})))
    left = np.zeros(len(names))
    for index, stage in enumerate(stages):
        seconds = np.array([float(r.get("seconds", {}).get(stage, 0.0)) for r in view.batches])
        ax.barh(names, seconds, left=left, color=STAGE_COLOURS[index % len(STAGE_COLOURS)], label=stage)
        left += seconds
    ax.invert_yaxis()  # oldest batch on top
    ax.set(xlabel="seconds (stacked by stage)")
    ax.set_title("seconds per stage per batch", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    ax.tick_params(axis="y", labelsize=7)


def _throughput_panel(ax: plt.Axes, view: LakeView) -> None:
    names = _batch_names(view)
    rates = [float(r.get("images_per_second") or 0.0) for r in view.batches]
    sizes = [int(r.get("counts", {}).get("listed", 0)) for r in view.batches]
    bars = ax.barh(names, rates, color="tab:green")
    for bar, size in zip(bars, sizes, strict=True):
        ax.annotate(f"{size} img", (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7)  # fmt: skip
    ax.invert_yaxis()
    ax.set(xlabel="images/s (featurize stage)")
    ax.set_title("throughput per batch", fontsize=10)
    ax.tick_params(axis="y", labelsize=7)


def _time_to_feature_panel(ax: plt.Axes, view: LakeView) -> None:
    column = next((c for c in EVENT_TIME_COLUMNS if c in view.features.column_names), None)
    if column is None or "ingested_at" not in view.features.column_names:
        ax.axis("off")
        ax.text(0.5, 0.5, "time-to-feature: the feature rows carry no event time\n"
                f"(a column {' or '.join(EVENT_TIME_COLUMNS)} next to ingested_at)",
                ha="center", va="center", fontsize=9, color="grey", transform=ax.transAxes)  # fmt: skip
        return
    pairs = zip(view.features.column("ingested_at").cast(pa.timestamp("us", "UTC")).to_pylist(),
                view.features.column(column).cast(pa.timestamp("us", "UTC")).to_pylist(), strict=True)
    minutes = np.array([(done - event).total_seconds() / 60 for done, event in pairs if done and event], dtype=float)
    if not minutes.size:  # rows written before the column existed, or found by listing: no event time
        ax.axis("off")
        ax.text(0.5, 0.5, f"time-to-feature: no row has a {column}", ha="center", va="center", fontsize=9,
                color="grey", transform=ax.transAxes)
        return
    ax.hist(minutes, bins=30, color="tab:purple")
    ax.axvline(float(np.median(minutes)), color="black", ls="--", label=f"median {np.median(minutes):.1f} min")
    ax.axvline(float(np.percentile(minutes, 95)), color="tab:red", ls=":",
               label=f"p95 {np.percentile(minutes, 95):.1f} min")  # fmt: skip
    ax.legend(fontsize=8)
    ax.set(xlabel=f"minutes from {column} to ingested_at", ylabel="images")
    ax.set_title("time-to-feature", fontsize=10)


def draw_report(view: LakeView, output: Path) -> Path:
    """Draw ``view`` into the PNG ``output`` (parent folders created) and return ``output``."""
    fig = plt.figure(figsize=(18, 12))
    top, bottom = fig.add_gridspec(2, 1, height_ratios=[1.1, 1], hspace=0.38)
    upper = top.subgridspec(1, 2, width_ratios=[1, 1.1], wspace=0.32)
    lower = bottom.subgridspec(1, 3, wspace=0.45)
    _variance_panel(fig.add_subplot(upper[0]), view)
    _projection_panel(fig.add_subplot(upper[1]), view)
    if view.batches:
        _stages_panel(fig.add_subplot(lower[0]), view)
        _throughput_panel(fig.add_subplot(lower[1]), view)
    _time_to_feature_panel(fig.add_subplot(lower[2]), view)
    rows = sum(int(r.get("counts", {}).get("featurized", 0)) for r in view.batches)
    fig.suptitle(f"Fruits! lake {view.lake} — {view.model_id}: {len(view.batches)} batches, {rows} images featurized",
                 fontsize=12)  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return output


def write_report_png(
    lake: Path | str, model_id: str | None = None, output: Path | None = None, catalog: str | None = None
) -> Path:
    """Draw the report of ``lake`` (default output ``<lake>/report.png``, local lakes) and return its path.

    Raises ``FileNotFoundError`` / ``ValueError`` as :func:`read_lake`; ``ValueError`` when an ``s3://`` lake is
    given no ``output``.
    """
    lake_uri = str(lake)
    if output is None:
        if storage.is_s3(lake_uri):
            raise ValueError("the lake is on S3: name the output file (-o report.png)")
        output = storage.local_path(lake_uri) / "report.png"
    return draw_report(read_lake(lake_uri, model_id, catalog), Path(output))
