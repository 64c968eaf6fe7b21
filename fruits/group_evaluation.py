"""Group-aware evaluation: the linear probe scored on a split that keeps each near-duplicate group on one side.

Fruits-360 photos are frames of one video per fruit: a random 75/25 split puts near-identical frames on both sides
and measures near-duplicate lookup, not recognition. Here the rows are grouped by the connected components of the
``near_duplicates`` pairs (:func:`spark_jobs.lakehouse.near_duplicates.components`; computed from the features when the
lake has no such table) and split with scikit-learn's ``StratifiedGroupKFold`` (4 folds, shuffled, the probe's seed;
the first fold is the test side, so about 25 % as in the naive split): no group on both sides.
The naive stratified split (``train_test_split``) is scored on the same rows, and for each split the number of
groups and photos on each side, and the test photos whose group also has a training photo (leaks), are reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fruits.cli.errors import CliError

GROUP_FOLDS = 4  # 1 fold of 4 held out = the naive split's 25 %


@dataclass(frozen=True)
class SplitScore:
    """One split of the same rows: accuracy, and photos / groups on each side; ``leaked_test_photos`` = test photos
    whose near-duplicate group also has a training photo."""

    name: str
    accuracy: float
    train_photos: int
    train_groups: int
    test_photos: int
    test_groups: int
    leaked_test_photos: int
    unseen_test_classes: int


@dataclass(frozen=True)
class GroupAwareResult:
    """Naive and group-aware scores over ``rows`` rows of one model; ``groups``: near-duplicate groups among them
    (singletons included), ``grouped_photos``: photos in a group of 2 or more; ``source`` of the groups."""

    rows: int
    groups: int
    grouped_photos: int
    min_similarity: float | None
    source: str
    test_share: float
    naive: SplitScore
    group_aware: SplitScore

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


def lake_groups(lake: Path, model_id: str, uris: list[str], catalog: str | None = None,
                min_similarity: float | None = None) -> tuple[np.ndarray, str, float | None]:
    """Near-duplicate group label of each of ``uris`` (rows of ``model_id``): components of the ``near_duplicates``
    pairs (>= ``min_similarity`` when given); a lake without that table: pairs computed now from the features at
    ``min_similarity`` (default :data:`spark_jobs.lakehouse.near_duplicates.DEFAULT_MIN_SIMILARITY`).

    Returns:
        ``(labels int (n,), source description, threshold used or None for "as recorded")``.
    """
    from spark_jobs.lakehouse import near_duplicates as nd
    from spark_jobs.lakehouse import tables

    ref = tables.Lake.at(str(lake), catalog)
    if ref.exists(nd.NEAR_DUPLICATES):
        pairs = nd.live_pairs(ref, model_id, min_similarity)
        return nd.components(uris, pairs), "near_duplicates table", min_similarity
    threshold = nd.DEFAULT_MIN_SIMILARITY if min_similarity is None else min_similarity
    rows = tables.scan(ref, tables.FEATURES, model_id=model_id, columns=("image_uri", "features"))
    vectors = nd.vectors_of(rows.column("features"))
    found = nd.all_pairs(rows.column("image_uri").to_pylist(), vectors, threshold,
                         mean=vectors.astype(np.float64).mean(axis=0) if len(vectors) else None)
    pairs = nd.pair_rows(found, model_id=model_id, batch_id="evaluate")
    return nd.components(uris, pairs), "computed now from the features (no near_duplicates table)", threshold


def _score(name: str, make_probe: Callable[[], Any], x: np.ndarray, labels: np.ndarray, groups: np.ndarray,
           train: np.ndarray, test: np.ndarray) -> SplitScore:
    probe = make_probe()
    probe.fit(x[train], labels[train])
    accuracy = float((probe.predict(x[test]) == labels[test]).mean())
    train_groups = set(groups[train].tolist())
    return SplitScore(
        name, accuracy, len(train), len(train_groups), len(test), len(set(groups[test].tolist())),
        int(sum(g in train_groups for g in groups[test])), len(set(labels[test]) - set(labels[train])),
    )


def group_aware_probe(x: np.ndarray, labels: list[str], groups: np.ndarray, make_probe: Callable[[], Any], *,
                      test_share: float = 0.25, seed: int = 0, min_similarity: float | None = None,
                      source: str = "") -> GroupAwareResult:
    """Score the probe on a naive stratified split and on a group-aware split of the same rows (module doc).

    Args:
        x: float (n, k) probe inputs. labels: n class labels. groups: n group labels. make_probe: a new unfitted
            scikit-learn classifier (``fruits evaluate``'s probe). test_share, seed: of the naive split.

    Raises:
        CliError: fewer than 2 groups, or a class with fewer than 2 rows (no naive stratified split).
    """
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    y = np.asarray(labels, dtype=object)
    n = len(y)
    index = np.arange(n)
    n_groups = len(set(groups.tolist()))
    if n_groups < GROUP_FOLDS:
        raise CliError(f"only {n_groups} near-duplicate group(s) among {n} photos: no group-aware split possible")
    _, counts = np.unique(y.astype(str), return_counts=True)
    if counts.min() < 2:
        raise CliError("a class has fewer than 2 photos: no stratified split possible")
    train, test = train_test_split(index, test_size=test_share, stratify=y, random_state=seed)
    naive = _score("naive", make_probe, x, y, groups, train, test)
    splitter = StratifiedGroupKFold(n_splits=GROUP_FOLDS, shuffle=True, random_state=seed)
    g_train, g_test = next(splitter.split(x, y.astype(str), groups))
    aware = _score("group-aware", make_probe, x, y, groups, g_train, g_test)
    sizes = np.bincount(np.unique(groups, return_inverse=True)[1])
    return GroupAwareResult(n, n_groups, int(sizes[sizes > 1].sum()), min_similarity, source, test_share, naive,
                            aware)


def print_group_report(result: GroupAwareResult) -> None:
    """Print the two scores side by side with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    threshold = "as recorded" if result.min_similarity is None else f">= {result.min_similarity}"
    table = Table(title=f"Naive vs group-aware split — {result.rows} rows, {result.groups} near-duplicate groups "
                        f"({result.grouped_photos} photos in groups of 2+; pairs {threshold}, {result.source})")
    for name in ("split", "accuracy", "train photos", "train groups", "test photos", "test groups",
                 "test leaked", "test classes unseen"):
        table.add_column(name, justify="left" if name == "split" else "right")
    for s in (result.naive, result.group_aware):
        table.add_row(s.name, f"{s.accuracy:.4f}", str(s.train_photos), str(s.train_groups), str(s.test_photos),
                      str(s.test_groups), str(s.leaked_test_photos), str(s.unseen_test_classes))
    console.print(table)
    console.print(f"naive: stratified {1 - result.test_share:.0%}/{result.test_share:.0%} split ignoring groups; "
                  f"group-aware: StratifiedGroupKFold, 1 of {GROUP_FOLDS} folds held out, no group on both sides; "
                  "test leaked = test photos whose near-duplicate group has a training photo")
    console.print(f"naive accuracy: {result.naive.accuracy:.4f}   group-aware accuracy: "
                  f"{result.group_aware.accuracy:.4f}")
