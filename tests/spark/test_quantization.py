"""--precision int8: the named calibration set, the quantized model (OpenVINO + NNCF, ONNX Runtime QDQ), its cache
and model_id, and the fidelity gate (held-back photos; refused below the mean-cosine threshold)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spark_jobs.featurize import engines, fidelity, quantization
from spark_jobs.featurize.fidelity import FidelityError
from spark_jobs.featurize.models import resolve_weights
from spark_jobs.featurize.quantization import CalibrationError, resolve_calibration

SIZE = 64  # a 64x64 ResNet50 quantizes and runs in seconds; the 224 figures are in bench/engines.py
CLASSES = ["Banana", "Kiwi", "Lemon", "Limes"]


@pytest.fixture(scope="session")
def photo_folder(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real Training photos of each of four classes, copied into <tmp>/<class>/."""
    root = tmp_path_factory.mktemp("calibration")
    for cls in CLASSES:
        (root / cls).mkdir()
        for f in sorted((sample_dir / "Training" / cls).glob("*.jpg"))[:6]:
            shutil.copyfile(f, root / cls / f.name)
    return root


@pytest.fixture(scope="session")
def int8_spec(photo_folder: Path):
    """An int8 spec (random:5 weights, 64 px) calibrated on 8 photos, 16 held back."""
    return resolve_weights("random:5", SIZE, "int8", resolve_calibration(str(photo_folder), 8, 16, SIZE))


def test_calibration_set_is_a_deterministic_named_split(photo_folder: Path, tmp_path: Path) -> None:
    # GIVEN a folder of photos plus a duplicate of one of them and a corrupt file
    first = resolve_calibration(str(photo_folder), 8, 16, SIZE)
    extra = tmp_path / "folder"
    shutil.copytree(photo_folder, extra)
    shutil.copyfile(first.calibration[0].uri, extra / "Banana" / "copy_of_a_calibration_photo.jpg")
    (extra / "Kiwi" / "broken.jpg").write_bytes(b"not a jpeg")
    # WHEN the set is resolved again, from the same folder and from the copy
    again = resolve_calibration(str(photo_folder), 8, 16, SIZE)
    # THEN the same folder gives the same photos and the same hash (the quantized model's name)
    assert again == first and len(first.sha256) == 64
    assert len(first.calibration) == 8 and len(first.holdout) == 16
    # AND held-back photos are never calibration photos (by content), labels are the folder names
    assert not {p.sha256 for p in first.calibration} & {p.sha256 for p in first.holdout}
    assert {p.label for p in first.calibration + first.holdout} <= set(CLASSES)
    # AND the duplicate and the corrupt file are skipped, never counted twice or used
    copy = resolve_calibration(str(extra), 8, 16, SIZE)
    assert len({p.sha256 for p in copy.calibration + copy.holdout}) == 24
    assert all(not p.uri.endswith("broken.jpg") for p in copy.calibration + copy.holdout)
    # AND asking for more photos than the source has is a clear error
    with pytest.raises(CalibrationError, match="24 usable distinct photos"):
        resolve_calibration(str(photo_folder), 20, 10, SIZE)
    with pytest.raises(CalibrationError, match="folder of photos or a manifest"):
        resolve_calibration(str(tmp_path / "missing.jsonl"), 8, 16, SIZE)


def test_calibration_manifest_names_the_photos(photo_folder: Path, tmp_path: Path) -> None:
    # GIVEN a calibration manifest (JSON lines, image_uri + label) of the folder's photos
    files = sorted(photo_folder.rglob("*.jpg"))
    manifest = tmp_path / "calibration.jsonl"
    manifest.write_text("".join(json.dumps({"image_uri": str(f), "label": f.parent.name}) + "\n" for f in files))
    # WHEN it is resolved THEN its photos split into calibration and held-back photos, labels kept
    got = resolve_calibration(str(manifest), 4, 4, SIZE)
    assert len(got.calibration) == 4 and len(got.holdout) == 4
    assert {p.uri for p in got.calibration + got.holdout} <= {str(f) for f in files}
    assert all(p.label in CLASSES for p in got.holdout)


