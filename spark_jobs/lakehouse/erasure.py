"""Erasure of images from the lake (GDPR): rows deleted from every table, the PCA downdated exactly.

Every erasure is first appended to the lake's ``erasures`` ledger
(:func:`spark_jobs.lakehouse.liveness.record_erasures`: URI or prefix, with the erasure's version stamp), so no job run
committing later writes a row for an erased version again (:mod:`spark_jobs.lakehouse.liveness`). Only the rows whose
version is not newer than the erasure (``not is_newer(row, erasure)``, docs/contracts.md "Version order") are erased, in
``features`` and ``rejects``: a photo uploaded again after its delete keeps its row. For each model with such rows, one
erasure is three steps, each atomic:

1. **PCA version** (commit marker: its JSON): the statistics of the erased rows' feature vectors (float32 as
   stored, widened to float64, as the batch statistics were) are computed per source batch; the request
   (``pca/<model_id>/erase_requests/<erasure_id>.json``: the row filter) is stored, then a new version (kind
   ``erase``, its JSON lists the rows removed per source batch) whose state is the previous one downdated by them
   (:func:`spark_jobs.pca.stats.downdate`, the exact inverse of the Chan–Golub–LeVeque merge;
   ``spark_jobs.pca.versions``).
2. **Delete** the rows from ``features`` in one Iceberg commit (snapshot summary ``fruits.pca_version``,
   ``fruits.erasure_id``, ``fruits.model_id``); the version then lands (``pca/<model_id>/LATEST.json``).
3. **Done**: the request file is removed.

Killed between 1 and 2, the PCA already excludes rows the table still holds: the next erasure or batch commit of
that model first calls :func:`complete_pending`, which re-applies the delete of a latest version whose request
file is still there (roll forward), then removes the file. So at rest the PCA state of a model always equals
the statistics of its current ``features`` rows. ``rejects`` rows of the images are deleted too (no PCA).
Deleted rows stay in older snapshots until they expire: ``fruits expire`` (retention, default 30 days) removes
the snapshots and the data files only they reference. ``near_duplicates`` pairs naming an erased photo are
deleted last (:func:`spark_jobs.lakehouse.near_duplicates.delete_pairs`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, NotEqualTo, NotIn, Or, StartsWith

from lambdas.contracts import VersionStamp, is_newer
from spark_jobs import storage
from spark_jobs.lakehouse import liveness, near_duplicates, tables
from spark_jobs.pca import versions as pca
from spark_jobs.pca.stats import SufficientStats

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
    pairs_deleted: int = 0  # near_duplicates rows naming an erased photo

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
    """The row filter a stored request describes: ``rows`` (``{batch_id: [image_uri, …]}``: exactly those rows),
    else ``uris`` / ``prefix`` with an optional ``keep_batch`` (rows of other batches only: one batch id, or the
    list of a job run's batch ids)."""
    if spec.get("rows"):
        parts = [And(EqualTo("batch_id", batch_id), liveness.uri_filter(uris))
                 for batch_id, uris in spec["rows"].items()]
        where = parts[0]
        for part in parts[1:]:
            where = Or(where, part)
        return where
    where = row_filter(spec["uris"], spec["prefix"])
    keep = spec.get("keep_batch")
    if not keep:
        return where
    if isinstance(keep, str):  # one batch (requests written before job runs took several batches)
        return And(where, NotEqualTo("batch_id", keep))
    return And(where, NotIn("batch_id", set(keep)) if len(keep) > 1 else NotEqualTo("batch_id", keep[0]))


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
    lake: tables.Lake, lake_uri: str, model_id: str, uris: Sequence[str], *, keep_batch: str | Sequence[str]
) -> ModelErasure | None:
    """Remove older rows of ``uris`` (rows of ``model_id`` in batches other than ``keep_batch``), PCA downdated.

    Called by the job right after its run committed the rows (featurized or rejected) of ``keep_batch`` (one batch
    id, or the batch ids of a job run): an overwritten photo then has one row, its newest content, or none when its
    newest version was rejected. The job commits only live versions (:mod:`spark_jobs.lakehouse.liveness`: none older
    than a row of the key), so every other row of ``uris`` is of an older or the same version. Same steps and crash
    safety as an erasure (module doc); erasure id ``<first keep_batch>-s<6 hex>``.
    """
    if not uris:
        return None
    keep = keep_batch if isinstance(keep_batch, str) else tables.batch_ids_of(keep_batch)
    spec = {"uris": sorted(set(uris)), "prefix": None, "keep_batch": keep}
    first = keep if isinstance(keep, str) else keep_batch[0]
    return erase_model(lake, lake_uri, model_id, _spec_filter(spec), spec, f"{first}-s{uuid.uuid4().hex[:6]}")


