"""Near-duplicate photos: exact cosine search over one model's feature vectors, and the ``near_duplicates`` table.

Similarity is the cosine of the **full feature vectors centred on the model's mean** (2,048 float32 as stored in
``features.features``, minus the mean feature vector of the model's rows: the mean of the PCA version the batch run
commits, which equals the mean of the model's current rows), not of the PCA coordinates:

* every batch run projects its rows on the PCA version of that run, so the ``pca`` column of a model mixes
  coordinate systems (one per version) and a cosine across versions means nothing; re-projecting the history on
  the latest version needs the full vectors anyway;
* centred, not raw: ResNet50 features are averages of ReLU outputs, all >= 0, so raw cosines crowd near 1 (on the
  Fruits-360 sample every pair of photos, same fruit or not, is above 0.95; bench/results/near_duplicates.json);
  centring removes the direction all photos share and spreads them (Pearson correlation of the two vectors).

The cost (8 KiB per history row read and decoded; 128 multiply-adds per pair, 2,048 for a batch of at most
256 photos) is measured in ``bench/near_duplicates.py``.

A batch run records, for each of its new photos, every other photo of the same model with cosine similarity
``>= min_similarity`` (:data:`DEFAULT_MIN_SIMILARITY`, job argument ``--near-duplicate-similarity``):

* against the model's other rows (``features`` rows of ``model_id`` from other batches), read chunk by chunk
  (:func:`spark_jobs.lakehouse.vector_scan.model_rows`: the two columns needed, ``image_uri`` and ``features``, decoded
  on a thread one chunk ahead) and compared chunk by chunk (:func:`pairs_above`: an exact candidate filter, then float64
  cosines; driver memory O(batch x chunk), never the whole history at once);
* between the batch's own photos (each unordered pair once).

Each unordered pair is stored once, by the batch that last featurized one of its two photos (``image_uri`` = that
batch's photo). One Iceberg commit replaces the batch's pairs and deletes every pair of another batch naming one of
the batch's photos (an overwritten photo's pairs are replaced; a re-run replaces its pairs; a pair recorded by a
later batch moves to the re-run one, never twice). Erasure deletes every pair naming an erased photo
(:func:`delete_pairs`, called by :func:`spark_jobs.lakehouse.erasure.erase_images`); readers also keep only pairs whose
both photos still have a ``features`` row (:func:`live_pairs`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysFalse, And, BooleanExpression, EqualTo, In, Or, StartsWith

from spark_jobs.lakehouse import tables, vector_scan
from spark_jobs.lakehouse.vector_scan import model_filter as history_filter  # noqa: F401 - the module's public name
from spark_jobs.lakehouse.vector_scan import vectors_of

NEAR_DUPLICATES = tables.NEAR_DUPLICATES
# Cosine similarity of full feature vectors at or above which two photos are near-duplicates. Chosen from the
# similarity distribution MEASURED on the Fruits-360 sample (bench/near_duplicates.py --measure-sample, figures in
# bench/results/near_duplicates.json "sample"): see the README "Near-duplicates" for the figures behind it.
DEFAULT_MIN_SIMILARITY = 0.996
# History rows compared per matrix product: 2,048 x 2,048 float32 = 16 MiB, plus the (batch x chunk) products.
# Smaller than the 8,192 rows (64 MiB) used before 2026-12-05: memory blocks that large are fresh pages for every chunk
# (the allocator hands them back to the system), and the first search of a process then took 2.4-3.2 s instead of
# 1.3-1.4 s at 100k rows (bench/near_duplicates.py; the matrix products stay large enough to run at full speed).
CHUNK_ROWS = 2048


@dataclass(frozen=True)
class Neighbour:
    """One search hit: ``index`` into the searched rows, ``image_uri`` and cosine ``similarity`` in [-1, 1]."""

    index: int
    image_uri: str
    similarity: float


def unit_rows(vectors: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``vectors`` (n, d) minus ``mean`` (d,) when given, scaled to unit L2 norm, as float32; all-zero rows
    stay zero (cosine 0 with all). The dot product of two such rows is their (centred) cosine similarity.

    Raises:
        ValueError: ``vectors`` is not 2-D, or ``mean`` is not (d,).
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of feature vectors, got shape {x.shape}")
    if mean is not None:
        centre = np.asarray(mean, dtype=np.float32)
        if centre.shape != (x.shape[1],):
            raise ValueError(f"mean of shape {centre.shape} for vectors of dimension {x.shape[1]}")
        x = x - centre
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def history_chunks(
    lake: tables.Lake, model_id: str, exclude_batch: str | Sequence[str] | None = None,
    exclude_uris: Sequence[str] = (), chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """The ``features`` rows of ``model_id`` (minus ``exclude_batch`` and ``exclude_uris``) as ``(image_uris,
    vectors float32 (m, d))`` chunks of about ``chunk_rows`` rows, streamed and decoded one chunk ahead on a
    background thread (:func:`spark_jobs.lakehouse.vector_scan.model_rows`: only ``image_uri`` and ``features``
    decoded)."""
    for rows, vectors in vector_scan.model_rows(lake, model_id, exclude_batch=exclude_batch,
                                                exclude_uris=exclude_uris, chunk_rows=chunk_rows):
        yield rows.column("image_uri").to_pylist(), vectors


# Float32 rounding bound of a dot product of d terms (Higham, "Accuracy and Stability of Numerical Algorithms",
# 2nd ed., Eq. 3.5: |fl(x.y) - x.y| <= gamma_d |x|.|y|, gamma_d = d u / (1 - d u), u = 2**-24 for float32).
_UNIT_ROUNDOFF = 2.0**-24
# Coordinates the candidate filter compares in (:class:`_ChunkSearch`): 128 of 2,048 makes the per-pair work 16x
# smaller than the full product while keeping the filter tight (bench/near_duplicates.py).
PROJECTION_DIM = 128
_CHECK_PAIRS = 4096  # candidate pairs checked in float64 per step (4,096 x 2,048 float64 = 64 MiB)
# History rows centred at a time by the filter: 128 x 2,048 float32 = 1 MiB, so the centred block is still in the
# core's L2 cache when its norms and filter columns are read (measured: centring a whole 8,192-row chunk first took
# most of the search's compute time at 100k rows, bench/near_duplicates.py)
_CENTRE_ROWS = 128


def _hits(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero(mask)`` of a 2-D boolean (n, m) mask that is almost all False, faster: the columns holding a
    hit first (one vectorised reduction), then ``nonzero`` over those columns only. Same indices, same order."""
    columns = np.flatnonzero(mask.any(axis=0))
    if not len(columns):
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    rows, at = np.nonzero(mask[:, columns])
    return rows, columns[at]


