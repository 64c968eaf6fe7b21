"""Benchmark 5 — feature quality: the ``fruits evaluate`` linear probe on the lake the throughput run produced.

The lake holds a class-balanced Training subset and Test subset of the Fruits-360 sample featurized by the job.
ImageNet weights cannot be downloaded on these machines, so the features come from a deterministically
*randomly initialised* ResNet50 (model_id ``resnet50-random0-224``): the accuracy measures the pipeline and
random convolutional features, not what ImageNet features would give. The seeds' anchors (ImageNet features,
full dataset) are shown for reference only.

int8 against f32 (issue 22, :func:`int8_quality`): the same Training/Test photos, minus every photo of the int8
calibration set (``calibration_images`` of the Training folder, :mod:`spark_jobs.quantization`), are featurized
in f32 and int8 on OpenVINO (x86_64 default) and on ONNX Runtime (the ARM64 default, same code run here),
projected on an exact PCA (scikit-learn, full SVD) of ``pca_k`` components fitted on all of them (as a batch run
does), and probed with the same linear probe and split as ``fruits evaluate``; also the mean/min cosine and
relative difference of int8 to f32 features.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import pick_images, write_result
from bench.config import BenchConfig
from bench.report import summary_row

ANCHORS = {
    "seed: Xception (ImageNet) + PCA + logistic regression": 0.873,
    "seed: random forest": 0.911,
    "seed: SIFT bag of words + MLP": 0.72,
}


def probe(lake: Path) -> dict[str, Any]:
    """Run the linear probe of ``fruits evaluate`` on ``lake`` (single model_id) and return its result dict."""
    from fruits.cli.evaluate import evaluate_lake

    return evaluate_lake(lake).to_dict()


INT8_ENGINES = ("openvino", "onnxruntime")
TARGET_PROBE_POINTS = 1.0  # int8 probe accuracy within 1 point of f32
TARGET_MEAN_COSINE = 0.999


def _probe_on_pca(features: np.ndarray, labels: list[str], uris: list[str], k: int, model_id: str) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    from fruits.cli.evaluate import ProbeTable, linear_probe

    coordinates = PCA(n_components=k, svd_solver="full").fit_transform(features.astype(np.float64))
    return linear_probe(ProbeTable(model_id, coordinates, labels, uris)).to_dict()


def int8_quality(cfg: BenchConfig) -> dict[str, Any]:
    """Probe accuracy and feature fidelity of int8 against f32 on photos not used to calibrate (module doc).

    Returns ``{"calibration", "images", "excluded_calibration_photos", "engines": {engine: {...}}}``; per engine:
    ``accuracy_f32``, ``accuracy_int8``, ``accuracy_points`` (int8 - f32, x 100), the fidelity figures of
    :func:`spark_jobs.quantization.compare`, the model_ids.
    """
    from spark_jobs.engines import build_engine
    from spark_jobs.images import decode_image
    from spark_jobs.models import resolve_weights
    from spark_jobs.quantization import compare, resolve_calibration

    size = cfg.image_size
    calibration = resolve_calibration(str(cfg.sample_dir / "Training"), cfg.calibration_images, cfg.holdout_images,
                                      size)
    used = {p.sha256 for p in calibration.calibration}
    candidates = (pick_images(cfg.sample_dir, "Training", cfg.train_per_class, cfg.seed)
                  + pick_images(cfg.sample_dir, "Test", cfg.test_per_class, cfg.seed))
    paths = [p for p in candidates if hashlib.sha256(p.read_bytes()).hexdigest() not in used]
    pixels = np.stack([np.frombuffer(decode_image(p.read_bytes(), size).pixels, np.uint8).reshape(size, size, 3)
                       for p in paths])
    labels, uris = [p.parent.name for p in paths], [str(p) for p in paths]
    f32_spec = resolve_weights(cfg.weights, size)
    int8_spec = resolve_weights(cfg.weights, size, "int8", calibration)
    k = min(cfg.pca_k, len(paths) - 1)
    out: dict[str, Any] = {"calibration": calibration.describe(), "images": len(paths),
                           "excluded_calibration_photos": len(candidates) - len(paths), "pca_k": k, "engines": {}}
    threads = os.cpu_count() or 1
    for engine in INT8_ENGINES:
        features = {}
        for spec in (f32_spec, int8_spec):
            fn = build_engine(spec, engine, threads)
            features[spec.precision] = np.concatenate([fn(pixels[i : i + cfg.infer_batch_size])
                                                       for i in range(0, len(pixels), cfg.infer_batch_size)])
        probes = {p: _probe_on_pca(f, labels, uris, k, (int8_spec if p == "int8" else f32_spec).model_id)
                  for p, f in features.items()}
        fidelity = compare(features["float32"], features["int8"], labels)
        out["engines"][engine] = {
            "model_id_f32": f32_spec.model_id, "model_id_int8": int8_spec.model_id,
            "accuracy_f32": probes["float32"]["accuracy"], "accuracy_int8": probes["int8"]["accuracy"],
            "accuracy_points": round(100 * (probes["int8"]["accuracy"] - probes["float32"]["accuracy"]), 2),
            "n_train": probes["float32"]["n_train"], "n_test": probes["float32"]["n_test"],
            **{key: fidelity[key] for key in ("mean_cosine", "min_cosine", "relative_difference")},
        }
    return out


def int8_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Summary rows of :func:`int8_quality` (targets: probe accuracy within ±1 point of f32, mean cosine >= 0.999)."""
    rows = []
    for engine, r in result["engines"].items():
        points = r["accuracy_points"]
        rows.append(summary_row(f"int8 probe accuracy vs f32 ({engine})", points, "points",
                                target=f"within ±{TARGET_PROBE_POINTS}", met=abs(points) <= TARGET_PROBE_POINTS,
                                note=f"int8 {r['accuracy_int8']:.4f} vs f32 {r['accuracy_f32']:.4f} (one Test photo "
                                     f"= {100 / r['n_test']:.2f} points), "
                                     f"{r['n_train']} Training / {r['n_test']} Test photos not used to calibrate "
                                     f"({result['calibration']['calibration_images']} calibration photos)"))
        rows.append(summary_row(f"int8 mean cosine to f32 ({engine})", round(r["mean_cosine"], 6), "",
                                target=f">= {TARGET_MEAN_COSINE}", met=r["mean_cosine"] >= TARGET_MEAN_COSINE,
                                note=f"min {r['min_cosine']:.5f}, relative difference "
                                     f"{r['relative_difference']:.2e}, model_id {r['model_id_int8']}"))
    return rows


