"""The int8 fidelity gate is measured once per quantized model and remembered: in the lake
(``fidelity/<model_id>/<engine>-<key>.json``) for job runs on fresh workers, next to the cached model for this
machine; a refused gate is remembered only in the engine cache (the lake gets nothing), and the threshold is applied
to remembered figures every time.

The measurement itself (f32 and int8 models on the held-back photos) is covered with real models in
test_quantization.py; here it is replaced by a counter so that only the bookkeeping is under test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spark_jobs import storage
from spark_jobs.featurize import fidelity
from spark_jobs.featurize.fidelity import FidelityError
from spark_jobs.featurize.models import resolve_weights
from spark_jobs.featurize.quantization import CalibrationSet, Photo

SIZE = 64


def _calibration(tag: str = "a", holdout: str = "h") -> CalibrationSet:
    calibration = tuple(Photo(f"/cal/{tag}{i}.jpg", f"{tag}{i:063d}", "Banana") for i in range(3))
    held = tuple(Photo(f"/hold/{holdout}{i}.jpg", f"{holdout}{i:063d}", "Kiwi") for i in range(2))
    return CalibrationSet("/cal", calibration, held)


@pytest.fixture
def measured(monkeypatch, tmp_path: Path) -> list[dict]:
    """Replace the measurement by one returning the figures in ``measured[0]``; every call is appended."""
    monkeypatch.setenv("FRUITS_ENGINE_CACHE", str(tmp_path / "engine-cache"))
    calls: list[dict] = [{"images": 2, "mean_cosine": 0.9999, "min_cosine": 0.9998, "relative_difference": 0.01,
                          "probe_accuracy_f32": None, "probe_accuracy_int8": None}]

    def measure(spec, engine, threads, batch_size):
        calls.append({"model_id": spec.model_id, "engine": engine})
        return dict(calls[0])

    monkeypatch.setattr(fidelity, "_measure", measure)
    return calls


def test_gate_is_measured_once_per_model_and_reused_from_the_lake(measured, monkeypatch, tmp_path: Path) -> None:
    # GIVEN an int8 model and a lake, and no engine-cache files (a fresh EMR worker)
    spec = resolve_weights("random:5", SIZE, "int8", _calibration())
    lake = str(tmp_path / "lake")
    # WHEN the gate runs for the first time THEN it measures, passes, and records the figures in the lake
    first = fidelity.fidelity_gate(spec, "openvino", lake=lake)
    assert len(measured) == 2 and first["passed"] and not first["cached"] and first["reused_from"] is None
    record = fidelity.gate_record_uri(lake, spec, "openvino")
    assert record.startswith(f"{lake}/fidelity/{spec.model_id}/openvino-") and storage.exists(record)
    kept = json.loads(storage.read_bytes(record))
    assert kept["mean_cosine"] == 0.9999 and kept["model_id"] == spec.model_id and kept["measured_at"]
    # WHEN a later job run gates the same model on another fresh worker (empty engine cache)
    monkeypatch.setenv("FRUITS_ENGINE_CACHE", str(tmp_path / "other-worker"))
    again = fidelity.fidelity_gate(spec, "openvino", lake=lake)
    # THEN the figures are reused from the lake, not measured again, and say when they were measured
    assert len(measured) == 2
    assert again["cached"] and again["reused_from"] == "lake" and again["measured_at"] == first["measured_at"]
    assert {k: again[k] for k in ("mean_cosine", "min_cosine", "relative_difference", "images")} == {
        k: first[k] for k in ("mean_cosine", "min_cosine", "relative_difference", "images")}
    assert again["passed"] and again["threshold"] == fidelity.MIN_MEAN_COSINE


def test_reuse_is_keyed_by_model_id_engine_and_held_back_photos(measured, tmp_path: Path) -> None:
    # GIVEN the gate of one int8 model recorded in the lake
    lake = str(tmp_path / "lake")
    spec = resolve_weights("random:5", SIZE, "int8", _calibration())
    fidelity.fidelity_gate(spec, "openvino", lake=lake)
    # WHEN another calibration (another model_id), another engine, other weights or another held-back set is gated
    others = [(resolve_weights("random:5", SIZE, "int8", _calibration("b")), "openvino"),
              (spec, "onnxruntime"),
              (resolve_weights("random:6", SIZE, "int8", _calibration()), "openvino"),
              (resolve_weights("random:5", SIZE, "int8", _calibration(holdout="g")), "openvino")]
    gates = [fidelity.fidelity_gate(other, engine, lake=lake) for other, engine in others]
    # THEN each is measured (none reuses the first record) and recorded under its own key
    assert [g["cached"] for g in gates] == [False] * 4 and len(measured) == 6
    uris = {fidelity.gate_record_uri(lake, other, engine) for other, engine in [(spec, "openvino"), *others]}
    assert len(uris) == 5 and all(storage.exists(u) for u in uris)
    assert others[0][0].model_id != spec.model_id
    assert fidelity.gate_record_uri(lake, others[0][0], "openvino").split("/")[-2] == others[0][0].model_id


def test_refused_gate_is_remembered_and_the_threshold_applied_every_time(measured, monkeypatch,
                                                                         tmp_path: Path) -> None:
    # GIVEN an int8 model whose features are too far from f32 (mean cosine 0.99)
    measured[0].update(mean_cosine=0.99, min_cosine=0.95)
    spec = resolve_weights("random:5", SIZE, "int8", _calibration())
    lake = str(tmp_path / "lake")
    # WHEN the gate runs THEN it refuses with the figures
    with pytest.raises(FidelityError, match=r"refused by the fidelity gate: mean cosine to float32 0\.99000"):
        fidelity.fidelity_gate(spec, "openvino", lake=lake)
    # AND the lake holds nothing of it: a refused run writes nothing (issue 22)
    assert not (tmp_path / "lake").exists() or not any(p.is_file() for p in (tmp_path / "lake").rglob("*"))
    # AND a later run on a fresh worker (empty engine cache) measures again and refuses again
    monkeypatch.setenv("FRUITS_ENGINE_CACHE", str(tmp_path / "other-worker"))
    with pytest.raises(FidelityError, match="refused by the fidelity gate"):
        fidelity.fidelity_gate(spec, "openvino", lake=lake)
    assert len(measured) == 3
    # AND a lower threshold passes; the passed figures are then remembered in the lake and reused from there
    lowered = fidelity.fidelity_gate(spec, "openvino", min_mean_cosine=0.98, lake=lake)
    assert lowered["passed"] and not lowered["cached"] and len(measured) == 4
    again = fidelity.fidelity_gate(spec, "openvino", min_mean_cosine=0.98, lake=lake)
    assert again["reused_from"] == "lake" and len(measured) == 4


def test_engine_cache_record_is_reused_and_a_different_local_model_is_measured_again(measured,
                                                                                    tmp_path: Path) -> None:
    # GIVEN the cached int8 model files of this machine (their bytes stand for the quantized model)
    spec = resolve_weights("random:5", SIZE, "int8", _calibration())
    files = fidelity._model_files(spec, "openvino")
    files[0].parent.mkdir(parents=True)
    for f in files:
        f.write_bytes(b"model-1 " + f.suffix.encode())
    # WHEN the gate runs without a lake, twice THEN the second reuses the record next to the cached model
    first = fidelity.fidelity_gate(spec, "openvino")
    second = fidelity.fidelity_gate(spec, "openvino")
    assert len(measured) == 2 and second["reused_from"] == "engine-cache"
    assert second["model_sha256"] == first["model_sha256"] is not None
    # WHEN a lake is given THEN the known figures are copied into it (no new measurement)
    lake = str(tmp_path / "lake")
    assert fidelity.fidelity_gate(spec, "openvino", lake=lake)["reused_from"] == "engine-cache"
    assert storage.exists(fidelity.gate_record_uri(lake, spec, "openvino")) and len(measured) == 2
    # WHEN the cached model files change (another quantization) THEN neither record is trusted: measured again
    files[1].write_bytes(b"model-2")
    third = fidelity.fidelity_gate(spec, "openvino", lake=lake)
    assert len(measured) == 3 and not third["cached"] and third["model_sha256"] != first["model_sha256"]
    # AND a record that cannot be read as JSON is measured again, not an error
    Path(fidelity.gate_record_uri(lake, spec, "onnxruntime")).parent.mkdir(parents=True, exist_ok=True)
    Path(fidelity.gate_record_uri(lake, spec, "onnxruntime")).write_text("{not json")
    assert not fidelity.fidelity_gate(spec, "onnxruntime", lake=lake)["cached"] and len(measured) == 4