def _gamma(d: int) -> float:
    return d * _UNIT_ROUNDOFF / (1 - d * _UNIT_ROUNDOFF)


def _coordinates(unit: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` coordinates (sorted indices) in which the batch's centred unit rows ``unit`` (n, d) vary most: the
    projection on them (rows of the identity: orthonormal exactly, applied by indexing, no LAPACK call, which under
    load costs more than the whole filter) keeps most of the distance between two photos."""
    spread = np.einsum("ij,ij->j", unit, unit)
    return np.sort(np.argsort(spread, kind="stable")[::-1][:k])


class _ChunkSearch:
    """The candidate filter and float64 check of :func:`pairs_above` for one batch, its buffers reused across
    history chunks.

    A batch of more than 2k photos (k = :data:`PROJECTION_DIM`): for unit vectors a, b, cos(a, b) >= t  <=>
    |a - b| <= r = sqrt(2 (1 - t)); the projection P on k coordinates (:func:`_coordinates`) never lengthens a
    vector, so every pair at or above the threshold has |P a - P b| <= r. The filter computes P a for the batch
    (float64) and P b for each history row in float32 (centring, normalising) and keeps the pairs with
    |P a - P b| <= r + eps_b, where eps_b bounds the float32 error of P b (u per subtraction / division, Higham
    Eq. 3.5 for the norm, the mean's float32 rounding |mean - mean32| / |b - mean|), doubled. The kept pairs'
    cosines are then computed in float64 from the full vectors and compared with t: the result equals a float64
    brute-force search.
    A smaller batch: the full float32 product of centred unit vectors, kept when it reaches t minus its float32
    error bound, then the same float64 check.
    """

    def __init__(self, vectors: np.ndarray, mean: np.ndarray | None, min_similarity: float) -> None:
        x64 = np.asarray(vectors, dtype=np.float64)
        self.d = x64.shape[1]
        self.mean64 = np.zeros(self.d) if mean is None else np.asarray(mean, dtype=np.float64)
        self.mean32 = self.mean64.astype(np.float32)
        centred = x64 - self.mean64
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        self.unit64 = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)
        self.t = float(min_similarity)
        u, gamma_d = _UNIT_ROUNDOFF, _gamma(self.d)
        self.eps_mean = 4 * float(np.linalg.norm(self.mean64 - self.mean32))  # divided by |b - mean| per row
        # a batch of at most 2 x PROJECTION_DIM photos: the full product costs no more than the projection
        self.project = len(x64) > 2 * PROJECTION_DIM
        if self.project:
            self.columns = _coordinates(self.unit64, PROJECTION_DIM)
            self.batch32 = self.unit64[:, self.columns].astype(np.float32)
            self.half_sq = (0.5 * (self.batch32.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)
            self.radius = np.sqrt(max(2.0 * (1.0 - self.t), 0.0))
            # P b in float32: u per subtraction and division, gamma_d + u in the norm; doubled, + the batch side's u
            self.eps_rel = 2 * (gamma_d + 4 * u) + 2 * u
            self.slack = 4 * _gamma(len(self.columns)) + 16 * u  # the projected dot products and subtractions
            self.product = np.empty((len(x64), 0), dtype=np.float32)
        else:
            self.unit32 = self.unit64.astype(np.float32)
            # |error| of g_ij = unit32_i . fl(y_j - mean32) against unit_i . (y_j - mean): gamma_d |y_j - mean32|
            # (product) + 2u |y_j - mean32| (unit32 rounding, centring) + |mean - mean32|; |y_j - mean| is known to
            # gamma_d relative + |mean - mean32|. Four times that is the slack.
            self.rel_slack = 4 * (gamma_d + 2 * u) * (1 + abs(self.t))
            self.product = np.empty((len(x64), 0), dtype=np.float32)
        self.centred = np.empty((0, self.d), dtype=np.float32)

    def _buffers(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """The (m, d) centred rows (full product only) and (n, m) product buffers, grown when needed."""
        if self.product.shape[1] < m:
            self.product = np.empty((len(self.unit64), m), dtype=np.float32)
        if not self.project and len(self.centred) < m:
            self.centred = np.empty((m, self.d), dtype=np.float32)
        return self.centred[:m], self.product[:, :m]

    def _centred_norms_and_columns(self, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(|b - mean32|`` float32 (m,), ``(b - mean32)`` on the filter's columns float32 (m, k)) for the rows b of
        ``other`` (m, d), centred :data:`_CENTRE_ROWS` rows at a time in a buffer that stays in cache: the same
        float32 operations row by row as centring the whole chunk, without writing and re-reading a (m, d) copy."""
        m = len(other)
        norms = np.empty(m, dtype=np.float32)
        projected = np.empty((m, len(self.columns)), dtype=np.float32)
        if len(self.centred) < _CENTRE_ROWS:
            self.centred = np.empty((_CENTRE_ROWS, self.d), dtype=np.float32)
        for start in range(0, m, _CENTRE_ROWS):
            stop = min(start + _CENTRE_ROWS, m)
            block = self.centred[: stop - start]
            np.subtract(other[start:stop], self.mean32, out=block)
            np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float32), dtype=np.float32, out=norms[start:stop])
            np.take(block, self.columns, axis=1, out=projected[start:stop])
        return norms, projected

    def pairs(self, other: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(batch rows, other rows, cosines float64)`` of the pairs with centred cosine >= the threshold."""
        other = np.ascontiguousarray(other, dtype=np.float32)
        if not self.project:
            centred, product = self._buffers(len(other))
            np.subtract(other, self.mean32, out=centred)
            norms = np.sqrt(np.einsum("ij,ij->i", centred, centred, dtype=np.float32), dtype=np.float32)
            np.matmul(self.unit32, centred.T, out=product)
            bound = self.t * norms.astype(np.float64) - (self.rel_slack * norms + self.eps_mean * (1 + abs(self.t)))
            rows, cols = _hits(product >= np.nextafter(bound.astype(np.float32), np.float32(-np.inf)))
            return self._check(other, rows, cols)
        norms, projected = self._centred_norms_and_columns(other)
        product = self._buffers(len(other))[1]
        np.divide(projected, norms[:, None], out=projected, where=norms[:, None] > 0)
        projected[norms == 0] = 0.0
        with np.errstate(divide="ignore"):
            reach = self.radius + self.eps_rel + np.where(norms > 0, self.eps_mean / norms.astype(np.float64), np.inf)
        # |Pa - Pb|^2 <= R^2  <=>  Pa.Pb - |Pa|^2 / 2 >= (|Pb|^2 - R^2) / 2
        bound = 0.5 * (np.einsum("ij,ij->i", projected, projected).astype(np.float64) - reach**2) - self.slack
        np.matmul(self.batch32, projected.T, out=product)
        product -= self.half_sq[:, None]
        rows, cols = _hits(product >= np.nextafter(bound.astype(np.float32), np.float32(-np.inf)))
        return self._check(other, rows, cols)

    def _check(self, other: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
        """The float64 cosine of the candidate pairs (from the full vectors); those >= the threshold."""
        if not len(rows):
            return rows, cols, np.zeros(0)
        ucols = np.unique(cols)
        if len(rows) * 8 > len(self.unit64) * len(ucols):  # dense: one product over the candidate columns
            centred = other[ucols].astype(np.float64) - self.mean64
            norms = np.linalg.norm(centred, axis=1)
            ci = np.searchsorted(ucols, cols)
            dots = (self.unit64 @ centred.T)[rows, ci]
            norms = norms[ci]
        else:  # sparse: pair by pair, in steps of _CHECK_PAIRS
            dots, norms = np.empty(len(rows)), np.empty(len(rows))
            for s in range(0, len(rows), _CHECK_PAIRS):
                r, c = rows[s : s + _CHECK_PAIRS], cols[s : s + _CHECK_PAIRS]
                centred = other[c].astype(np.float64) - self.mean64
                norms[s : s + _CHECK_PAIRS] = np.linalg.norm(centred, axis=1)
                dots[s : s + _CHECK_PAIRS] = np.einsum("ij,ij->i", self.unit64[r], centred)
        sims = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        keep = sims >= self.t
        return rows[keep], cols[keep], sims[keep]


def pairs_above(
    uris: Sequence[str],
    vectors: np.ndarray,
    history: Iterable[tuple[Sequence[str], np.ndarray]],
    min_similarity: float,
    mean: np.ndarray | None = None,
) -> list[tuple[str, str, float]]:
    """Every pair (batch photo, other photo, cosine) with cosine ``>= min_similarity``: each batch photo against
    every history row, and the batch's photos among themselves (pair ``i < j`` once, never a photo with itself).

    Exact: a filter on 128 coordinates keeps every pair whose cosine can reach the threshold (a proven bound,
    float32 rounding included: :class:`_ChunkSearch`), then the cosine of those candidates is computed in float64
    from the full vectors and compared with the threshold, so the result equals a float64 brute-force search.
    Cost per pair: 128 multiply-adds instead of 2,048 (batches of more than 256 photos).

    Args:
        uris: the batch's n photos. vectors: their feature vectors, (n, d). history: ``(uris, vectors (m, d))``
            chunks (e.g. :func:`history_chunks`). min_similarity: cosine threshold in [-1, 1]. mean: (d,) the
            centre (module doc); None: raw cosine.

    Returns:
        ``(image_uri, duplicate_uri, similarity)`` triples (float64 cosines), sorted by image_uri then similarity
        descending.
    """
    out: list[tuple[str, str, float]] = []
    if not len(uris):
        return out
    search = _ChunkSearch(vectors, mean, min_similarity)
    for other_uris, other in history:
        if not len(other_uris):
            continue
        rows, cols, sims = search.pairs(other)
        out.extend((uris[i], other_uris[j], float(s)) for i, j, s in zip(rows, cols, sims, strict=True))
    within = search.unit64 @ search.unit64.T
    rows, cols = np.nonzero(np.triu(within >= min_similarity, k=1))
    out.extend((uris[i], uris[j], float(within[i, j])) for i, j in zip(rows, cols, strict=True))
    out.sort(key=lambda t: (t[0], -t[2], t[1]))
    return out


def top_k(
    query: np.ndarray, uris: Sequence[str], vectors: np.ndarray, k: int, exclude: str | None = None,
    mean: np.ndarray | None = None,
) -> list[Neighbour]:
    """The ``k`` rows most similar to ``query`` (d,) by cosine (centred on ``mean`` when given), best first (ties
    by URI); ``exclude`` (the query's own URI) is left out. Exact: one matrix-vector product over ``vectors`` (n, d).
    """
    if len(uris) == 0 or k <= 0:
        return []
    q = unit_rows(np.asarray(query, dtype=np.float32).reshape(1, -1), mean)[0]
    sims = unit_rows(vectors, mean) @ q
    if exclude is not None:
        sims = np.where(np.asarray(uris, dtype=object) == exclude, -np.inf, sims)
    order = np.lexsort((np.asarray(uris, dtype=object).astype(str), -sims))
    hits = [int(i) for i in order if np.isfinite(sims[i])][:k]
    return [Neighbour(i, str(uris[i]), float(sims[i])) for i in hits]


def pair_rows(pairs: Sequence[tuple[str, str, float]], *, model_id: str, batch_id: str | Mapping[str, str]
              ) -> pa.Table:
    """``near_duplicates`` rows (schema :data:`spark_jobs.lakehouse.tables.NEAR_DUPLICATES_SCHEMA`) of a batch's pairs;
    ``batch_id``: the batch, or ``image_uri`` -> its batch (a job run of several batches)."""
    schema = tables.NEAR_DUPLICATES_SCHEMA.as_arrow()
    return pa.Table.from_pydict(
        {
            "image_uri": [p[0] for p in pairs],
            "duplicate_uri": [p[1] for p in pairs],
            "similarity": [p[2] for p in pairs],
            "model_id": [model_id] * len(pairs),
            "batch_id": [batch_id] * len(pairs) if isinstance(batch_id, str) else [batch_id[p[0]] for p in pairs],
        },
        schema=schema,
    )


def naming(uris: Sequence[str] = (), prefix: str | None = None) -> BooleanExpression:
    """Pairs naming one of ``uris`` (or a URI under ``prefix``) on either side."""
    parts: list[BooleanExpression] = []
    for column in ("image_uri", "duplicate_uri"):
        if uris:
            parts.append(In(column, set(uris)) if len(set(uris)) > 1 else EqualTo(column, next(iter(uris))))
        if prefix:
            parts.append(StartsWith(column, prefix))
    if not parts:
        return AlwaysFalse()
    where = parts[0]
    for part in parts[1:]:
        where = Or(where, part)
    return where


def replace_pairs(lake: tables.Lake, pairs: pa.Table, *, batch_id: str | Sequence[str], model_id: str,
                  uris: Sequence[str]) -> None:
    """ONE Iceberg commit on ``near_duplicates``: the pairs of ``(batch_id, model_id)`` replaced by ``pairs``, and
    every pair of ``model_id`` from another batch naming one of the batch's photos ``uris`` deleted (module doc).
    ``batch_id``: one batch, or the batch ids of a job run (its pairs replaced together).

    Raises:
        ValueError: a row of another batch or model. pyiceberg CommitFailedException: a concurrent commit won.
    """
    table = lake.table(NEAR_DUPLICATES)
    data = tables.to_table_schema(pairs, NEAR_DUPLICATES, table.schema())
    ids = tables.batch_ids_of(batch_id)
    for column, expected in (("batch_id", set(ids)), ("model_id", {model_id})):
        if data.num_rows and not set(data.column(column).to_pylist()) <= expected:
            raise ValueError(f"{NEAR_DUPLICATES}: rows of another {column} than {', '.join(sorted(expected))}")
    where = tables.batch_filter(ids, model_id)
    if uris:
        where = Or(where, And(EqualTo("model_id", model_id), naming(uris)))
    properties = {"fruits.batch_id": ",".join(ids), "fruits.model_id": model_id}
    with warnings.catch_warnings(), table.transaction() as tx:
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        if data.num_rows:
            tx.overwrite(data, overwrite_filter=where, snapshot_properties=properties)
        else:
            tx.delete(where, snapshot_properties=properties)


def record_batch_pairs(
    lake: tables.Lake,
    *,
    batch_id: str | Sequence[str],
    model_id: str,
    uris: Sequence[str],
    vectors: np.ndarray,
    mean: np.ndarray,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    chunk_rows: int = CHUNK_ROWS,
    row_batch_ids: Sequence[str] | None = None,
) -> int:
    """Find and commit the near-duplicate pairs of a batch run's photos (module doc); returns the pairs recorded.

    Reads the model's other ``features`` rows (``image_uri`` + ``features`` only, chunked); call it after the
    batch's ``features`` rows and the supersede step are committed, so the history holds every other live photo.

    Args:
        batch_id: the batch, or the batch ids of a job run (the pairs of all of them are replaced; pairs between
            two photos of the run are found once, as pairs within a batch are).
        uris, vectors: the batch's photos and their feature vectors (n, d). mean: (d,) the model's mean feature
            vector (the PCA version the batch committed). min_similarity: centred cosine threshold.
        row_batch_ids: the batch of each of ``uris`` (a job run's; default: ``batch_id``, one batch): a pair row
            carries the batch of its ``image_uri``.

    Raises:
        ValueError: ``row_batch_ids`` does not match ``uris`` or names a batch outside ``batch_id``.
    """
    if row_batch_ids is None:
        if not isinstance(batch_id, str):
            raise ValueError("a job run of several batches needs row_batch_ids (the batch of each photo)")
        owner: str | dict[str, str] = batch_id
    else:
        if len(row_batch_ids) != len(uris) or not set(row_batch_ids) <= set(tables.batch_ids_of(batch_id)):
            raise ValueError("row_batch_ids must give, for each photo, one of the run's batch ids")
        owner = dict(zip(uris, row_batch_ids, strict=True))
    history = history_chunks(lake, model_id, exclude_batch=batch_id, exclude_uris=uris, chunk_rows=chunk_rows)
    pairs = pairs_above(uris, vectors, history, min_similarity, mean)
    replace_pairs(lake, pair_rows(pairs, model_id=model_id, batch_id=owner), batch_id=batch_id,
                  model_id=model_id, uris=uris)
    return len(pairs)


def delete_pairs(lake: tables.Lake, uris: Sequence[str] = (), prefix: str | None = None,
                 snapshot_properties: dict[str, str] | None = None) -> int:
    """Delete every pair (all models) naming one of ``uris`` or a URI under ``prefix``; returns the pairs deleted.
    No table, or nothing selected: 0, no commit."""
    if not lake.exists(NEAR_DUPLICATES) or not (uris or prefix):
        return 0
    table = lake.table(NEAR_DUPLICATES)
    where = naming(uris, prefix)
    count = table.scan(row_filter=where, selected_fields=("image_uri",)).to_arrow().num_rows
    if count:
        table.delete(delete_filter=where, snapshot_properties=snapshot_properties or {})
    return count


def live_pairs(lake: tables.Lake, model_id: str, min_similarity: float | None = None) -> pa.Table:
    """The model's pairs with ``similarity >= min_similarity`` whose two photos both still have a ``features`` row
    (guards against an erasure killed between its steps). Columns of :data:`NEAR_DUPLICATES_SCHEMA`."""
    pairs = tables.scan(lake, NEAR_DUPLICATES, model_id=model_id)
    if min_similarity is not None:
        pairs = pairs.filter(pc.greater_equal(pairs.column("similarity"), min_similarity))
    if not pairs.num_rows:
        return pairs
    live = tables.scan(lake, tables.FEATURES, model_id=model_id, columns=("image_uri",)).column("image_uri")
    keep = pc.and_(pc.is_in(pairs.column("image_uri"), value_set=live.combine_chunks()),
                   pc.is_in(pairs.column("duplicate_uri"), value_set=live.combine_chunks()))
    return pairs.filter(keep)


def components(uris: Sequence[str], pairs: pa.Table) -> np.ndarray:
    """Near-duplicate group of each of ``uris``: connected components of the pair graph
    (``scipy.sparse.csgraph.connected_components``, undirected); a photo with no pair is its own group.

    Returns:
        int array (len(uris),) of group labels 0..g-1. Pairs naming a URI not in ``uris`` are ignored.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    index = {uri: i for i, uri in enumerate(uris)}
    a = [index.get(u) for u in pairs.column("image_uri").to_pylist()] if pairs.num_rows else []
    b = [index.get(u) for u in pairs.column("duplicate_uri").to_pylist()] if pairs.num_rows else []
    edges = [(i, j) for i, j in zip(a, b, strict=True) if i is not None and j is not None]
    n = len(uris)
    rows = np.array([e[0] for e in edges], dtype=np.int64)
    cols = np.array([e[1] for e in edges], dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def all_pairs(
    uris: Sequence[str], vectors: np.ndarray, min_similarity: float, chunk_rows: int = CHUNK_ROWS,
    mean: np.ndarray | None = None,
) -> list[tuple[str, str, float]]:
    """Every unordered pair ``(uris[i], uris[j], cosine)``, ``i < j``, with cosine (centred on ``mean`` when given)
    ``>= min_similarity`` among ``vectors`` (n, d); chunked: memory O(chunk_rows x n). For lakes whose
    ``near_duplicates`` table is missing."""
    unit = unit_rows(vectors, mean) if len(uris) else np.zeros((0, 0), dtype=np.float32)
    out: list[tuple[str, str, float]] = []
    for start in range(0, len(uris), chunk_rows):
        sims = unit[start : start + chunk_rows] @ unit.T
        rows, cols = np.nonzero(sims >= min_similarity)
        keep = cols > rows + start
        out.extend((uris[start + i], uris[j], float(sims[i, j]))
                   for i, j in zip(rows[keep], cols[keep], strict=True))
    return out


def rebuild(lake: tables.Lake, model_id: str, min_similarity: float = DEFAULT_MIN_SIMILARITY) -> int:
    """Record the pairs of every batch of ``model_id`` (oldest first), as each batch run would have: the migration
    of a lake written before the ``near_duplicates`` table existed, or after changing the threshold. Returns the
    pairs in the table for the model afterwards. Reads the model's ``features`` once per batch (O(batches x rows))."""
    batches = tables.scan(lake, tables.BATCHES, model_id=model_id, columns=("batch_id", "committed_at")).to_pylist()

    def commit_order(row: dict) -> tuple[bool, float, str]:
        at = row["committed_at"]
        return at is None, at.timestamp() if at is not None else 0.0, row["batch_id"]

    order = [b["batch_id"] for b in sorted(batches, key=commit_order)]
    live = tables.scan(lake, tables.FEATURES, model_id=model_id, columns=("batch_id",)).column("batch_id")
    present = set(live.to_pylist())
    order = [b for b in dict.fromkeys(order) if b in present] + sorted(present - set(order))
    if not order:
        return tables.scan(lake, NEAR_DUPLICATES, model_id=model_id, columns=("image_uri",)).num_rows
    table = lake.table(tables.FEATURES, create=False)
    mean = model_mean(lake, model_id)
    for batch_id in order:
        rows = table.scan(row_filter=tables.batch_filter(batch_id, model_id),
                          selected_fields=("image_uri", "features")).to_arrow()
        record_batch_pairs(lake, batch_id=batch_id, model_id=model_id, uris=rows.column("image_uri").to_pylist(),
                           vectors=vectors_of(rows.column("features")), mean=mean, min_similarity=min_similarity)
    return tables.scan(lake, NEAR_DUPLICATES, model_id=model_id, columns=("image_uri",)).num_rows


def model_mean(lake: tables.Lake, model_id: str, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Mean feature vector (d,) float64 of the model's current ``features`` rows, streamed in chunks (equals the
    mean of the model's latest PCA state at rest). Raises ValueError when the model has no rows."""
    total, n = None, 0
    for _, vectors in history_chunks(lake, model_id, chunk_rows=chunk_rows):
        block = vectors.astype(np.float64).sum(axis=0)
        total = block if total is None else total + block
        n += len(vectors)
    if total is None:
        raise ValueError(f"model {model_id} has no feature rows")
    return total / n
