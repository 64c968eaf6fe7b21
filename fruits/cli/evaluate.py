"""``fruits evaluate --lake DIR [--model-id ID]``: linear probe of the lake's PCA coordinates.

The probe is the standard way to judge frozen features (Alain & Bengio 2016, "Understanding intermediate layers
using linear classifier probes", arXiv:1610.01644): a multinomial logistic regression (scikit-learn
``LogisticRegression``, lbfgs, on standardised inputs) is trained on the rows whose ``image_uri`` contains
``/Training/`` and scored on the rows whose ``image_uri`` contains ``/Test/`` (the Fruits-360 split); the label of
a row is the folder directly containing its image. Features of different ``model_id`` are never mixed.

The Training rows are then scored twice more, on a naive stratified 75/25 split and on a group-aware split that
keeps each near-duplicate group (connected components of the ``near_duplicates`` pairs) on one side
(:mod:`fruits.group_evaluation`): both accuracies are printed, with the groups and photos on each side.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fruits.cli.errors import CliError
from fruits.cli.types import existing_dir
from lambdas.logic import keys

TRAIN_MARKER = "/Training/"
TEST_MARKER = "/Test/"
PROBE_SEED = 0
PROBE_MAX_ITER = 2000
# Held-out share of the Training rows when the lake has no Test rows (the demo uploads Training only)
FALLBACK_TEST_SHARE = 0.25
HOW_TO_SPLIT = ("upload labelled photos under images/Training/<label>/ and images/Test/<label>/ "
                "(e.g. aws s3 sync ../shared/data/fruits-360-sample/Test s3://$BUCKET/images/Test/)")


@dataclass(frozen=True)
class ProbeTable:
    """PCA coordinates of the lake rows of one model_id.

    ``x``: float64 (n, k); ``labels``/``image_uris``: length n; ``pca_versions``: distinct versions in use.
    """

    model_id: str
    x: np.ndarray
    labels: list[str]
    image_uris: list[str]
    pca_versions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClassScore:
    """Per-class figures on the Test rows: support (rows), correct, recall (= per-class accuracy), precision."""

    label: str
    support: int
    correct: int
    recall: float
    precision: float


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`linear_probe`; ``accuracy`` = correct Test rows / Test rows (0..1)."""

    model_id: str
    pca_versions: list[str]
    split: str
    k: int
    n_train: int
    n_test: int
    n_classes: int
    accuracy: float
    per_class: list[ClassScore]
    unseen_test_labels: list[str]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (per-class rows as dicts)."""
        return asdict(self)


def folder_label(image_uri: str) -> str:
    """Label of an image = name of the folder directly containing it (``…/Training/Apple/1.jpg`` -> ``Apple``)."""
    return keys.folder_label(image_uri) or ""


def _latest_pca(lake: Path, model_id: str):
    """Latest committed PCA version of ``model_id`` in the lake (``spark_jobs.pca.versions``), or None."""
    try:
        from spark_jobs.pca.versions import load_version
    except ImportError:  # the CLI without the spark extra: stored coordinates only
        return None
    return load_version(str(lake), model_id)


def read_probe_table(lake: Path, model_id: str | None = None, catalog: str | None = None) -> ProbeTable:
    """PCA coordinates of one model_id, all on the same PCA version (PyIceberg scan, no Spark).

    Rows keep their stored ``pca`` when it was computed with the latest committed PCA version of the model_id
    (``<lake>/pca/<model_id>/``); older rows are re-projected from their stored ``features`` exactly as
    ``spark_jobs.lakehouse.reports.read_projected`` does: ``pca = components @ (features - mean)``.

    Args:
        lake: local lake root (its ``features`` Iceberg table).
        model_id: keep only rows of this model_id; None means "the only model_id in the lake".
        catalog: the lake's catalog setting (default: the SQLite catalog ``<lake>/catalog.db``).

    Raises:
        CliError: no features, unknown model_id, several model_ids without ``--model-id``, rows on several PCA
            versions with no committed version to re-project on, or ragged PCA vectors.
    """
    from fruits.similarity import SimilarityError, choose_model
    from spark_jobs.lakehouse import tables

    lake_ref = tables.Lake.at(str(lake), catalog)
    if not lake_ref.exists(tables.FEATURES):
        raise CliError(f"no features table in the lake at {lake} (catalog {lake_ref.catalog}): run a batch first")
    try:
        model_id = choose_model(lake_ref, model_id)
    except SimilarityError as err:
        raise CliError(str(err)) from None
    columns = ("image_uri", "label", "pca", "model_id", "pca_version")
    table = tables.scan(lake_ref, tables.FEATURES, model_id=model_id, columns=(*columns, "features"))
    stored_versions = sorted({int(v) for v in table["pca_version"].to_pylist()})
    vectors = table["pca"].to_pylist()
    latest = _latest_pca(lake, model_id) if stored_versions else None
    if latest is not None and stored_versions != [latest.version]:
        stale = np.array([int(v) != latest.version for v in table["pca_version"].to_pylist()])
        raw = table["features"]
        x = np.asarray(raw.take(np.flatnonzero(stale)).to_pylist(), dtype=np.float64)
        projected = (x - latest.mean) @ latest.fit.components.T
        for row, vector in zip(np.flatnonzero(stale), projected, strict=True):
            vectors[row] = vector
        versions = [str(latest.version)]
    elif len(stored_versions) > 1:
        raise CliError(f"rows of {model_id} carry PCA coordinates from {len(stored_versions)} PCA versions "
                       f"({', '.join(map(str, stored_versions))}) and no committed PCA version to re-project on")
    else:
        versions = [str(v) for v in stored_versions]
    lengths = {len(v) if v is not None else 0 for v in vectors}
    if len(lengths) != 1 or 0 in lengths:
        raise CliError(f"PCA vectors of {model_id} have inconsistent lengths {sorted(lengths)}")
    uris = [str(u) for u in table["image_uri"].to_pylist()]
    stored = table["label"].to_pylist() if "label" in columns else [None] * len(uris)
    labels = [lab if lab else folder_label(uri) for lab, uri in zip(stored, uris, strict=True)]
    return ProbeTable(model_id, np.asarray(vectors, dtype=np.float64), labels, uris, versions)


def linear_probe(table: ProbeTable) -> ProbeResult:
    """Train the logistic-regression probe on Training rows, score it on Test rows (see module docstring).

    Without Test rows (``fruits demo`` uploads the Training photos only) the probe falls back to a stratified
    split of the Training rows (``FALLBACK_TEST_SHARE`` held out, seed ``PROBE_SEED``) and says so in ``split``.

    Raises:
        CliError: no Training rows, fewer than 2 classes among Training rows, or (fallback) a class with fewer
            than 2 rows.
    """
    uris = np.asarray(table.image_uris, dtype=object)
    labels = np.asarray(table.labels, dtype=object)
    train = np.array([TRAIN_MARKER in u for u in uris], dtype=bool)
    test = np.array([TEST_MARKER in u for u in uris], dtype=bool)
    split = "Training rows -> Test rows (the Fruits-360 split)"
    if not train.any():
        raise CliError(f"no rows under {TRAIN_MARKER} among {len(uris)} rows: {HOW_TO_SPLIT}")
    train_classes = sorted(set(labels[train]))
    if len(train_classes) < 2:
        raise CliError(f"need at least 2 classes among Training rows, found {len(train_classes)}")
    if not test.any():
        train, test = _stratified_split(labels, train)
        split = (f"no Test rows: stratified {1 - FALLBACK_TEST_SHARE:.0%}/{FALLBACK_TEST_SHARE:.0%} split of the "
                 f"Training rows; for the real split {HOW_TO_SPLIT}")
    probe = make_probe()
    probe.fit(table.x[train], labels[train])
    predicted = probe.predict(table.x[test])
    truth = labels[test]
    hits = predicted == truth
    per_class = []
    for label in sorted(set(truth)):
        mask = truth == label
        n_predicted = int((predicted == label).sum())
        correct = int(hits[mask].sum())
        per_class.append(ClassScore(label, int(mask.sum()), correct, correct / int(mask.sum()),
                                    correct / n_predicted if n_predicted else 0.0))
    return ProbeResult(
        model_id=table.model_id,
        pca_versions=list(table.pca_versions),
        split=split,
        k=int(table.x.shape[1]),
        n_train=int(train.sum()),
        n_test=int(test.sum()),
        n_classes=len(train_classes),
        accuracy=float(hits.mean()),
        per_class=per_class,
        unseen_test_labels=sorted(set(truth) - set(train_classes)),
    )


def _stratified_split(labels: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, test) splitting the ``rows`` mask by label (scikit-learn ``train_test_split``)."""
    from sklearn.model_selection import train_test_split

    index = np.flatnonzero(rows)
    counts: dict[str, int] = {}
    for label in labels[index]:
        counts[label] = counts.get(label, 0) + 1
    if min(counts.values()) < 2:
        rare = sorted(label for label, n in counts.items() if n < 2)
        raise CliError(f"no Test rows, and classes with fewer than 2 Training rows cannot be split: "
                       f"{', '.join(rare[:5])}; {HOW_TO_SPLIT}")
    fit, held_out = train_test_split(index, test_size=FALLBACK_TEST_SHARE, stratify=labels[index],
                                     random_state=PROBE_SEED)
    train, test = np.zeros(len(labels), dtype=bool), np.zeros(len(labels), dtype=bool)
    train[fit], test[held_out] = True, True
    return train, test


