"""Inference engines: the converted ResNet50 gives Keras TF's features (1e-5 relative) on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spark_jobs.featurize import engines
from spark_jobs.featurize.images import decode_image
from spark_jobs.featurize.models import ModelSpec, get_featurizer

# max |engine - keras| / max |keras| over a batch of feature vectors (the features are ReLU + average pool, many
# near zero, so an element-wise relative test would measure noise); issue 11: within 1e-5.
TOLERANCE = 1e-5
SPEC = ModelSpec("random", 224, seed=3)


@pytest.fixture(scope="module")
def photos(sample_dir: Path) -> np.ndarray:
    files = sorted((sample_dir / "Training" / "Banana").glob("*.jpg"))[:3]
    files += sorted((sample_dir / "Test" / "Kiwi").glob("*.jpg"))[:2]
    pixels = [np.frombuffer(decode_image(f.read_bytes(), 224).pixels, np.uint8).reshape(224, 224, 3) for f in files]
    return np.stack(pixels)


@pytest.fixture(scope="module")
def keras_features(photos: np.ndarray) -> np.ndarray:
    return get_featurizer(SPEC, 1, "tensorflow")(photos)


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_defaults_per_architecture() -> None:
    # GIVEN the deployed architectures WHEN the default engine is asked THEN it is the one that installs there
    assert engines.default_engine("X86_64") == "openvino" and engines.default_engine("x86_64") == "openvino"
    assert engines.default_engine("ARM64") == "onnxruntime" and engines.default_engine("aarch64") == "onnxruntime"
    # AND an opt-in precision the default engine cannot run falls back to Keras TF
    assert engines.default_engine("ARM64", "bfloat16") == "tensorflow"
    assert engines.default_engine("X86_64", "bfloat16") == "openvino"
    with pytest.raises(engines.EngineError, match="bad engine"):
        engines.check_engine("tensorrt")
    with pytest.raises(engines.EngineError, match="float32 only"):
        engines.check_engine("onnxruntime", "bfloat16")
    # AND int8 runs on the default engine of both architectures, never on Keras TF
    assert engines.default_engine("X86_64", "int8") == "openvino"
    assert engines.default_engine("ARM64", "int8") == "onnxruntime"
    assert engines.check_engine("onnxruntime", "int8") == "onnxruntime"
    with pytest.raises(engines.EngineError, match="int8"):
        engines.check_engine("tensorflow", "int8")


def test_preprocess_matches_keras(photos: np.ndarray) -> None:
    from keras.applications.resnet50 import preprocess_input

    np.testing.assert_array_equal(engines.preprocess(photos), preprocess_input(photos.astype(np.float32)))


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_engine_matches_keras_and_caches_the_conversion(engine, photos, keras_features, monkeypatch) -> None:
    # GIVEN an engine and a converted-model cache that already holds this model (or gets it now)
    cache = engines.cache_dir()
    # WHEN the real photos are featurized on the engine
    got = engines.build_engine(SPEC, engine, threads=1)(photos)
    # THEN the features are Keras TF's within 1e-5 relative: same feature space, same model_id
    assert got.shape == (5, 2048) and got.dtype == np.float32
    assert _relative(got, keras_features) <= TOLERANCE
    # AND the converted file is cached under model_id + key, and a second build loads it without Keras
    assert list(cache.glob(f"{SPEC.model_id}-{engine}-*"))
    import spark_jobs.featurize.network as network

    monkeypatch.setattr(network, "build_resnet", lambda spec: pytest.fail("rebuilt instead of the cached file"))
    np.testing.assert_array_equal(engines.build_engine(SPEC, engine, threads=1)(photos), got)
