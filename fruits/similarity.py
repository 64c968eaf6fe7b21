"""Similar photos and near-duplicate groups of one model in the lake (PyIceberg scans, no Spark).

:func:`similar` answers "which photos look like this one?" with an exact cosine search over the model's full
feature vectors (why full vectors and not PCA coordinates: :mod:`spark_jobs.lakehouse.near_duplicates`). A photo that
has a ``features`` row of the model uses that row; any other photo (a local file or an ``s3://`` object) is featurized
on the fly, in this process, with the model's own weights and inference engine (:func:`model_spec`), exactly as
the batch job's workers do (:func:`spark_jobs.featurize.images.fetch_decode` +
:func:`spark_jobs.featurize.models.get_featurizer`). Only rows present in ``features`` are searched, so an erased photo
never appears.

:func:`duplicate_groups` turns the ``near_duplicates`` pairs into groups (connected components).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import NoSuchTableError

from spark_jobs import storage
from spark_jobs.lakehouse import near_duplicates, tables, vector_scan

_MODEL_ID = re.compile(
    r"^(?:projection(?P<pseed>\d+)|resnet50-(?:(?P<imagenet>imagenet)|random(?P<rseed>\d+)|file(?P<sha>[0-9a-f]{12})))"
    r"-(?P<size>\d+)(?P<bf16>-bf16)?$"
)


class SimilarityError(ValueError):
    """Unknown model, a photo that is neither in the lake nor readable, or a model whose weights are unavailable."""


@dataclass(frozen=True)
class Hit:
    """One similar photo: ``rank`` from 1, ``image_uri``, ``label`` and cosine ``similarity``."""

    rank: int
    image_uri: str
    label: str | None
    similarity: float


@dataclass(frozen=True)
class SimilarResult:
    """Hits for one query photo; ``in_lake`` says whether the query's stored row was used (else featurized)."""

    query: str
    model_id: str
    in_lake: bool
    searched_rows: int
    hits: list[Hit]


def choose_model(lake: tables.Lake, model_id: str | None, models: list[str] | None = None) -> str:
    """``model_id`` checked against the lake's models, or the lake's only model when None (shared by ``fruits
    similar``, ``duplicates`` and ``evaluate``).

    Args:
        models: the lake's model ids when already known (default:
        :func:`spark_jobs.lakehouse.vector_scan.partition_models`).

    Raises:
        SimilarityError: no feature rows, an unknown model_id, or several models and none chosen.
    """
    models = vector_scan.partition_models(lake) if models is None else models
    if not models:
        raise SimilarityError(f"no feature rows in the lake at {lake.uri}: run a batch first")
    if model_id is None:
        if len(models) > 1:
            raise SimilarityError(f"the lake mixes {len(models)} model_ids ({', '.join(models)}); "
                                  "choose one with --model-id")
        return models[0]
    if model_id not in models:
        raise SimilarityError(f"model_id {model_id!r} not in the lake (found: {', '.join(models)})")
    return model_id


def _latest_report(lake: tables.Lake, model_id: str) -> dict:
    rows = tables.scan(lake, tables.BATCHES, model_id=model_id, columns=("committed_at", "report"))
    reports = sorted((r for r in rows.to_pylist() if r["report"]), key=lambda r: r["committed_at"] or 0)
    return json.loads(reports[-1]["report"]) if reports else {}


def model_spec(lake: tables.Lake, model_id: str):
    """The :class:`spark_jobs.featurize.models.ModelSpec` and engine that featurize photos into ``model_id``'s space.

    The spec is parsed from the model_id (:mod:`spark_jobs.featurize.models` table); file weights come from the model's
    latest batch report (``weights``) and must hash to the model_id's sha256 prefix; the engine is that report's
    (default: this machine's). ImageNet weights must be in (or downloadable into) the Keras cache.

    Returns:
        ``(spec, engine)``.

    Raises:
        SimilarityError: naming the model, when its weights or engine are not available here.
    """
    from spark_jobs.featurize.engines import default_engine
    from spark_jobs.featurize.models import ModelSpec, fetch_imagenet_weights, resolve_weights

    match = _MODEL_ID.match(model_id)
    if match is None:
        raise SimilarityError(f"cannot featurize a new photo for model {model_id}: unknown model_id form")
    size, precision = int(match["size"]), "bfloat16" if match["bf16"] else "float32"
    report = _latest_report(lake, model_id)
    if match["pseed"] is not None:
        return ModelSpec("projection", size, int(match["pseed"])), "numpy"
    engine = report.get("engine") or default_engine(precision=precision)
    if match["rseed"] is not None:
        return ModelSpec("random", size, int(match["rseed"]), precision=precision), engine
    if match["imagenet"]:
        try:
            fetch_imagenet_weights()
        except (OSError, ValueError) as err:
            raise SimilarityError(f"weights of model {model_id} are not available here (ImageNet weights file: "
                                  f"{type(err).__name__}: {str(err)[:160]})") from None
        return ModelSpec("imagenet", size, precision=precision), engine
    source = report.get("weights")
    try:
        spec = resolve_weights(source, size, precision) if source else None
    except (OSError, ValueError) as err:
        raise SimilarityError(f"weights of model {model_id} ({source}) are not available here: {err}") from None
    if spec is None or spec.model_id != model_id:
        raise SimilarityError(f"weights of model {model_id} are not available here (its batch report names "
                              f"{source!r}, which is not the file it was built from)")
    return spec, engine


