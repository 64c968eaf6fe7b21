"""TensorFlow-only arms of the benchmarks, run in the driver process.

* ceiling: batch inference (``predict_on_batch``) of ResNet50 on preprocessed tensors already in memory;
* seed baseline: per-image ``load_img`` -> ``img_to_array`` -> ``preprocess_input`` -> ``model.predict`` on one
  image at a time, as the seed notebooks did;
* bf16: the same batch inference under the Keras ``mixed_bfloat16`` policy.

The model is ResNet50 without its top, global average pooling (2048 features), deterministic random weights
(ImageNet weights cannot be downloaded here; throughput does not depend on the weight values).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import stopwatch

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_resnet50(image_size: int, seed: int = 0) -> Any:
    """ResNet50 (include_top=False, pooling="avg"), ``image_size`` square RGB input, seeded random weights.

    Built by the job's own builder (:mod:`spark_jobs.featurize.network`, ``--weights random:SEED``) so the arms measure
    exactly the network the Spark job runs; plain ``keras.applications.ResNet50`` if that module is absent.
    """
    try:
        from spark_jobs.featurize.network import ModelSpec, build_resnet
    except ImportError:
        import keras

        keras.utils.set_random_seed(seed)
        return keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                           input_shape=(image_size, image_size, 3))
    return build_resnet(ModelSpec("random", image_size, seed))


def decode_batch(paths: Sequence[Path], image_size: int) -> np.ndarray:
    """Decode and resize images with the job's decoder, then apply ResNet50 ``preprocess_input``.

    Returns float32 (n, image_size, image_size, 3) ready for the model (caffe mode: BGR, mean-centred).
    Raises ValueError if an image does not decode.
    """
    from keras.applications.resnet50 import preprocess_input

    from spark_jobs.featurize.images import decode_image

    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.float32)
    for i, path in enumerate(paths):
        decoded = decode_image(Path(path).read_bytes(), image_size)
        if decoded.pixels is None:
            raise ValueError(f"{path}: {decoded.reason}")
        out[i] = np.frombuffer(decoded.pixels, dtype=np.uint8).reshape(image_size, image_size, 3)
    return preprocess_input(out)


def ceiling_arm(model: Any, x: np.ndarray, batch_size: int = 32) -> dict[str, float]:
    """Batch inference (``predict_on_batch`` on chunks of ``batch_size``, as the job) on in-memory tensors.

    ``x``: preprocessed float32 (n, s, s, 3). One warm-up chunk (tracing, allocation) is excluded from timing.
    Returns ``{"images", "seconds", "images_per_s", "batch_size"}``; raises FloatingPointError on NaN/inf.
    """
    model.predict_on_batch(x[:batch_size])
    outputs = []
    with stopwatch() as t:
        for start in range(0, len(x), batch_size):
            outputs.append(np.asarray(model.predict_on_batch(x[start : start + batch_size])))
    if not all(np.isfinite(o).all() for o in outputs):
        raise FloatingPointError("ceiling arm produced non-finite features")
    n = int(x.shape[0])
    return {"images": n, "seconds": round(t["seconds"], 3), "images_per_s": round(n / t["seconds"], 3),
            "batch_size": batch_size}


def seed_arm(model: Any, paths: Sequence[Path], image_size: int) -> dict[str, float]:
    """Seed-style featurization: for each file, Keras ``load_img`` + ``preprocess_input`` + ``model.predict``.

    Decoding is inside the timing (the seeds did it per image too); one warm-up image is excluded.
    Returns ``{"images", "seconds", "images_per_s"}``.
    """
    from keras.applications.resnet50 import preprocess_input
    from keras.utils import img_to_array, load_img

    def one(path: Path) -> np.ndarray:
        img = load_img(path, target_size=(image_size, image_size))
        return model.predict(preprocess_input(img_to_array(img)[None]), verbose=0)

    one(paths[0])
    with stopwatch() as t:
        for path in paths:
            one(path)
    n = len(paths)
    return {"images": n, "seconds": round(t["seconds"], 3), "images_per_s": round(n / t["seconds"], 3)}


def bf16_arm(x: np.ndarray, image_size: int, batch_size: int = 16, seed: int = 0) -> dict[str, Any]:
    """Batch inference under the Keras ``mixed_bfloat16`` policy (weights float32, compute bfloat16).

    The global dtype policy is restored to ``float32`` afterwards. Returns the same keys as :func:`ceiling_arm`.
    """
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(seed)
        model = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                            input_shape=(image_size, image_size, 3))
        return {**ceiling_arm(model, x, batch_size=batch_size), "policy": "mixed_bfloat16"}
    finally:
        keras.mixed_precision.set_global_policy(previous)
