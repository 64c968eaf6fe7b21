"""Feature extractors: ResNet50 (Keras, ``include_top=False``, ``pooling="avg"``, 2048-d) and its weights.

The weights choice is resolved once on the driver (:func:`resolve_weights`) into a :class:`ModelSpec`
that every Python worker receives, so all workers build the same network and ``model_id`` names it exactly:

| ``--weights``      | model_id                   | weights                                                  |
|--------------------|----------------------------|----------------------------------------------------------|
| ``imagenet``       | ``resnet50-imagenet-224``  | Keras ImageNet file (downloaded to ``~/.keras/models``)  |
|   … offline        | ``resnet50-random0-224``   | loud fallback to ``random:0``, recorded in the report    |
| ``random[:SEED]``  | ``resnet50-random<S>-224`` | Keras initialisers after ``keras.utils.set_random_seed`` |
| path / ``s3://``   | ``resnet50-file<sha12>-224``| ``model.load_weights`` on the file (sha256 of its bytes) |
| ``projection[:S]`` | ``projection<S>-224``      | test/benchmark-only cheap deterministic featurizer       |

``--precision bfloat16`` (opt-in) builds the ResNet50 under the Keras ``mixed_bfloat16`` policy (weights float32,
compute bfloat16): faster on CPUs with bf16 instructions (Graviton3, AVX512-BF16/AMX x86), slightly different
numbers, so its model_id gets a ``-bf16`` suffix and its PCA state is kept apart.

``--precision int8`` (opt-in) runs a post-training statically quantized copy of the float32 network (OpenVINO +
NNCF on x86_64, ONNX Runtime QDQ on ARM64; :mod:`spark_jobs.featurize.quantization`), calibrated on a named, fixed set
of photos: its model_id is ``<f32 model_id>-int8-<first 8 hex of the calibration set's sha256>``, so features of
different quantizations never mix, and a fidelity gate compares it with float32 before each batch uses it.

On a worker the network is built once per Python process (module-level cache, Spark reuses workers) and run
on batches by an inference engine (:mod:`spark_jobs.featurize.engines`: TensorFlow ``predict_on_batch``, OpenVINO or
ONNX Runtime on the converted Keras model); intra-op threads are set to the cores Spark reserves per task.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from spark_jobs import storage
from spark_jobs.featurize.engines import build_engine
from spark_jobs.featurize.network import FEATURE_DIM, PRECISIONS, ModelSpec
from spark_jobs.featurize.quantization import CalibrationSet

FEATURES_SCHEMA = T.StructType(
    [
        T.StructField("image_uri", T.StringType(), False),
        T.StructField("label", T.StringType(), True),
        T.StructField("content_sha256", T.StringType(), True),
        T.StructField("width", T.IntegerType(), True),
        T.StructField("height", T.IntegerType(), True),
        T.StructField("features", T.ArrayType(T.FloatType(), False), False),
    ]
)
# Side of the block-average grid of the test-only projection featurizer (16x16x3 = 768 inputs).
_PROJECTION_GRID = 16
# The file keras.applications.ResNet50(include_top=False, weights="imagenet") loads: name, URL and md5 exactly as in
# keras/src/applications/resnet.py (BASE_WEIGHTS_PATH, WEIGHTS_HASHES["resnet50"][1]); a test pins them to Keras.
# The driver checks it without importing TensorFlow (3 s per job run), into the cache Keras reads it from.
IMAGENET_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{IMAGENET_WEIGHTS_FILE}"
IMAGENET_WEIGHTS_MD5 = "4d473c1dd8becc155b73f8504c6f6626"
IMAGENET_DOWNLOAD_TIMEOUT_SECONDS = 60


def _seed(text: str, source: str) -> int:
    if not text.isdigit():
        raise ValueError(f"bad --weights {source!r}: seed must be a non-negative integer")
    return int(text)


def resolve_weights(source: str, image_size: int = 224, precision: str = "float32",
                    calibration: CalibrationSet | None = None) -> ModelSpec:
    """Resolve ``--weights`` on the driver (see module table); ``precision`` is a key of :data:`PRECISIONS`;
    ``calibration`` (:func:`spark_jobs.featurize.quantization.resolve_calibration`) is required by ``int8`` only.

    ``imagenet`` really fetches the Keras ImageNet weights file once into the Keras cache, md5-checked
    (:func:`fetch_imagenet_weights`, no TensorFlow import on the driver); if that fails (no network), prints a loud
    banner on stderr and returns ``random:0`` with ``fallback_reason`` set.

    Raises:
        ValueError: malformed source, unknown precision, int8 without a calibration set or with the projection
            featurizer. FileNotFoundError: weights file/object missing.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"bad --precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if (precision == "int8") != (calibration is not None):
        raise ValueError("--precision int8 needs a calibration set (--calibration), and only int8 takes one")
    if precision == "int8" and source.partition(":")[0] == "projection":
        raise ValueError("--precision int8 quantizes the ResNet50: not applicable to --weights projection")
    name, _, arg = source.partition(":")
    if source == "imagenet":
        spec = ModelSpec("imagenet", image_size, precision=precision, calibration=calibration)
        try:
            fetch_imagenet_weights()
            return spec
        except (OSError, ValueError) as err:  # offline: URL fetch failure (URLError is an OSError); bad checksum
            reason = f"imagenet weights unavailable ({type(err).__name__}: {str(err)[:200]})"
            fallback = ModelSpec("random", image_size, 0, precision=precision, calibration=calibration,
                                 fallback_reason=reason)
            banner = "!" * 100
            sys.stderr.write(f"{banner}\nWARNING: {reason}\nFALLING BACK to deterministic random weights "
                             f"(seed 0): model_id {fallback.model_id}\n{banner}\n")
            return fallback
    if name in ("random", "projection") and not source.startswith(("/", "s3://")):
        return ModelSpec(name, image_size, _seed(arg, source) if arg else 0, precision=precision,
                         calibration=calibration)
    if storage.is_s3(source) or source.startswith("file://") or os.path.isabs(source) or Path(source).exists():
        digest = hashlib.sha256(storage.read_bytes(source)).hexdigest()
        return ModelSpec("file", image_size, weights_uri=source, weights_sha256=digest, precision=precision,
                         calibration=calibration)
    raise ValueError(f"bad --weights {source!r}: expected imagenet, random[:SEED], a weights file path or s3:// URI")