def test_int8_model_id_names_the_calibration(int8_spec, photo_folder: Path) -> None:
    # GIVEN an int8 spec THEN its model_id is the f32 one + -int8-<first 8 hex of the calibration hash>
    assert int8_spec.model_id == f"resnet50-random5-{SIZE}-int8-{int8_spec.calibration.sha256[:8]}"
    # AND another calibration set gives another model_id (features never mix), f32 keeps its model_id
    other = resolve_weights("random:5", SIZE, "int8", resolve_calibration(str(photo_folder), 9, 15, SIZE))
    assert other.model_id != int8_spec.model_id
    assert resolve_weights("random:5", SIZE).model_id == f"resnet50-random5-{SIZE}"
    # AND int8 without a calibration set, or on the projection featurizer, is refused
    with pytest.raises(ValueError, match="calibration"):
        resolve_weights("random:5", SIZE, "int8")
    with pytest.raises(ValueError, match="projection"):
        resolve_weights("projection:1", SIZE, "int8", int8_spec.calibration)


def test_fidelity_figures_and_probe_use_the_same_folds() -> None:
    # GIVEN features of two separable classes and a slightly perturbed copy
    rng = np.random.default_rng(0)
    f32 = np.concatenate([rng.normal(0, 1, (10, 32)) + 4, rng.normal(0, 1, (10, 32)) - 4]).astype(np.float32)
    labels = ["a"] * 10 + ["b"] * 10
    figures = fidelity.compare(f32, f32 + 1e-3, labels)
    # THEN cosine is ~1, the relative difference is small and both probes separate the classes
    assert figures["mean_cosine"] > 0.9999 and figures["min_cosine"] <= figures["mean_cosine"]
    assert 0 < figures["relative_difference"] < 1e-3
    assert figures["probe_accuracy_f32"] == figures["probe_accuracy_int8"] == 1.0
    # AND a probe is not computed without two classes of two photos
    assert fidelity.probe_accuracy(f32[:3], ["a", "a", "b"]) is None


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_int8_engine_is_cached_close_to_f32_and_gated(engine: str, int8_spec, monkeypatch) -> None:
    # GIVEN an int8 spec calibrated on 8 real photos
    pixels = quantization.load_pixels(int8_spec.calibration.holdout, SIZE)
    # WHEN it is built on the engine (quantized now, or loaded from the engine cache) and run
    got = engines.build_engine(int8_spec, engine, threads=2)(pixels)
    f32 = engines.build_engine(replace(int8_spec, precision="float32", calibration=None), engine, 2)(pixels)
    # THEN its features are close to f32 on photos not used to calibrate
    assert got.shape == (16, 2048) and got.dtype == np.float32
    assert fidelity.cosine_similarities(f32, got).mean() >= fidelity.MIN_MEAN_COSINE
    # AND the quantized model is cached under its model_id: a second build quantizes nothing
    assert list(engines.cache_dir().glob(f"{int8_spec.model_id}-{engine}-*"))
    monkeypatch.setattr(quantization, "quantize_openvino", lambda *a: pytest.fail("quantized again"))
    monkeypatch.setattr(quantization, "quantize_onnx", lambda *a: pytest.fail("quantized again"))
    np.testing.assert_array_equal(engines.build_engine(int8_spec, engine, threads=2)(pixels), got)
    # WHEN the fidelity gate runs THEN it passes with its figures on the 16 held-back photos
    gate = fidelity.fidelity_gate(int8_spec, engine, threads=2)
    assert gate["passed"] and gate["images"] == 16 and gate["engine"] == engine
    assert gate["mean_cosine"] >= 0.999 and gate["min_cosine"] <= gate["mean_cosine"]
    assert gate["probe_accuracy_f32"] is not None and gate["probe_accuracy_int8"] is not None
    assert gate["calibration"]["sha256"] == int8_spec.calibration.sha256
    # AND a second gate of the same model files reuses the figures, the threshold applied again
    again = fidelity.fidelity_gate(int8_spec, engine, threads=2)
    assert again["cached"] and again["mean_cosine"] == gate["mean_cosine"]
    with pytest.raises(FidelityError, match="refused by the fidelity gate"):
        fidelity.fidelity_gate(int8_spec, engine, threads=2, min_mean_cosine=1.0)