def erase_images(
    lake_uri: str,
    uris: Sequence[str] = (),
    *,
    prefix: str | None = None,
    catalog: str | None = None,
    erasure_id: str | None = None,
    stamps: Mapping[str, VersionStamp] | None = None,
    reasons: Mapping[str, str | None] | None = None,
) -> ErasureReport:
    """Erase images (exact ``image_uri`` values and/or every URI under ``prefix``) from every model of the lake.

    First the erasures are recorded in the ``erasures`` ledger (:func:`spark_jobs.lakehouse.liveness.record_erasures`),
    so no job run committing later (a re-run of an old batch, a late run) writes a row for an erased version again;
    then, per model, the ``features`` rows whose version is not newer than the erasure
    (``not is_newer(row, erasure)``, docs/contracts.md "Version order") are deleted (module doc steps 1-3): a
    version uploaded after the erasure keeps its row. ``rejects`` rows of the images are deleted the same way.

    Args:
        lake_uri: lake root (local directory or ``s3://``). catalog: ``sql:PATH | glue[:DATABASE]`` (default:
            the SQLite file next to a local lake). erasure_id: recorded in the PCA version JSON, the erasure ledger and
            snapshot summaries (default: ``e<UTC time>-<8 hex>``).
        stamps: ``image_uri`` -> stamp of its erasure (a batch's erasure list: the delete event's); URIs without
            one, and ``prefix``, get ``VersionStamp(None, <now>, None)`` (a request: every version before now).
        reasons: ``image_uri`` -> ``deleted`` (the object was deleted from the bucket) or ``request`` (an erasure
            request; the default).

    Returns:
        What was deleted per model (a model with no matching row is not listed) and the rejects rows deleted.

    Raises:
        ErasureError: nothing selected. ValueError / storage.ObjectExistsError: see :func:`erase_model`.
    """
    where = row_filter(uris, prefix)
    requested = VersionStamp(None, datetime.now(UTC).isoformat(), None)
    erasures = {uri: (stamps or {}).get(uri) or requested for uri in uris}
    spec_base = {"uris": sorted(set(uris)), "prefix": prefix or None}
    erasure_id = erasure_id or f"e{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    lake = tables.Lake.at(lake_uri, catalog)
    liveness.record_erasures(lake, erasures, erasure_id=erasure_id, reasons=reasons or {}, prefix=prefix,
                             prefix_stamp=requested)
    models = []
    dead_features = _dead_rows(lake, where, erasures, prefix, requested)
    for model_id, dead in dead_features.items():
        spec = {**spec_base, "rows": dead}
        done = erase_model(lake, lake_uri, model_id, _spec_filter(spec), spec, erasure_id)
        if done is not None:
            models.append(done)
    rejects_deleted = 0
    dead_rejects = _dead_rows(lake, where, erasures, prefix, requested, tables.REJECTS)
    if dead_rejects:
        parts = [And(EqualTo("model_id", model_id), _spec_filter({"rows": by_batch}))
                 for model_id, by_batch in dead_rejects.items()]
        delete = parts[0]
        for part in parts[1:]:
            delete = Or(delete, part)
        rejects = lake.table(tables.REJECTS)
        rejects_deleted = rejects.scan(row_filter=delete, selected_fields=("image_uri",)).to_arrow().num_rows
        rejects.delete(delete_filter=delete, snapshot_properties={"fruits.erasure_id": erasure_id})
    # near_duplicates: every pair naming an erased row's photo, after its feature rows are gone (no batch can re-pair
    # it); a version uploaded after the erasure keeps its row and its pairs
    erased_uris = sorted({uri for by_batch in dead_features.values() for batch in by_batch.values() for uri in batch})
    pairs_deleted = near_duplicates.delete_pairs(lake, erased_uris,
                                                 snapshot_properties={"fruits.erasure_id": erasure_id})
    return ErasureReport(erasure_id, models, rejects_deleted, pairs_deleted)


def _dead_rows(
    lake: tables.Lake, where: BooleanExpression, erasures: Mapping[str, VersionStamp], prefix: str | None,
    prefix_stamp: VersionStamp, name: str = tables.FEATURES,
) -> dict[str, dict[str, list[str]]]:
    """``model_id`` -> ``batch_id`` -> image URIs of the rows of table ``name`` matching ``where`` whose version is
    not newer than their erasure (one scan of the stamp columns, no feature vectors)."""
    if not lake.exists(name):
        return {}
    fields = ("image_uri", "model_id", "batch_id", "sequencer", "event_time", "last_modified", "version_id")
    rows = lake.table(name).scan(row_filter=where, selected_fields=fields).to_arrow().to_pylist()
    dead: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        uri = row["image_uri"]
        applicable = [erasures[uri]] if uri in erasures else []
        if prefix and uri.startswith(prefix):
            applicable.append(prefix_stamp)
        if any(not is_newer(liveness.row_stamp(row), erasure) for erasure in applicable):
            dead.setdefault(row["model_id"], {}).setdefault(row["batch_id"], []).append(uri)
    return {m: {b: sorted(set(u)) for b, u in sorted(by.items())} for m, by in sorted(dead.items())}
