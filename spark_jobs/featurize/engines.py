"""Inference engines for the Keras ResNet50: TensorFlow (Keras itself), OpenVINO, ONNX Runtime.

Keras stays the model definition and the weights source (:func:`spark_jobs.featurize.network.build_resnet`); an engine
runs the same network converted in-process, or loaded from a converted file cached on the worker's disk:

| engine        | conversion                                           | cached file (under :func:`cache_dir`)     |
|---------------|------------------------------------------------------|-------------------------------------------|
| ``tensorflow``| none (``model.predict_on_batch``)                    | none                                      |
| ``openvino``  | ``openvino.convert_model(keras_model)``              | ``<key>.xml`` + ``.bin`` (``save_model``)  |
| ``onnxruntime``| ``keras_model.export(format="onnx")`` (tf2onnx)     | ``<key>.onnx``                             |

``--precision int8`` (:mod:`spark_jobs.featurize.quantization`): OpenVINO quantizes its f32 conversion with NNCF
(``<key>.xml`` + ``.bin`` of the int8 model), ONNX Runtime its f32 export with ``quantize_static`` (``<key>.onnx``,
QDQ); TensorFlow refuses int8. Both start from the cached f32 conversion when there is one.

The cache key is the model_id, the weights' sha256 (file weights), precision, engine and its version (int8 also:
the calibration set's sha256 and the quantization recipe), so a cached file is never used for other weights.
With a cached file a worker skips importing TensorFlow and building the Keras model (the per-run cold start;
measured in ``bench/engines.py``).

Precision: ``float32`` asks each engine for f32 arithmetic (OpenVINO's default on CPUs with bf16 units is bf16:
``INFERENCE_PRECISION_HINT=f32`` turns it off), so features match Keras within 1e-5 relative (tests) and the
model_id is unchanged; ``int8`` keeps f32 for the operations left unquantized. ``bfloat16`` uses OpenVINO's bf16
inference precision / Keras ``mixed_bfloat16``; ONNX Runtime has no bf16 CPU kernels for this graph, so it
refuses bfloat16.

Installability (checked from the wheels' platform tags): OpenVINO 2026.4's manylinux aarch64 wheel needs glibc
2.35, the EMR 7.x images are Amazon Linux 2023 (glibc 2.34), so on ARM64 the default is ONNX Runtime (its aarch64
wheel needs glibc 2.28); on x86_64 it is OpenVINO (manylinux_2_28 x86_64 wheel). See :data:`DEFAULT_ENGINE`.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spark_jobs.featurize import network
from spark_jobs.featurize.network import preprocess

if TYPE_CHECKING:  # pragma: no cover
    from spark_jobs.featurize.network import ModelSpec

ENGINES = ("tensorflow", "openvino", "onnxruntime")
# Default engine per EMR architecture (cdk context emrArchitecture) / platform.machine(): the fastest engine whose
# f32 features match Keras within 1e-5 relative and whose wheel installs on Amazon Linux 2023 (module doc).
DEFAULT_ENGINE = {"X86_64": "openvino", "ARM64": "onnxruntime"}
_MACHINES = {"x86_64": "X86_64", "amd64": "X86_64", "aarch64": "ARM64", "arm64": "ARM64"}

Featurizer = Callable[[np.ndarray], np.ndarray]


class EngineError(ValueError):
    """Unknown engine, or an engine/precision pair that is not supported."""


def default_engine(machine: str | None = None, precision: str = "float32") -> str:
    """Default engine of an architecture (``X86_64``/``ARM64`` or ``platform.machine()``; default: this machine).

    :data:`DEFAULT_ENGINE` for ``float32`` and ``int8``; for a precision the default engine does not support,
    ``tensorflow``.
    """
    key = (machine or platform.machine()).upper()
    key = _MACHINES.get(key.lower(), key)
    engine = DEFAULT_ENGINE.get(key, "tensorflow")
    try:
        return check_engine(engine, precision)
    except EngineError:
        return "tensorflow"


def check_engine(engine: str, precision: str = "float32") -> str:
    """Validate an engine name and its precision; returns ``engine``. Raises :class:`EngineError`."""
    if engine not in ENGINES:
        raise EngineError(f"bad engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "onnxruntime" and precision == "bfloat16":
        raise EngineError("engine onnxruntime runs --precision float32 or int8: bfloat16 refused, float32 only "
                          "among the float precisions (no bf16 CPU kernels)")
    if engine == "tensorflow" and precision == "int8":
        raise EngineError("--precision int8 runs on engine openvino (x86_64) or onnxruntime, not tensorflow")
    return engine


def cache_dir() -> Path:
    """Directory of converted models: env ``FRUITS_ENGINE_CACHE``, else ``<tmp>/fruits-engines`` (per executor)."""
    return Path(os.environ.get("FRUITS_ENGINE_CACHE") or os.path.join(tempfile.gettempdir(), "fruits-engines"))


def cache_key(spec: ModelSpec, engine: str, version: str) -> str:
    """File stem of a converted model: model_id + 12 hex of sha256(model_id, weights sha256, engine, version;
    int8 also the calibration set's sha256 and :data:`spark_jobs.featurize.quantization.RECIPE`)."""
    parts = [spec.model_id, spec.weights_sha256 or "", spec.precision, engine, version]
    if spec.calibration is not None:
        from spark_jobs.featurize.quantization import RECIPE

        parts += [spec.calibration.sha256, RECIPE]
    ident = "|".join(parts)
    return f"{spec.model_id}-{engine}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def _atomic_dir(final: Path) -> Path:
    """A fresh temporary directory next to ``final`` (several workers may convert at once; rename wins)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))


def _publish(tmp: Path, names: list[str], directory: Path) -> None:
    for name in names:  # .bin before .xml: a reader that sees the .xml also sees its weights
        os.replace(tmp / name, directory / name)
    for leftover in tmp.iterdir():
        leftover.unlink()
    tmp.rmdir()


def _tensorflow(spec: ModelSpec, threads: int) -> Featurizer:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # runtime already initialised in this worker: keep its setting
        pass
    model = network.build_resnet(spec)

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(preprocess(pixels)), dtype=np.float32)

    return run


def _openvino(spec: ModelSpec, threads: int) -> Featurizer:
    import openvino as ov

    core = ov.Core()
    model = _openvino_model(spec, core)
    config = {
        # int8: the quantized operations run int8, the others f32 (as measured by the fidelity gate)
        "INFERENCE_PRECISION_HINT": "bf16" if spec.precision == "bfloat16" else "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": str(threads),
        # OpenVINO pins its threads to cores by default: Spark's Python workers (one per task slot, each with its
        # own engine) then all pin to the same first cores and share them (measured on 2 cores, 2 workers x 1
        # thread: 10.2 images/s each pinned, 21.4 unpinned). The OS scheduler spreads unpinned workers.
        "ENABLE_CPU_PINNING": False,
    }
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def run(pixels: np.ndarray) -> np.ndarray:
        result = request.infer(preprocess(pixels))
        return np.array(result[compiled.output(0)], dtype=np.float32)

    return run


def _openvino_model(spec: ModelSpec, core):
    """The OpenVINO model of ``spec``: read from the cache, else converted from Keras (f32 graph; bf16 is applied
    at compile time) or, for int8, quantized from the f32 model; saved to the cache."""
    import openvino as ov

    directory = cache_dir()
    stem = cache_key(spec, "openvino", ov.__version__)
    xml = directory / f"{stem}.xml"
    if xml.exists():
        return core.read_model(str(xml))
    if spec.precision == "int8":
        from spark_jobs.featurize.quantization import load_pixels, quantize_openvino

        assert spec.calibration is not None
        model = quantize_openvino(_openvino_model(_f32(spec), core),
                                  load_pixels(spec.calibration.calibration, spec.image_size))
    else:
        keras_spec = spec if spec.precision == "float32" else _f32(spec)  # OpenVINO applies bf16 itself
        model = ov.convert_model(network.build_resnet(keras_spec))
    tmp = _atomic_dir(xml)
    ov.save_model(model, str(tmp / xml.name), compress_to_fp16=False)
    _publish(tmp, [f"{stem}.bin", xml.name], directory)
    return model


def _onnx_file(spec: ModelSpec) -> Path:
    """The cached ONNX file of ``spec``: exported from Keras (f32) or, for int8, quantized from the f32 file."""
    import onnxruntime as ort

    directory = cache_dir()
    path = directory / f"{cache_key(spec, 'onnxruntime', ort.__version__)}.onnx"
    if path.exists():
        return path
    tmp = _atomic_dir(path)
    if spec.precision == "int8":
        from spark_jobs.featurize.quantization import load_pixels, quantize_onnx

        assert spec.calibration is not None
        quantize_onnx(_onnx_file(_f32(spec)), tmp / path.name,
                      load_pixels(spec.calibration.calibration, spec.image_size))
    else:
        model = network.build_resnet(spec)
        model(np.zeros((1, spec.image_size, spec.image_size, 3), np.float32))  # Keras exports called models only
        model.export(str(tmp / path.name), format="onnx", verbose=False)
    _publish(tmp, [path.name], directory)
    return path


def _onnxruntime(spec: ModelSpec, threads: int) -> Featurizer:
    import onnxruntime as ort

    path = _onnx_file(spec)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: preprocess(pixels)})[0], dtype=np.float32)

    return run


def _f32(spec: ModelSpec) -> ModelSpec:
    from dataclasses import replace

    return replace(spec, precision="float32", calibration=None)


_BUILDERS = {"tensorflow": _tensorflow, "openvino": _openvino, "onnxruntime": _onnxruntime}


def build_engine(spec: ModelSpec, engine: str, threads: int = 1) -> Featurizer:
    """A ResNet50 featurizer on ``engine``: uint8 RGB (n, s, s, 3) -> float32 (n, 2048).

    Converts the Keras model (or loads the cached conversion, module doc); ``threads`` = intra-op threads.
    Logs the build time on stderr. Raises :class:`EngineError`, ImportError (engine not installed).
    """
    check_engine(engine, spec.precision)
    started = time.perf_counter()
    fn = _BUILDERS[engine](spec, threads)
    sys.stderr.write(f"fruits: built {spec.model_id} on {engine} in worker pid {os.getpid()} "
                     f"({time.perf_counter() - started:.1f} s, {threads} thread(s))\n")
    return fn
