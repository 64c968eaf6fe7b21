"""The network every engine runs: :class:`ModelSpec` (which ResNet50, which weights, which precision), its Keras
definition (:func:`build_resnet`) and its input convention (:func:`preprocess`).

The bottom of the featurizing layers: :mod:`spark_jobs.featurize.engines` (run the network on TensorFlow, OpenVINO or
ONNX Runtime) and :mod:`spark_jobs.featurize.quantization` (int8) build on it, :mod:`spark_jobs.featurize.models`
(``--weights`` resolved on the driver, the per-worker featurizer cache) on those. It imports no other featurizing module
at run time, so the layers import one way only (``tests/spark/test_layout.py``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spark_jobs import storage

if TYPE_CHECKING:  # pragma: no cover
    from spark_jobs.featurize.quantization import CalibrationSet

FEATURE_DIM = 2048
# Keras dtype policy of each --precision (keras.io/api/mixed_precision/policy).
# int8: the Keras network is built in float32 and quantized by the engine (spark_jobs.featurize.quantization).
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "int8": "float32"}
# ImageNet channel means in BGR order, Keras "caffe" preprocessing (keras.applications.imagenet_utils).
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


@dataclass(frozen=True)
class ModelSpec:
    """Resolved feature extractor: ``kind`` in imagenet|random|file|projection, input side in pixels."""

    kind: str
    image_size: int = 224
    seed: int = 0
    weights_uri: str | None = None
    weights_sha256: str | None = None
    precision: str = "float32"  # or "bfloat16" / "int8" (see PRECISIONS)
    calibration: CalibrationSet | None = None  # int8 only: the photos the quantized model is calibrated on
    fallback_reason: str | None = field(default=None, compare=False)  # not part of the identity

    @property
    def model_id(self) -> str:
        """Identifier of the feature space (features of different model_ids never mix)."""
        if self.kind == "projection":
            return f"projection{self.seed}-{self.image_size}"  # numpy featurizer: precision does not apply
        suffix = ""
        if self.precision == "bfloat16":
            suffix = "-bf16"
        elif self.precision == "int8":
            suffix = f"-int8-{self.calibration.sha256[:8] if self.calibration else 'uncalibrated'}"
        if self.kind == "imagenet":
            return f"resnet50-imagenet-{self.image_size}{suffix}"
        if self.kind == "random":
            return f"resnet50-random{self.seed}-{self.image_size}{suffix}"
        return f"resnet50-file{(self.weights_sha256 or '')[:12]}-{self.image_size}{suffix}"


def preprocess(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB (n, s, s, 3) -> float32 BGR minus the ImageNet means: Keras ``resnet50.preprocess_input`` in numpy."""
    return pixels[..., ::-1].astype(np.float32) - _CAFFE_MEAN_BGR


def _local_weights_file(spec: ModelSpec) -> str:
    """Local path of the weights file, downloading s3:// objects once per worker; sha256 is verified."""
    assert spec.weights_uri is not None and spec.weights_sha256 is not None
    if not storage.is_s3(spec.weights_uri):
        path = str(storage.local_path(spec.weights_uri))
        data = Path(path).read_bytes()
    else:
        suffix = "".join(Path(spec.weights_uri).suffixes[-2:]) or ".h5"  # Keras dispatches on .weights.h5 / .h5
        path = os.path.join(tempfile.gettempdir(), f"fruits-weights-{spec.weights_sha256[:16]}{suffix}")
        data = storage.read_bytes(spec.weights_uri)
        # Several Python workers of one executor may download at once: each writes its own temporary file and
        # renames it into place (atomic on POSIX), so Keras never opens a half-written file.
        with tempfile.NamedTemporaryFile(dir=tempfile.gettempdir(), suffix=suffix, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, path)
    if hashlib.sha256(data).hexdigest() != spec.weights_sha256:
        raise RuntimeError(f"weights file {spec.weights_uri} changed while the job ran (sha256 mismatch)")
    return path


def build_resnet(spec: ModelSpec):
    """The Keras ResNet50 of ``spec`` (``include_top=False``, ``pooling="avg"``): input float32 (n, s, s, 3) BGR minus
    the ImageNet means (:func:`preprocess`), output (n, 2048) (float32; bfloat16 compute under ``mixed_bfloat16``).

    ``random`` seeds Keras first (same seed + same construction order -> identical weights); ``imagenet`` lets Keras
    load its file from the cache the driver filled (``spark_jobs.featurize.models.fetch_imagenet_weights``); ``file``
    loads the weights file after checking its sha256. Imports Keras/TensorFlow (seconds): workers only.

    Raises:
        RuntimeError: the weights file changed since the driver hashed it. ImportError: Keras not installed.
    """
    import keras

    size = spec.image_size
    if spec.kind == "random":
        keras.utils.set_random_seed(spec.seed)  # same seed + same construction order -> identical weights
    weights = "imagenet" if spec.kind == "imagenet" else None
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(PRECISIONS[spec.precision])  # layers take the policy when built
    try:
        model = keras.applications.ResNet50(include_top=False, weights=weights, pooling="avg",
                                            input_shape=(size, size, 3))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if spec.kind == "file":
        model.load_weights(_local_weights_file(spec))
    return model
