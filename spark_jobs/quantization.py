"""int8 post-training quantization of the ResNet50: the calibration set, the two quantizers, the fidelity gate.

``--precision int8`` runs a statically quantized copy of the float32 network (int8 weights per output channel,
int8/uint8 activations with scales measured on a calibration set of photos):

* x86_64 (OpenVINO): ``nncf.quantize`` (NNCF post-training quantization, preset MIXED: symmetric weights,
  asymmetric activations) of the converted OpenVINO model;
* ARM64 (ONNX Runtime, the deployed default): ``onnxruntime.quantization.quantize_static`` of the exported ONNX
  model, QDQ format, per-channel int8 weights, uint8 activations, MinMax calibration.

**Calibration set** (:func:`resolve_calibration`): one named *source* of labelled photos, a local folder
(photos found recursively, label = parent folder name) or a calibration manifest (JSON lines / Parquet with
``image_uri`` and optional ``label`` per photo, same reader as the batch manifest, local or ``s3://``). Its photos
are ranked by sha256 of their name (path relative to the folder, or the manifest's ``image_uri``): the first
``calibration_images`` usable ones calibrate, the next ``holdout_images`` (distinct contents) are *held back* for
the fidelity gate. The set's hash (:attr:`CalibrationSet.sha256`, over the calibration photos' content sha256)
names the quantized model (model_id ``…-int8-<hash8>``) and keys its cache, so the same weights + the same
photos always give the same quantized model, and features of different calibrations never mix.

**Fidelity gate** (:func:`fidelity_gate`): before a batch is featurized with an int8 model, the held-back photos
are featurized in float32 and int8 on the driver and compared: mean and minimum cosine similarity, relative
difference ``||Q - F||_F / ||F||_F`` and the accuracy of a linear probe (logistic regression, stratified k-fold,
same folds for both) on each. A mean cosine below the threshold (default :data:`MIN_MEAN_COSINE`) raises
:class:`FidelityError` before any batch data is written; the figures go into the batch report. The figures are a
property of the quantized model and the held-back photos: they are measured once and remembered in the lake
(``fidelity/<model_id>/<engine>-<key>.json``, :func:`gate_record_uri`) and next to the cached model, passed or
refused, and later job runs reuse them (the report says so and since when); the threshold is applied every time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spark_jobs import storage

if TYPE_CHECKING:  # pragma: no cover
    from spark_jobs.network import ModelSpec

CALIBRATION_IMAGES = 300  # NNCF's default subset_size (nncf.quantize); the measured setting
HOLDOUT_IMAGES = 100
MIN_MEAN_COSINE = 0.999
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# What the quantizers do; part of the converted models' cache key (a new recipe never reuses an old file).
RECIPE = "ov:nncf-mixed-fastbias|ort:qdq-u8s8-perchannel-minmax"


class CalibrationError(ValueError):
    """The calibration source is missing, unreadable, or has too few usable photos."""


class FidelityError(RuntimeError):
    """The int8 model's features are too far from float32's on the held-back photos (the gate refused it)."""


@dataclass(frozen=True)
class Photo:
    """One photo of a calibration source: where it is, the sha256 of its bytes, its label (or None)."""

    uri: str
    sha256: str
    label: str | None


@dataclass(frozen=True)
class CalibrationSet:
    """A resolved calibration source: ``calibration`` photos (quantize) and ``holdout`` photos (fidelity gate).

    Immutable and hashable (it is part of :class:`spark_jobs.network.ModelSpec`, shipped to every worker)."""

    source: str
    calibration: tuple[Photo, ...]
    holdout: tuple[Photo, ...]

    @property
    def sha256(self) -> str:
        """sha256 (hex) of the sorted content sha256 of the calibration photos, one per line: the set's identity."""
        return hashlib.sha256("\n".join(sorted(p.sha256 for p in self.calibration)).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (batch report): source, counts, sha256."""
        return {"source": self.source, "calibration_images": len(self.calibration),
                "holdout_images": len(self.holdout), "sha256": self.sha256}


def _rank(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _candidates(source: str) -> list[tuple[str, str, str | None]]:
    """(rank name, uri, label) of every photo of ``source`` (folder or manifest)."""
    from spark_jobs.manifest import ManifestError, parse_manifest

    local = None if storage.is_s3(source) else storage.local_path(source)
    if local is not None and local.is_dir():
        files = [p for p in local.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        return [(p.relative_to(local).as_posix(), str(p.resolve()), p.parent.name if p.parent != local else None)
                for p in files]
    try:
        records = parse_manifest(storage.read_bytes(source))
    except (FileNotFoundError, ManifestError) as err:
        raise CalibrationError(f"calibration source {source!r}: expected a folder of photos or a manifest "
                               f"({type(err).__name__}: {err})") from None
    return [(r["image_uri"], r["image_uri"], r["label"] or Path(r["image_uri"]).parent.name or None)
            for r in records]


def resolve_calibration(source: str, calibration_images: int = CALIBRATION_IMAGES,
                        holdout_images: int = HOLDOUT_IMAGES, image_size: int = 224) -> CalibrationSet:
    """Pick the calibration and held-back photos of ``source`` (module doc), deterministically.

    Photos are taken in sha256-of-name order; a photo that cannot be read or decoded, or whose bytes equal an
    already picked photo's, is skipped. Runs on the driver (reads the picked photos once).

    Raises:
        CalibrationError: the source is neither a folder nor a readable manifest, or has fewer than
            ``calibration_images + holdout_images`` usable distinct photos.
    """
    from spark_jobs.images import decode_image

    if calibration_images < 1 or holdout_images < 1:
        raise CalibrationError("calibration and held-back image counts must be positive")
    want = calibration_images + holdout_images
    picked: list[Photo] = []
    seen: set[str] = set()
    for _, uri, label in sorted(_candidates(source), key=lambda c: (_rank(c[0]), c[0])):
        try:
            data = storage.read_bytes(uri)
        except Exception:  # missing object, permissions: skip it, as the job rejects such an image
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen or decode_image(data, image_size).pixels is None:
            continue
        seen.add(digest)
        picked.append(Photo(uri, digest, label))
        if len(picked) == want:
            break
    if len(picked) < want:
        raise CalibrationError(f"calibration source {source!r} has {len(picked)} usable distinct photos, "
                               f"{calibration_images} calibration + {holdout_images} held back needed")
    return CalibrationSet(source, tuple(picked[:calibration_images]), tuple(picked[calibration_images:]))


def load_pixels(photos: Sequence[Photo], image_size: int = 224) -> np.ndarray:
    """uint8 RGB pixels (n, s, s, 3) of ``photos``, decoded as the job decodes images.

    Raises:
        CalibrationError: a photo is gone, or its bytes changed since the set was resolved (sha256 mismatch).
    """
    from spark_jobs.images import decode_image

    out = np.empty((len(photos), image_size, image_size, 3), np.uint8)
    for i, photo in enumerate(photos):
        try:
            data = storage.read_bytes(photo.uri)
        except Exception as err:
            raise CalibrationError(f"calibration photo {photo.uri} unreadable ({type(err).__name__})") from None
        pixels = decode_image(data, image_size).pixels
        if hashlib.sha256(data).hexdigest() != photo.sha256 or pixels is None:
            raise CalibrationError(f"calibration photo {photo.uri} changed since the set was resolved")
        out[i] = np.frombuffer(pixels, np.uint8).reshape(image_size, image_size, 3)
    return out


def quantize_openvino(model: Any, pixels: np.ndarray) -> Any:
    """NNCF post-training quantization of an OpenVINO f32 ResNet50 (``openvino.Model``) on ``pixels``.

    Args:
        pixels: uint8 RGB (n, s, s, 3) calibration photos; preprocessed as the engines do, one image per sample.

    Returns: the quantized ``openvino.Model`` (FakeQuantize nodes; int8 kernels at inference). Preset MIXED
    (symmetric weights, asymmetric activations), fast bias correction: NNCF's defaults for CNNs
    (docs.openvino.ai, "Basic Quantization Flow").
    """
    import nncf

    from spark_jobs.network import preprocess

    dataset = nncf.Dataset([pixels[i : i + 1] for i in range(len(pixels))], preprocess)
    return nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(pixels))


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader``: one preprocessed image per ``get_next``."""

    def __init__(self, name: str, pixels: np.ndarray) -> None:
        self._items: Iterator[np.ndarray] = iter(pixels)
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        from spark_jobs.network import preprocess

        item = next(self._items, None)
        return None if item is None else {self._name: preprocess(item[None])}


def quantize_onnx(f32_path: Path, out_path: Path, pixels: np.ndarray) -> None:
    """ONNX Runtime static quantization of the f32 ONNX ResNet50 at ``f32_path`` into ``out_path``.

    QDQ format, per-channel int8 weights (QInt8), uint8 activations (QUInt8), MinMax calibration on ``pixels``
    (uint8 RGB (n, s, s, 3)); the model is first pre-processed (shape inference, graph optimisation) as
    onnxruntime.ai "Quantize ONNX models" recommends for static quantization.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out_path.with_name(out_path.stem + ".prep.onnx")
    quant_pre_process(str(f32_path), str(prepared), skip_symbolic_shape=True)
    name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
    try:
        quantize_static(str(prepared), str(out_path), _Reader(name, pixels), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        prepared.unlink(missing_ok=True)


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
    folds = StratifiedKFold(n_splits=min(5, min(counts[c] for c in classes)), shuffle=True, random_state=seed)  # type: ignore[index]
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
    """The engine-cache files of ``spec`` on ``engine`` (:func:`spark_jobs.engines.cache_key`)."""
    from spark_jobs import engines

    stem = engines.cache_dir() / engines.cache_key(spec, engine, _engine_version(engine))
    return [stem.with_suffix(".xml"), stem.with_suffix(".bin")] if engine == "openvino" else [stem.with_suffix(".onnx")]


def _engine_version(engine: str) -> str:
    return str(__import__("openvino" if engine == "openvino" else "onnxruntime").__version__)


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


def gate_record_uri(lake: str, spec: ModelSpec, engine: str) -> str:
    """Where the lake keeps the fidelity gate's figures of ``spec`` on ``engine``:
    ``<lake>/fidelity/<model_id>/<engine>-<16 hex>.json``, the hex = sha256 of the quantized model's cache key
    (:func:`spark_jobs.engines.cache_key`: model_id, weights sha256, engine and its version, calibration sha256,
    :data:`RECIPE`) and of the held-back photos' content sha256. One record per quantized model and held-back set."""
    from spark_jobs import engines

    assert spec.calibration is not None
    ident = f"{engines.cache_key(spec, engine, _engine_version(engine))}|{_holdout_sha256(spec.calibration)}"
    name = f"{engine}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"
    return storage.join(lake, "fidelity", spec.model_id, name)


def _holdout_sha256(calibration: CalibrationSet) -> str:
    return hashlib.sha256("\n".join(p.sha256 for p in calibration.holdout).encode()).hexdigest()


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

    from spark_jobs.engines import build_engine

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
    * next to the cached int8 model (engine cache, :mod:`spark_jobs.engines`, passed or refused) with the sha256 of
      its files: a later gate of the very same files reuses them (``reused_from: "engine-cache"``).

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
