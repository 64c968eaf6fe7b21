"""Erasure of images from the lake (GDPR): rows deleted from every table, the PCA downdated exactly.

For each model with rows of the erased images, one erasure is three steps, each atomic:

1. **PCA version** (commit marker: its JSON): the statistics of the erased rows' feature vectors (float32 as
   stored, widened to float64, as the batch statistics were) are computed per source batch; the request
   (``pca/<model_id>/erase_requests/<erasure_id>.json``: the row filter) is stored, then a new version (kind
   ``erase``, its JSON lists the rows removed per source batch) whose state is the previous one downdated by them
   (:func:`spark_jobs.stats.downdate`, the exact inverse of the Chan–Golub–LeVeque merge; ``spark_jobs.pca``).
2. **Delete** the rows from ``features`` in one Iceberg commit (snapshot summary ``fruits.pca_version``,
   ``fruits.erasure_id``, ``fruits.model_id``); the version then lands (``pca/<model_id>/LATEST.json``).
3. **Done**: the request file is removed.

Killed between 1 and 2, the PCA already excludes rows the table still holds: the next erasure or batch commit of
that model first calls :func:`complete_pending`, which re-applies the delete of a latest version whose request
file is still there (roll forward), then removes the file. So at rest the PCA state of a model always equals
the statistics of its current ``features`` rows. ``rejects`` rows of the images are deleted too (no PCA).
Deleted rows stay in older snapshots until they expire: ``fruits expire`` (retention, default 30 days) removes
the snapshots and the data files only they reference.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, NotEqualTo, Or, StartsWith

from spark_jobs import pca, storage, tables
from spark_jobs.stats import SufficientStats

KIND_ERASE = "erase"


class ErasureError(ValueError):
    """Nothing to select (no URI and no prefix), or a malformed request."""


@dataclass(frozen=True)
class ModelErasure:
    """What one erasure did to one model: feature rows deleted and the PCA version that excludes them."""

    model_id: str
    rows: int
    pca_version: int
    n_total: int


@dataclass(frozen=True)
class ErasureReport:
    """One erasure over every model; ``models`` is empty when no feature row matched."""

    erasure_id: str
    models: list[ModelErasure] = field(default_factory=list)
    rejects_deleted: int = 0

    @property
    def rows(self) -> int:
        """Feature rows deleted over all models."""
        return sum(m.rows for m in self.models)


def row_filter(uris: Sequence[str] = (), prefix: str | None = None) -> BooleanExpression:
    """Iceberg filter of the rows of ``uris`` (exact ``image_uri`` values) and/or of every URI under ``prefix``.

    Raises:
        ErasureError: neither URIs nor a non-empty prefix.
    """
    parts: list[BooleanExpression] = []
    if uris:
        parts.append(In("image_uri", set(uris)) if len(set(uris)) > 1 else EqualTo("image_uri", next(iter(uris))))
    if prefix:
        parts.append(StartsWith("image_uri", prefix))
    if not parts:
        raise ErasureError("nothing to erase: give image URIs or a non-empty prefix")
    return parts[0] if len(parts) == 1 else Or(parts[0], parts[1])


def _spec_filter(spec: dict) -> BooleanExpression:
    """The row filter a stored request describes (``uris``, ``prefix``, optional ``keep_batch``)."""
    where = row_filter(spec["uris"], spec["prefix"])
    return And(where, NotEqualTo("batch_id", spec["keep_batch"])) if spec.get("keep_batch") else where


def _request_uri(lake_uri: str, model_id: str, erasure_id: str) -> str:
    return storage.join(pca.model_dir(lake_uri, model_id), "erase_requests", f"{erasure_id}.json")


def complete_pending(lake: tables.Lake, lake_uri: str, model_id: str) -> str | None:
    """Roll forward an erasure of ``model_id`` killed after its PCA version (step 2 then 3 of the module doc).

    Returns the erasure id it completed, or None when nothing was pending. Call before planning a new version.
    """
    latest = pca.latest_version(lake_uri, model_id)
    candidates = [] if latest is None else [pca.read_metadata(lake_uri, model_id, latest)]
    for meta in [*candidates, *pca.pending(lake_uri, model_id)]:
        if meta["kind"] != pca.KIND_ERASE:
            continue
        erasure_id = meta["batch_id"].split(":", 1)[1]
        request = _request_uri(lake_uri, model_id, erasure_id)
        if not storage.exists(request):  # done: only the pointer update was lost (a no-op if it was not)
            pca.land(lake_uri, model_id, int(meta["version"]))
            continue
        spec = json.loads(storage.read_bytes(request))
        _delete_rows(lake, model_id, _spec_filter(spec), int(meta["version"]), erasure_id)
        pca.land(lake_uri, model_id, int(meta["version"]))
        storage.delete(request)
        return erasure_id
    return None


def _delete_rows(lake: tables.Lake, model_id: str, where: BooleanExpression, version: int, erasure_id: str) -> None:
    table = lake.table(tables.FEATURES)
    table.delete(
        delete_filter=And(EqualTo("model_id", model_id), where),
        snapshot_properties={"fruits.pca_version": str(version), "fruits.erasure_id": erasure_id,
                             "fruits.model_id": model_id},
    )


def _statistics_by_batch(rows: pa.Table) -> dict[str, SufficientStats]:
    """Exact statistics of the rows' feature vectors per source batch (float32 widened to float64)."""
    by_batch: dict[str, SufficientStats] = {}
    batch_ids = rows.column("batch_id").to_pylist()
    vectors = rows.column("features").to_pylist()
    for batch_id in sorted(set(batch_ids)):
        x = np.asarray([v for b, v in zip(batch_ids, vectors, strict=True) if b == batch_id], dtype=np.float32)
        by_batch[batch_id] = SufficientStats.from_array(x.astype(np.float64))
    return by_batch