def featurize_photo(uri: str, spec, engine: str) -> np.ndarray:
    """The feature vector (d,) float32 of one photo (local path, ``file://`` or ``s3://``), decoded and featurized
    as the job does (same size, same engine), in this process.

    Raises:
        SimilarityError: the photo cannot be read or decoded (its reject reason), or the engine cannot be built.
    """
    from spark_jobs.featurize.images import fetch_decode
    from spark_jobs.featurize.models import get_featurizer

    _, _, _, pixels, reason = fetch_decode(uri, spec.image_size)
    if pixels is None:
        raise SimilarityError(f"cannot use photo {uri}: {reason}")
    batch = np.frombuffer(pixels, dtype=np.uint8).reshape(1, spec.image_size, spec.image_size, 3)
    try:
        featurizer = get_featurizer(spec, 1, engine)
    except ImportError as err:
        raise SimilarityError(f"engine {engine} of model {spec.model_id} is not installed here: {err}") from None
    return np.asarray(featurizer(batch), dtype=np.float32)[0]


def _candidates(photo: str) -> list[str]:
    """The lake spellings of a photo argument: itself, and for a local path its absolute resolved path."""
    if storage.is_s3(photo):
        return [photo]
    found = [photo]
    path = Path(photo.removeprefix("file://")).expanduser()
    found.append(str(path.resolve()))
    return found


def similar(lake: tables.Lake, photo: str, model_id: str | None = None, k: int = 10) -> SimilarResult:
    """The ``k`` photos of one model most similar to ``photo`` by cosine of full feature vectors centred on the
    mean of the model's rows (:mod:`spark_jobs.lakehouse.near_duplicates`), best first (ties by URI); the photo itself
    is never a hit. Exact: equal to a brute-force numpy search (test).

    Args:
        photo: an ``image_uri`` of the lake, a local path or an ``s3://`` URI. model_id: default the lake's only
            model. k: hits wanted (fewer when the model has fewer other rows).

    Raises:
        SimilarityError: see :func:`choose_model`, :func:`model_spec`, :func:`featurize_photo`; a photo neither in
            the lake nor readable.
    """
    try:
        table = lake.table(tables.FEATURES, create=False)
    except NoSuchTableError:
        raise SimilarityError(f"no features table in the lake at {lake.uri}: run a batch first") from None
    model_id = choose_model(lake, model_id, vector_scan.partition_models(lake, table))
    rows, vectors = vector_scan.read_model(lake, model_id, columns=("image_uri", "label"), table=table)
    uris = rows.column("image_uri")
    stored = None
    for candidate in _candidates(photo):
        index = pc.index(uris, pa.scalar(candidate, pa.string())).as_py()
        if index >= 0:
            stored = candidate, vectors[index]
            break
    if stored is not None:
        query_uri, query = stored
    else:
        query_uri = _candidates(photo)[-1]
        if not storage.is_s3(query_uri) and not Path(query_uri).is_file():
            raise SimilarityError(f"{photo} is not a photo of model {model_id} in the lake, nor a readable file")
        spec, engine = model_spec(lake, model_id)
        query = featurize_photo(query_uri, spec, engine)
    uri_list = uris.to_pylist()
    labels = rows.column("label").to_pylist()
    mean = vectors.mean(axis=0, dtype=np.float64)  # the model's mean = its PCA state's mean at rest
    found = near_duplicates.top_k(query, uri_list, vectors, k, exclude=query_uri, mean=mean)
    hits = [Hit(rank, n.image_uri, labels[n.index], n.similarity) for rank, n in enumerate(found, start=1)]
    return SimilarResult(query_uri, model_id, stored is not None, len(uri_list), hits)


@dataclass(frozen=True)
class DuplicateGroup:
    """A connected component of the near-duplicate graph: ``size`` photos, their ``labels`` (distinct, sorted),
    the ``image_uris`` (sorted) and the similarity range of the pairs inside it."""

    group: int
    size: int
    labels: list[str]
    image_uris: list[str]
    min_similarity: float
    max_similarity: float


def duplicate_groups(lake: tables.Lake, model_id: str | None = None,
                     min_similarity: float | None = None) -> tuple[str, list[DuplicateGroup], int]:
    """Groups (size >= 2) of near-duplicate photos of one model, largest first, from the ``near_duplicates`` pairs
    with ``similarity >= min_similarity`` whose photos are both live
    (:func:`spark_jobs.lakehouse.near_duplicates.live_pairs`).

    Returns:
        ``(model_id, groups, photos of the model)``.
    """
    model_id = choose_model(lake, model_id)
    pairs = near_duplicates.live_pairs(lake, model_id, min_similarity)
    rows = tables.scan(lake, tables.FEATURES, model_id=model_id, columns=("image_uri", "label"))
    uris = rows.column("image_uri").to_pylist()
    labels = rows.column("label").to_pylist()
    group_of = near_duplicates.components(uris, pairs)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group_of):
        members.setdefault(int(g), []).append(i)
    sims: dict[int, list[float]] = {}
    index = {u: i for i, u in enumerate(uris)}
    for a, s in zip(pairs.column("image_uri").to_pylist(), pairs.column("similarity").to_pylist(), strict=True):
        sims.setdefault(int(group_of[index[a]]), []).append(float(s))
    groups = [
        (sorted(uris[i] for i in idx), sorted({labels[i] or "" for i in idx}), sims[g])
        for g, idx in members.items() if len(idx) > 1
    ]
    groups.sort(key=lambda t: (-len(t[0]), t[0][0]))
    out = [DuplicateGroup(n, len(u), lab, u, min(s), max(s)) for n, (u, lab, s) in enumerate(groups, start=1)]
    return model_id, out, len(uris)