def run_int8(cfg: BenchConfig) -> dict[str, Any]:
    """Measure :func:`int8_quality` and put it into ``quality.json`` (kept rows of the lake probe)."""
    path = cfg.results_dir / "quality.json"
    doc = json.loads(path.read_text()) if path.is_file() else {"description": "feature quality", "summary": []}
    result = int8_quality(cfg)
    doc["summary"] = [row for row in doc.get("summary", []) if not row["metric"].startswith("int8 ")]
    doc["summary"] += int8_rows(result)
    doc["int8"] = result
    import datetime as dt

    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
    note = (f"int8 rows: `python -m bench.quality --int8` at {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')}, "
            f"load average {load} (shared machine); the other rows come from the last full run of this benchmark.")
    doc["notes"] = [n for n in doc.get("notes", []) if not n.startswith("int8 rows:")] + [note]
    doc.pop("benchmark", None)
    doc.pop("machine", None)
    write_result("quality", doc, cfg.results_dir)
    return doc


def run(cfg: BenchConfig, lake: Path) -> dict[str, Any]:
    """Probe ``lake``; write ``quality.json`` (accuracy, per-class table, model_id, anchors); return it."""
    result = probe(lake)
    chance = 1.0 / result["n_classes"] if result["n_classes"] else None
    random_weights = "random" in result["model_id"]
    rows = [
        summary_row(f"linear probe accuracy, model_id {result['model_id']}", round(result["accuracy"], 4), "",
                    note=f"{result['n_train']} Training / {result['n_test']} Test images, {result['n_classes']} "
                         f"classes, k = {result['k']}" + (" — RANDOM weights, not ImageNet" if random_weights
                                                          else "")),
        summary_row("chance level (1 / classes)", round(chance, 4) if chance else None, ""),
    ]
    rows += [summary_row(name, value, "", note="reference from the seeds (ImageNet features / other "
                         "pipeline, full dataset); not measured here") for name, value in ANCHORS.items()]
    doc = {
        "description": "`fruits evaluate --lake DIR`: logistic regression on the lake's PCA coordinates, trained on "
                       "/Training/ rows, scored on /Test/ rows, label = folder.",
        "summary": rows,
        "probe": result,
        "anchors": ANCHORS,
        "weights_are_random": random_weights,
        "notes": ["ImageNet weights cannot be downloaded here: features come from a seeded random ResNet50 and "
                  "are compared to the seeds' ImageNet-feature anchors for context only."] if random_weights else [],
        "command": f"fruits evaluate --lake {lake}",
    }
    write_result("quality", doc, cfg.results_dir)
    return run_int8(cfg)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.quality --int8``: measure only the int8 vs f32 rows into bench/results/quality.json."""
    import argparse

    from bench.config import FULL

    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--int8", action="store_true", required=True, help="int8 vs f32 rows only")
    parser.parse_args(argv)
    doc = run_int8(FULL)
    for row in doc["summary"]:
        print(f"{row['metric']}: {row['value']} {row['unit']}  {row['note']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
