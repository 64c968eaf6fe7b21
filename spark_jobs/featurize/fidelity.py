"""The int8 fidelity gate: the held-back photos of an int8 model's calibration set featurized in float32 and int8
on the job's engine and compared (cosine, relative difference, linear-probe accuracy) before a batch uses the model.

Split from :mod:`spark_jobs.featurize.quantization` (the calibration set and the quantizers, which the engines use)
because the gate builds engines: quantization -> engines -> fidelity, one way. Details: that module's doc.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spark_jobs import storage
from spark_jobs.featurize.quantization import CalibrationSet, load_pixels

if TYPE_CHECKING:  # pragma: no cover
    from spark_jobs.featurize.network import ModelSpec

MIN_MEAN_COSINE = 0.999


class FidelityError(RuntimeError):
    """The int8 model's features are too far from float32's on the held-back photos (the gate refused it)."""


def _engine_version(engine: str) -> str:
    return str(__import__("openvino" if engine == "openvino" else "onnxruntime").__version__)


def gate_record_uri(lake: str, spec: ModelSpec, engine: str) -> str:
    """Where the lake keeps the fidelity gate's figures of ``spec`` on ``engine``:
    ``<lake>/fidelity/<model_id>/<engine>-<16 hex>.json``, the hex = sha256 of the quantized model's cache key
    (:func:`spark_jobs.featurize.engines.cache_key`: model_id, weights sha256, engine and its version, calibration
    sha256, :data:`spark_jobs.featurize.quantization.RECIPE`) and of the held-back photos' content sha256. One
    record per quantized model and held-back set."""
    from spark_jobs.featurize import engines

    assert spec.calibration is not None
    ident = f"{engines.cache_key(spec, engine, _engine_version(engine))}|{_holdout_sha256(spec.calibration)}"
    name = f"{engine}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"
    return storage.join(lake, "fidelity", spec.model_id, name)


def _holdout_sha256(calibration: CalibrationSet) -> str:
    return hashlib.sha256("\n".join(p.sha256 for p in calibration.holdout).encode()).hexdigest()


def cosine_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays -> float64 (n,); a zero row against a zero row gives 1."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    dots = (a64 * b64).sum(axis=1)
    both_zero = (np.linalg.norm(a64, axis=1) == 0) & (np.linalg.norm(b64, axis=1) == 0)
    return np.where(both_zero, 1.0, dots / np.where(norms == 0, 1.0, norms))


def probe_accuracy(features: np.ndarray, labels: Sequence[str | None], seed: int = 0) -> float | None:
    """Accuracy of a linear probe: standardised features -> logistic regression (scikit-learn), stratified
    k-fold cross-validated predictions (k = min(5, smallest class count)); None when fewer than two classes
    have two labelled photos. The folds depend only on ``labels`` and ``seed``, so two feature sets of the same
    photos are scored on the same splits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = [i for i, label in enumerate(labels) if label is not None]
    counts: dict[str, int] = {}
    for i in keep:
        counts[labels[i]] = counts.get(labels[i], 0) + 1  # type: ignore[index]
    keep = [i for i in keep if counts[labels[i]] >= 2]  # type: ignore[index]
    classes = {labels[i] for i in keep}
    if len(classes) < 2:
        return None
    y = np.array([labels[i] for i in keep])
    # type: ignore[index]
    folds = StratifiedKFold(n_splits=min(5, min(counts[c] for c in classes)), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    predicted = cross_val_predict(model, features[keep].astype(np.float64), y, cv=folds)
    return float((predicted == y).mean())


def compare(f32: np.ndarray, int8: np.ndarray, labels: Sequence[str | None]) -> dict[str, Any]:
    """Fidelity figures of int8 features against f32 features of the same photos (both float32 (n, d)):
    ``mean_cosine``, ``min_cosine``, ``relative_difference`` (``||int8 - f32||_F / ||f32||_F``),
    ``probe_accuracy_f32`` / ``probe_accuracy_int8`` (:func:`probe_accuracy`, same folds)."""
    cosines = cosine_similarities(f32, int8)
    reference = float(np.linalg.norm(f32.astype(np.float64)))
    difference = float(np.linalg.norm(int8.astype(np.float64) - f32.astype(np.float64)))
    return {"images": len(f32), "mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min()),
            "relative_difference": difference / reference if reference else 0.0,
            "probe_accuracy_f32": probe_accuracy(f32, labels), "probe_accuracy_int8": probe_accuracy(int8, labels)}


def _model_files(spec: ModelSpec, engine: str) -> list[Path]:
    """The engine-cache files of ``spec`` on ``engine`` (:func:`spark_jobs.featurize.engines.cache_key`)."""
    from spark_jobs.featurize import engines

    stem = engines.cache_dir() / engines.cache_key(spec, engine, _engine_version(engine))
    return [stem.with_suffix(".xml"), stem.with_suffix(".bin")] if engine == "openvino" else [stem.with_suffix(".onnx")]


def _digest(files: list[Path]) -> str | None:
    """sha256 of the cached model's weights (OpenVINO ``.bin`` / the ``.onnx``), None when a file is missing. The
    OpenVINO ``.xml`` is left out: two NNCF runs on the same inputs give byte-identical ``.bin`` files but other
    node names in the ``.xml`` (spark_jobs/README.md "int8"), and the record must match on every host."""
    if not all(f.is_file() for f in files):
        return None
    digest = hashlib.sha256()
    for f in files:
        if f.suffix != ".xml":
            digest.update(f.read_bytes())
    return digest.hexdigest()


def _read_json(uri: str) -> dict[str, Any] | None:
    """The JSON object at ``uri``, or None when absent or unreadable as a JSON object (then measured again)."""
    import json

    try:
        kept = json.loads(storage.read_bytes(uri))
    except (FileNotFoundError, ValueError):
        return None
    return kept if isinstance(kept, dict) else None


def _measure(spec: ModelSpec, engine: str, threads: int, batch_size: int) -> dict[str, Any]:
    """Featurize the held-back photos in float32 and int8 on ``engine`` and :func:`compare` them."""
    from dataclasses import replace

    from spark_jobs.featurize.engines import build_engine

    assert spec.calibration is not None
    holdout = spec.calibration.holdout
    pixels = load_pixels(holdout, spec.image_size)
    runs = []
    for model in (replace(spec, precision="float32", calibration=None), spec):
        featurizer = build_engine(model, engine, threads)  # not the process cache: the driver drops them
        runs.append(np.concatenate([featurizer(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]))
        del featurizer
    return compare(runs[0], runs[1], [p.label for p in holdout])


def fidelity_gate(spec: ModelSpec, engine: str, threads: int = 1, min_mean_cosine: float = MIN_MEAN_COSINE,
                  batch_size: int = 32, lake: str | None = None) -> dict[str, Any]:
    """Run the fidelity gate of an int8 ``spec`` on ``engine`` (module doc) and return its figures.

    The figures are a property of the quantized model (weights, calibration set, engine and version, recipe) and
    of the held-back photos, so they are measured once and remembered:

    * in ``lake`` (when given and the gate passed: a refused run writes nothing to the lake), at
      :func:`gate_record_uri`: a later job run, even on fresh workers with an empty
      engine cache, reuses them without building any model (``reused_from: "lake"``); when this process has the
      cached int8 model files and their sha256 differs from the recorded one, the gate is measured again;
    * next to the cached int8 model (engine cache, :mod:`spark_jobs.featurize.engines`, passed or refused) with the
      sha256 of its files: a later gate of the very same files reuses them (``reused_from: "engine-cache"``).

    Otherwise it builds (or loads from the engine cache) the f32 and int8 models in this process, featurizes the
    held-back photos with both and compares them (:func:`compare`), then writes both records. The threshold is
    applied every time, to measured or remembered figures alike, so a refused model is refused again (without
    measuring again) until the threshold, calibration set or model changes.

    Returns: the :func:`compare` figures plus ``threshold``, ``passed``, ``engine``, ``engine_version``,
    ``cached`` (True when reused), ``reused_from`` (None, ``"lake"`` or ``"engine-cache"``), ``measured_at``
    (UTC ISO time of the measurement, also when reused), ``measure_seconds`` (wall time of that measurement),
    ``model_sha256``, ``holdout_sha256``, ``calibration`` (:meth:`CalibrationSet.describe`) and ``seconds``
    (wall time of this gate call).

    Raises:
        FidelityError: mean cosine < ``min_mean_cosine`` (the message gives the figures and when they were
            measured).
        ValueError: ``spec`` is not an int8 spec with a calibration set.
    """
    import datetime as dt
    import json
    import time

    if spec.precision != "int8" or spec.calibration is None:
        raise ValueError("the fidelity gate applies to --precision int8 specs with a calibration set")
    started = time.perf_counter()
    holdout_sha = _holdout_sha256(spec.calibration)
    files = _model_files(spec, engine)
    local = files[0].with_name(f"{files[0].stem}.gate-{holdout_sha[:16]}.json")
    remote = gate_record_uri(lake, spec, engine) if lake else None
    model_sha = _digest(files)
    figures, reused_from = None, None
    kept = _read_json(remote) if remote else None
    if kept is not None and kept.get("holdout_sha256") == holdout_sha and model_sha in (None, kept.get("model_sha256")):
        figures, reused_from = kept, "lake"
    kept = _read_json(str(local)) if model_sha and figures is None else None
    if kept is not None and kept.get("model_sha256") == model_sha and kept.get("holdout_sha256") == holdout_sha:
        figures, reused_from = kept, "engine-cache"
    if figures is None:
        measured_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        figures = _measure(spec, engine, threads, batch_size)
        figures.update(model_sha256=_digest(files), holdout_sha256=holdout_sha, measured_at=measured_at,
                       measure_seconds=round(time.perf_counter() - started, 3), engine_version=_engine_version(engine))
        if figures["model_sha256"]:
            storage.write_bytes(str(local), json.dumps(figures).encode())
    passed = figures["mean_cosine"] >= min_mean_cosine
    if remote and passed and reused_from != "lake":  # a refused gate writes nothing to the lake (issue 22)
        storage.write_bytes(remote, json.dumps({**figures, "model_id": spec.model_id, "engine": engine}).encode())
    figures = {**figures, "threshold": min_mean_cosine, "passed": passed,
               "engine": engine, "cached": reused_from is not None, "reused_from": reused_from,
               "calibration": spec.calibration.describe(), "seconds": round(time.perf_counter() - started, 3)}
    figures.pop("model_id", None)
    if not figures["passed"]:
        when = f"measured {figures.get('measured_at')}" + (f", remembered in {reused_from}" if reused_from else "")
        raise FidelityError(
            f"int8 model {spec.model_id} on {engine} refused by the fidelity gate: mean cosine to float32 "
            f"{figures['mean_cosine']:.5f} < {min_mean_cosine} on {figures['images']} held-back photos (min "
            f"{figures['min_cosine']:.5f}, relative difference {figures['relative_difference']:.2e}; {when}); "
            "no batch written. Use another calibration set, --precision float32, or lower --min-mean-cosine.")
    return figures