def erase_model(
    lake: tables.Lake, lake_uri: str, model_id: str, where: BooleanExpression, spec: dict, erasure_id: str
) -> ModelErasure | None:
    """Erase the rows of ``model_id`` matching ``where`` (module doc steps 1–3); None if no row matches.

    Driver memory: the matching rows' feature vectors (2,048 float32 = 8 KiB each) plus O(d^2) for the state.

    Raises:
        ValueError: the model has rows but no committed PCA version (a lake written outside the job).
        storage.ObjectExistsError (or its subclass pca.ConcurrentCommitError): a concurrent commit of the same model
        won or is in flight (run the erasure again).
    """
    complete_pending(lake, lake_uri, model_id)
    table = lake.table(tables.FEATURES)
    selected = And(EqualTo("model_id", model_id), where)
    if table.scan(row_filter=selected, selected_fields=("image_uri",)).to_arrow().num_rows == 0:
        return None  # the common case is cheap: one column read, no feature vectors
    rows = table.scan(row_filter=selected, selected_fields=("image_uri", "batch_id", "features")).to_arrow()
    base = pca.resolve_base(lake_uri, model_id, batch_id=None, landed=pca.landed_in_features(lake, model_id))
    if base.version is None:
        raise ValueError(f"{model_id}: feature rows but no PCA version under {pca.model_dir(lake_uri, model_id)}")
    planned = pca.plan_erasure(pca.load_version(lake_uri, model_id, base.version), base.next_version, erasure_id,
                               _statistics_by_batch(rows))
    storage.write_bytes(_request_uri(lake_uri, model_id, erasure_id), json.dumps(spec).encode(), exclusive=True)
    pca.commit_version(lake_uri, planned, land_now=False)  # step 1: the commit marker
    _delete_rows(lake, model_id, where, planned.version, erasure_id)  # step 2
    pca.land(lake_uri, model_id, planned.version)
    storage.delete(_request_uri(lake_uri, model_id, erasure_id))  # step 3
    return ModelErasure(model_id, rows.num_rows, planned.version, planned.state.n)


def supersede(
    lake: tables.Lake, lake_uri: str, model_id: str, uris: Sequence[str], *, keep_batch: str
) -> ModelErasure | None:
    """Remove older rows of ``uris`` (rows of ``model_id`` in batches other than ``keep_batch``), PCA downdated.

    Called by the job right after batch ``keep_batch`` committed its rows: an overwritten photo then has one row,
    its newest content (the manifest side never featurizes a late event of an older version; the latest commit
    wins). Same steps and crash safety as an erasure (module doc); erasure id ``<keep_batch>-s<6 hex>``.
    """
    if not uris:
        return None
    spec = {"uris": sorted(set(uris)), "prefix": None, "keep_batch": keep_batch}
    return erase_model(lake, lake_uri, model_id, _spec_filter(spec), spec, f"{keep_batch}-s{uuid.uuid4().hex[:6]}")


def erase_images(
    lake_uri: str,
    uris: Sequence[str] = (),
    *,
    prefix: str | None = None,
    catalog: str | None = None,
    erasure_id: str | None = None,
) -> ErasureReport:
    """Erase images (exact ``image_uri`` values and/or every URI under ``prefix``) from every model of the lake.

    Args:
        lake_uri: lake root (local directory or ``s3://``). catalog: ``sql:PATH | glue[:DATABASE]`` (default:
            the SQLite file next to a local lake). erasure_id: recorded in the PCA version JSON and snapshot summaries
            (default: ``e<UTC time>-<8 hex>``).

    Returns:
        What was deleted per model (a model with no matching row is not listed) and the rejects rows deleted.

    Raises:
        ErasureError: nothing selected. ValueError / storage.ObjectExistsError: see :func:`erase_model`.
    """
    where = row_filter(uris, prefix)
    spec = {"uris": sorted(set(uris)), "prefix": prefix or None}
    erasure_id = erasure_id or f"e{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    lake = tables.Lake.at(lake_uri, catalog)
    models = []
    for model_id in tables.model_ids(lake):
        done = erase_model(lake, lake_uri, model_id, where, spec, erasure_id)
        if done is not None:
            models.append(done)
    rejects_deleted = 0
    if lake.exists(tables.REJECTS):
        rejects = lake.table(tables.REJECTS)
        rejects_deleted = rejects.scan(row_filter=where, selected_fields=("image_uri",)).to_arrow().num_rows
        if rejects_deleted:
            rejects.delete(delete_filter=where, snapshot_properties={"fruits.erasure_id": erasure_id})
    return ErasureReport(erasure_id, models, rejects_deleted)
