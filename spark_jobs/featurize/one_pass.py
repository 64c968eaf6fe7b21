"""The executor side of a batch, in ONE pass: manifest rows -> feature vectors, rejects and sufficient statistics.

This is the seam between the distributed work (Spark) and the driver's commit (PCA version, projection, table
writes). Each partition runs one ``mapInPandas`` task that, per chunk of ``infer_batch_size`` manifest rows,
fetches the bytes and decodes them (:func:`spark_jobs.featurize.images.fetch_decode`), featurizes the decoded ones on
the engine (:mod:`spark_jobs.featurize.engines`) and folds their vectors into the partition's ``(n, mean, M2)``; it
yields the feature rows and reject rows as it goes and one statistics row at the end, all in :data:`PASS_SCHEMA`. The
driver collects that frame once and merges the statistics rows (Chan-Golub-LeVeque, :func:`spark_jobs.pca.stats.merge`).
Nothing is persisted and no partition is computed twice.

Fetch and decode run one chunk ahead of inference, on ``FETCH_THREADS`` threads of the task: while the engine
featurizes chunk k (it releases the GIL), the next chunk's objects are fetched (an S3 GET waits 10-100 ms for its
first byte; sequential GETs would leave the core idle) and decoded (Pillow and hashlib release the GIL too). The
manifest's S3 ``version_id`` travels with each row, so an image is fetched at exactly the version it recorded.

Memory per task (bounded, independent of the batch size): the compressed bytes of at most ``FETCH_THREADS``
images at a time (each <= 64 MB, :data:`spark_jobs.featurize.images.MAX_IMAGE_BYTES`, so <= 256 MB in the worst case; a
4032x3024 phone JPEG is 2-5 MB and decodes in draft mode at 1/8 scale, 504x378x3 = 0.57 MB), two chunks of
``infer_batch_size`` x 224x224x3 pixels (the one in inference as uint8 + float32, the one ahead as uint8: 24 + 5 MB
at 32), the engine's activations, and the statistics state: M2 (2,048^2 float64 = 32 MB; sent to the driver as its upper
triangle, 16.8 MB, :meth:`spark_jobs.pca.stats.SufficientStats.to_packed_bytes`) plus up to
``STATS_CHUNK_ROWS`` buffered vectors (float64 at 1,024 rows: 16 MB). Each statistics row carries the worker's
peak RSS (``ru_maxrss``) so the measured peak per task is in ``BatchFeatures.task``.

A batch is at most ``BATCH_MAX_IMAGES`` images, so its feature vectors come back to the driver as one Arrow
table: at 1,000 images about 8.2 MB (1,000 x 2,048 float32) plus metadata columns; the driver never holds pixels.
"""

from __future__ import annotations

import json
import resource
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.featurize.images import fetch_decode
from spark_jobs.featurize.models import FEATURE_DIM, ModelSpec, get_featurizer
from spark_jobs.pca.stats import SufficientStats, merge, merge_all

# Feature vectors buffered before one two-pass statistics call (float64 buffer: STATS_CHUNK_ROWS x 2,048 x 8 B).
STATS_CHUNK_ROWS = 1024
# Threads of a task fetching and decoding the next chunk while the current one is featurized (module doc): enough
# concurrent S3 GETs to hide their latency behind one chunk's inference, few enough to bound the bytes in flight.
FETCH_THREADS = 4
# Row kinds of the pass's output.
FEATURE, REJECT, STATS = "feature", "reject", "stats"
PASS_SCHEMA = T.StructType(
    [
        T.StructField("kind", T.StringType(), False),
        T.StructField("image_uri", T.StringType(), True),
        T.StructField("label", T.StringType(), True),
        T.StructField("content_sha256", T.StringType(), True),
        T.StructField("width", T.IntegerType(), True),
        T.StructField("height", T.IntegerType(), True),
        T.StructField("features", T.ArrayType(T.FloatType(), False), True),
        T.StructField("reason", T.StringType(), True),
        T.StructField("stats", T.BinaryType(), True),
        T.StructField("task", T.StringType(), True),  # JSON task metrics on the stats row
    ]
)
_COLUMNS = PASS_SCHEMA.fieldNames()

