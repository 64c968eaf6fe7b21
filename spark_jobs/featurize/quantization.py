"""int8 post-training quantization of the ResNet50: the calibration set, the two quantizers (the fidelity gate:
:mod:`spark_jobs.featurize.fidelity`).

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

**Fidelity gate** (:func:`spark_jobs.featurize.fidelity.fidelity_gate`): before a batch is featurized with an int8
model, the held-back photos are featurized in float32 and int8 on the driver and compared: mean and minimum cosine
similarity, relative difference ``||Q - F||_F / ||F||_F`` and the accuracy of a linear probe (logistic regression,
stratified k-fold, same folds for both) on each. A mean cosine below the threshold (default
:data:`spark_jobs.featurize.fidelity.MIN_MEAN_COSINE`) raises :class:`spark_jobs.featurize.fidelity.FidelityError`
before any batch data is written; the figures go into the batch report. The figures are a property of the quantized
model and the held-back photos: they are measured once and remembered in the lake when passed
(``fidelity/<model_id>/<engine>-<key>.json``, :func:`spark_jobs.featurize.fidelity.gate_record_uri`) and next to the
cached model, passed or refused, and later job runs reuse them (the report says so and since when); the threshold is
applied every time.
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
    pass

CALIBRATION_IMAGES = 300  # NNCF's default subset_size (nncf.quantize); the measured setting
HOLDOUT_IMAGES = 100
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# What the quantizers do; part of the converted models' cache key (a new recipe never reuses an old file).
RECIPE = "ov:nncf-mixed-fastbias|ort:qdq-u8s8-perchannel-minmax"


class CalibrationError(ValueError):
    """The calibration source is missing, unreadable, or has too few usable photos."""


@dataclass(frozen=True)
class Photo:
    """One photo of a calibration source: where it is, the sha256 of its bytes, its label (or None)."""

    uri: str
    sha256: str
    label: str | None


@dataclass(frozen=True)
class CalibrationSet:
    """A resolved calibration source: ``calibration`` photos (quantize) and ``holdout`` photos (fidelity gate).

    Immutable and hashable (it is part of :class:`spark_jobs.featurize.network.ModelSpec`, shipped to every worker)."""

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
    from spark_jobs.featurize.images import decode_image

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
    from spark_jobs.featurize.images import decode_image

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

    from spark_jobs.featurize.network import preprocess

    dataset = nncf.Dataset([pixels[i : i + 1] for i in range(len(pixels))], preprocess)
    return nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(pixels))


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader``: one preprocessed image per ``get_next``."""

    def __init__(self, name: str, pixels: np.ndarray) -> None:
        self._items: Iterator[np.ndarray] = iter(pixels)
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        from spark_jobs.featurize.network import preprocess

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