def keras_cache_file(name: str) -> Path:
    """Where ``keras.utils.get_file(name, cache_subdir="models")`` keeps a file: ``$KERAS_HOME/models/name``,
    else ``~/.keras/models/name`` (``/tmp/.keras`` when the home directory or that directory is not writable), as
    keras/src/backend/config.py ``keras_home`` and keras/src/utils/file_utils.py ``get_file`` resolve it."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    if not os.access(home, os.W_OK) and os.path.isdir(home):
        home = os.path.join("/tmp", ".keras")
    return Path(home) / "models" / name


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_imagenet_weights(timeout: float = IMAGENET_DOWNLOAD_TIMEOUT_SECONDS) -> Path:
    """The Keras ImageNet ResNet50 (no top) weights file in the Keras cache, downloaded once and md5-checked as
    ``keras.utils.get_file`` does, so workers building ``ResNet50(weights="imagenet")`` on this machine read it
    from there. Written by us (urllib + hashlib) rather than through Keras only to keep TensorFlow (a 3 s import)
    off the driver.

    Returns: the file's path (94 MB).

    Raises:
        OSError: download failure (``urllib.error.URLError`` when offline) or cache not writable.
        ValueError: the downloaded file's md5 is not :data:`IMAGENET_WEIGHTS_MD5`.
    """
    import urllib.request

    path = keras_cache_file(IMAGENET_WEIGHTS_FILE)
    if path.is_file() and _md5(path) == IMAGENET_WEIGHTS_MD5:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as tmp:
        try:
            with urllib.request.urlopen(IMAGENET_WEIGHTS_URL, timeout=timeout) as response:
                for block in iter(lambda: response.read(1 << 20), b""):
                    tmp.write(block)
        except BaseException:
            os.unlink(tmp.name)
            raise
    if _md5(Path(tmp.name)) != IMAGENET_WEIGHTS_MD5:
        os.unlink(tmp.name)
        raise ValueError(f"{IMAGENET_WEIGHTS_URL}: md5 differs from Keras' {IMAGENET_WEIGHTS_MD5}")
    os.replace(tmp.name, path)  # atomic: a concurrent reader sees the old file or the whole new one
    return path


def _projection_featurizer(spec: ModelSpec) -> Callable[[np.ndarray], np.ndarray]:
    """Cheap deterministic stand-in for tests: 16x16 block means -> fixed Gaussian projection -> ReLU."""
    rng = np.random.default_rng(spec.seed)
    inputs = _PROJECTION_GRID * _PROJECTION_GRID * 3
    weights = (rng.standard_normal((inputs, FEATURE_DIM)) / np.sqrt(inputs)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, FEATURE_DIM).astype(np.float32)

    def run(pixels: np.ndarray) -> np.ndarray:
        n, size = pixels.shape[0], pixels.shape[1]
        block = size // _PROJECTION_GRID
        crop = pixels[:, : block * _PROJECTION_GRID, : block * _PROJECTION_GRID, :].astype(np.float32) / 255.0
        pooled = crop.reshape(n, _PROJECTION_GRID, block, _PROJECTION_GRID, block, 3).mean(axis=(2, 4))
        return np.maximum(pooled.reshape(n, inputs) @ weights + bias, 0.0).astype(np.float32)

    return run


_FEATURIZERS: dict[tuple[ModelSpec, str], Callable[[np.ndarray], np.ndarray]] = {}


def get_featurizer(spec: ModelSpec, threads: int = 1, engine: str = "tensorflow") -> Callable[[np.ndarray], np.ndarray]:
    """The process-wide featurizer for ``spec`` on ``engine``: uint8 (n, s, s, 3) RGB -> float32 (n, 2048).

    Built once per Python worker (Spark reuses workers), see :mod:`spark_jobs.featurize.engines`; the projection
    featurizer ignores ``engine``.

    Args:
        threads: intra-op threads of the engine (TensorFlow: only effective before its runtime starts).
        engine: one of :data:`spark_jobs.featurize.engines.ENGINES`.
    """
    key = (spec, "numpy" if spec.kind == "projection" else engine)
    cached = _FEATURIZERS.get(key)
    if cached is not None:
        return cached
    fn = _projection_featurizer(spec) if spec.kind == "projection" else build_engine(spec, engine, threads)
    _FEATURIZERS[key] = fn
    return fn


def _featurize_partition(spec: ModelSpec, batch_size: int, threads: int, engine: str = "tensorflow"):
    size = spec.image_size

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        featurizer = get_featurizer(spec, threads, engine)
        for frame in frames:
            for start in range(0, len(frame), batch_size):
                chunk = frame.iloc[start : start + batch_size]
                pixels = np.stack([np.frombuffer(p, dtype=np.uint8).reshape(size, size, 3) for p in chunk["pixels"]])
                feats = featurizer(pixels)
                out = chunk.drop(columns=["pixels"]).copy()
                out["features"] = list(feats)
                yield out

    return run


def featurize(
    decoded: DataFrame, spec: ModelSpec, batch_size: int = 32, threads: int = 1, engine: str = "tensorflow"
) -> DataFrame:
    """Decoded rows with ``pixels`` -> :data:`FEATURES_SCHEMA` rows (``features``: 2048 float32).

    Runs on the executors (``mapInPandas``, iterator of pandas frames), one model per Python worker,
    inference on chunks of ``batch_size`` images. Rows must all have ``pixels`` (filter rejects first).
    """
    cols = ["image_uri", "label", "content_sha256", "width", "height", "pixels"]
    return decoded.select(*cols).mapInPandas(_featurize_partition(spec, batch_size, threads, engine), FEATURES_SCHEMA)