def evaluate_lake(lake: Path, model_id: str | None = None, catalog: str | None = None) -> ProbeResult:
    """Read the lake's PCA coordinates of one model_id and run the linear probe (see :func:`linear_probe`)."""
    return linear_probe(read_probe_table(lake, model_id, catalog))


def print_report(result: ProbeResult) -> None:
    """Print accuracy, the model_id and a per-class table with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Linear probe on PCA coordinates — model_id {result.model_id}")
    for name in ("class", "test rows", "correct", "recall", "precision"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for score in result.per_class:
        table.add_row(score.label, str(score.support), str(score.correct), f"{score.recall:.3f}",
                      f"{score.precision:.3f}")
    console.print(table)
    console.print(f"model_id: {result.model_id}   PCA version(s): {', '.join(result.pca_versions) or 'n/a'}   "
                  f"k = {result.k}")
    console.print(f"train rows: {result.n_train}   test rows: {result.n_test}   classes: {result.n_classes}")
    console.print(f"split: {result.split}")
    if result.unseen_test_labels:
        console.print(f"Test classes absent from Training (always wrong): {', '.join(result.unseen_test_labels)}")
    console.print(f"accuracy: {result.accuracy:.4f}")


def make_probe():
    """A new unfitted probe: standardised inputs -> multinomial logistic regression (module doc)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER, random_state=PROBE_SEED))