FEATURES_ARROW_SCHEMA = pa.schema(
    [
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("content_sha256", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("features", pa.list_(pa.field("element", pa.float32(), nullable=False))),
    ]
)
REJECTS_ARROW_SCHEMA = pa.schema([pa.field("image_uri", pa.string(), nullable=False), pa.field("reason", pa.string())])


@dataclass(frozen=True)
class BatchFeatures:
    """What the executors computed for one batch, held on the driver.

    Attributes:
        features: one row per decoded image, :data:`FEATURES_ARROW_SCHEMA` (``features``: 2,048 float32).
        rejects: one row per image that could not be used, :data:`REJECTS_ARROW_SCHEMA` (reason as in
            :mod:`spark_jobs.featurize.images`).
        stats: exact ``(n, mean, M2)`` of ``features`` (float64), merged from per-partition statistics.
        listed: distinct images in the manifest (= featurized + rejected).
        seconds: wall seconds of this pass's stages (names as in the batch report's ``seconds``):
            ``featurize`` (the one pass: fetch, decode, inference, statistics, collect) and ``merge_statistics``.
        task: task metrics summed over the partitions: ``tasks``, ``fetch_decode_s`` (time the tasks waited for
            fetched and decoded pixels, i.e. not hidden behind inference), ``infer_s``,
            ``statistics_s`` (task seconds), ``engine_build_s`` (model build/load paid in the pass),
            ``peak_rss_mb`` (max over Python workers), ``engine``.
    """

    features: pa.Table
    rejects: pa.Table
    stats: SufficientStats
    listed: int
    seconds: dict[str, float] = field(default_factory=dict)
    task: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Reject counts by reason, sorted by reason."""
        return dict(sorted(Counter(self.rejects.column("reason").to_pylist()).items()))


def _one_pass(spec: ModelSpec, image_size: int, infer_batch_size: int, threads: int, engine: str):
    def chunks(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            for start in range(0, len(frame), infer_batch_size):
                yield frame.iloc[start : start + infer_batch_size]

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        clock = {"fetch_decode_s": 0.0, "infer_s": 0.0, "statistics_s": 0.0, "engine_build_s": 0.0}
        total = SufficientStats.empty(FEATURE_DIM)
        buffered: list[np.ndarray] = []
        featurizer = None

        def fold(force: bool) -> None:
            nonlocal total, buffered
            if buffered and (force or sum(len(b) for b in buffered) >= STATS_CHUNK_ROWS):
                started = time.perf_counter()
                # float32 as stored, widened to float64: the state matches the stored features exactly.
                part = SufficientStats.from_array(np.concatenate(buffered).astype(np.float64))
                total = merge(total, part, overwrite_a=True)  # total is this task's own
                buffered = []
                clock["statistics_s"] += time.perf_counter() - started

        def featurize(chunk: pd.DataFrame, fetched: list[Future]) -> pd.DataFrame:
            nonlocal featurizer
            started = time.perf_counter()
            decoded = [future.result() for future in fetched]  # fetch_decode never raises
            clock["fetch_decode_s"] += time.perf_counter() - started  # the wait not hidden behind inference
            rows, good, pixels = [], [], []
            for uri, label, (sha, width, height, pix, reason) in zip(
                chunk["image_uri"], chunk["label"], decoded, strict=True
            ):
                if reason is not None:
                    rows.append((REJECT, uri, label, sha, width, height, None, reason, None, None))
                else:
                    good.append((uri, label, sha, width, height))
                    pixels.append(np.frombuffer(pix, dtype=np.uint8).reshape(image_size, image_size, 3))
            if good:
                if featurizer is None:
                    started = time.perf_counter()
                    featurizer = get_featurizer(spec, threads, engine)
                    clock["engine_build_s"] += time.perf_counter() - started
                started = time.perf_counter()
                feats = np.asarray(featurizer(np.stack(pixels)), dtype=np.float32)
                clock["infer_s"] += time.perf_counter() - started
                buffered.append(feats)
                rows.extend((FEATURE, *meta, vec, None, None, None) for meta, vec in zip(good, feats, strict=True))
                fold(force=False)
            return _frame(rows)

        with ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="fetch-decode") as pool:
            ahead: deque[tuple[pd.DataFrame, list[Future]]] = deque()
            for chunk in chunks(frames):  # submit chunk k+1's fetches, then featurize chunk k
                ahead.append((chunk, [pool.submit(fetch_decode, uri, image_size, version or None)
                                      for uri, version in zip(chunk["image_uri"], chunk["version_id"], strict=True)]))
                if len(ahead) > 1:
                    yield featurize(*ahead.popleft())
            while ahead:
                yield featurize(*ahead.popleft())
        fold(force=True)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        metrics = {key: round(value, 3) for key, value in clock.items()} | {"peak_rss_mb": round(peak_mb, 1)}
        yield _frame([(STATS, None, None, None, None, None, None, None, total.to_packed_bytes(), json.dumps(metrics))])

    return run


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=_COLUMNS).astype({"width": "Int32", "height": "Int32"})


def _task_metrics(rows: pd.Series, engine: str) -> dict[str, float | int | str]:
    metrics = [json.loads(text) for text in rows]
    out: dict[str, float | int | str] = {"tasks": len(metrics), "engine": engine}
    for key in ("fetch_decode_s", "infer_s", "statistics_s", "engine_build_s"):
        out[key] = round(sum(m[key] for m in metrics), 3)
    out["peak_rss_mb"] = max((m["peak_rss_mb"] for m in metrics), default=0.0)
    return out


def pass_input(manifest: DataFrame) -> DataFrame:
    """The pass's input columns: ``image_uri``, ``label`` and the S3 ``version_id`` the manifest recorded (null
    when it has none, or no such column), so each image is fetched at exactly that version. A projection only:
    the manifest's partitions are kept."""
    version = F.col("version_id") if "version_id" in manifest.columns else F.lit(None).cast("string")
    return manifest.select("image_uri", "label", version.alias("version_id"))