def test_job_arguments_tie_int8_to_a_calibration_source(photo_folder: Path, capsys) -> None:
    from spark_jobs.main import main, parse_args

    base = ["--manifest", "m.jsonl", "--lake", "/tmp/lake", "--batch-id", "b1"]
    # GIVEN int8 with a calibration folder THEN the job config carries it and the gate's threshold
    config = parse_args([*base, "--precision", "int8", "--calibration", str(photo_folder), "--min-mean-cosine",
                         "0.995", "--calibration-images", "8", "--holdout-images", "16"])
    assert (config.calibration, config.min_mean_cosine, config.calibration_images) == (str(photo_folder), 0.995, 8)
    # AND int8 without a calibration source, or a calibration source without int8, is a bad argument (exit 2)
    assert main([*base, "--precision", "int8"]) == 2
    assert main([*base, "--calibration", str(photo_folder)]) == 2
    assert main([*base, "--precision", "int8", "--calibration", "x", "--min-mean-cosine", "2"]) == 2
    assert "--calibration" in capsys.readouterr().err


@pytest.mark.slow
def test_int8_job_records_the_gate_or_refuses_with_nothing_written(spark, photo_folder: Path, int8_spec,
                                                                    sample_dir: Path, tmp_path: Path) -> None:
    from spark_jobs.lakehouse import reports as lake_io
    from spark_jobs.main import main

    from .conftest import write_manifest

    photos = sorted((sample_dir / "Test" / "Banana").glob("*.jpg"))[:3]
    manifest = write_manifest(tmp_path / "m.jsonl", photos)
    args = ["--manifest", manifest, "--weights", "random:5", "--image-size", str(SIZE), "--precision", "int8",
            "--engine", "openvino", "--calibration", str(photo_folder), "--calibration-images", "8",
            "--holdout-images", "16", "--pca-k", "2"]
    # GIVEN a threshold no quantized model reaches WHEN the job runs THEN it is refused and writes nothing
    refused = tmp_path / "refused"
    assert main([*args, "--lake", str(refused), "--batch-id", "b000001-int8", "--min-mean-cosine", "1"]) == 1
    assert not refused.exists() or not any(p.is_file() for p in refused.rglob("*"))
    # GIVEN the default threshold WHEN the job runs THEN the batch is featurized under the int8 model_id
    lake = tmp_path / "lake"
    assert main([*args, "--lake", str(lake), "--batch-id", "b000002-int8"]) == 0
    report = lake_io.read_report(str(lake), "b000002-int8")
    assert report["model_id"] == int8_spec.model_id and report["precision"] == "int8"
    assert report["counts"]["featurized"] == 3
    # AND the report carries the fidelity gate's figures on the 16 held-back photos
    gate = report["fidelity"]
    assert gate["passed"] and gate["images"] == 16 and gate["mean_cosine"] >= 0.999
    assert gate["calibration"]["sha256"] == int8_spec.calibration.sha256 and gate["threshold"] == 0.999
    # AND the figures measured by the refused run were reused (from this machine's engine cache), saying when
    assert gate["cached"] and gate["reused_from"] == "engine-cache" and gate["measured_at"]
    # AND a third run in the same lake reuses them from the lake
    assert main([*args, "--lake", str(lake), "--batch-id", "b000003-int8"]) == 0
    assert lake_io.read_report(str(lake), "b000003-int8")["fidelity"]["reused_from"] == "lake"
    rows = lake_io.read_features(spark, str(lake)).collect()
    assert {r.model_id for r in rows} == {int8_spec.model_id}