def evaluate_groups(lake: Path, table: ProbeTable, catalog: str | None = None, min_similarity: float | None = None):
    """Naive vs group-aware split of the Training rows (:mod:`fruits.group_evaluation`), same probe."""
    from fruits.group_evaluation import group_aware_probe, lake_groups

    pool = np.flatnonzero([TRAIN_MARKER in u for u in table.image_uris])
    uris = [table.image_uris[i] for i in pool]
    groups, source, threshold = lake_groups(lake, table.model_id, uris, catalog, min_similarity)
    return group_aware_probe(table.x[pool], [table.labels[i] for i in pool], groups, make_probe,
                             test_share=FALLBACK_TEST_SHARE, seed=PROBE_SEED, min_similarity=threshold,
                             source=f"{source}; Training rows")


def run(args: argparse.Namespace) -> int:
    """``fruits evaluate`` handler: probe the lake, print the report, then the naive and group-aware scores;
    returns 0 (errors raise CliError)."""
    from fruits.group_evaluation import print_group_report

    table = read_probe_table(args.lake, args.model_id, args.catalog)
    print_report(linear_probe(table))
    try:
        groups = evaluate_groups(args.lake, table, args.catalog, args.min_similarity)
    except CliError as err:  # too few groups or rows for a group-aware split: the probe above still stands
        print(f"group-aware split: not possible ({err})")
        return 0
    print_group_report(groups)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="linear probe (logistic regression) of the lake's PCA features: Training rows vs Test rows",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--lake", required=True, type=existing_dir, help="local lake root (its Iceberg tables)")
    parser.add_argument("--catalog", default=None, help="catalog setting (default: sql:<lake>/catalog.db)")
    parser.add_argument("--model-id", default=None, help="model_id to evaluate (required if the lake holds several)")
    parser.add_argument("--min-similarity", type=float, default=None,
                        help="near-duplicate pairs kept for the groups of the group-aware split (default: as recorded)")
    parser.set_defaults(func=run)