def featurize_batch(
    manifest: DataFrame,
    spec: ModelSpec,
    *,
    image_size: int,
    infer_batch_size: int,
    threads: int = 1,
    engine: str = "tensorflow",
) -> BatchFeatures:
    """Fetch, decode, featurize and summarise a batch's images in one pass on the executors (module doc).

    Args:
        manifest: rows of :data:`spark_jobs.manifest.MANIFEST_SCHEMA` (one per distinct image).
        spec: the resolved model (same on every worker).
        image_size: model input side in pixels. infer_batch_size: images per inference call.
        threads: intra-op threads per task (``spark.task.cpus``).
        engine: inference engine, one of :data:`spark_jobs.featurize.engines.ENGINES`.

    Raises:
        Spark / engine errors. Bad images never raise: they become ``rejects`` rows.
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    one_pass = _one_pass(spec, image_size, infer_batch_size, threads, engine)
    collected = pass_input(manifest).mapInPandas(one_pass, PASS_SCHEMA).toPandas()
    lap("featurize")
    kind = collected["kind"]
    features = pa.Table.from_pandas(
        collected.loc[kind == FEATURE, FEATURES_ARROW_SCHEMA.names], schema=FEATURES_ARROW_SCHEMA, preserve_index=False
    )
    rejects = pa.Table.from_pandas(
        collected.loc[kind == REJECT, REJECTS_ARROW_SCHEMA.names], schema=REJECTS_ARROW_SCHEMA, preserve_index=False
    )
    stats_rows = collected.loc[kind == STATS]
    stats = merge_all((SufficientStats.from_packed_bytes(b) for b in stats_rows["stats"]), FEATURE_DIM)
    task = _task_metrics(stats_rows["task"], engine)
    lap("merge_statistics")
    if stats.n != features.num_rows:  # every feature row is in exactly one partition's statistics
        raise RuntimeError(f"statistics cover {stats.n} vectors, {features.num_rows} feature rows collected")
    return BatchFeatures(features, rejects, stats, features.num_rows + rejects.num_rows, seconds, task)
