"""Benchmark plumbing on tiny inputs: subsets, manifests, result files, README table, cost model, PCA timing.

Correctness only: no figure measured here is compared with a target (benchmarks are not tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import common, cost, report
from bench.incremental import pca_refit_seconds, read_feature_matrix
from bench.run_all import selected
from tests.bench.lake_fixtures import separable_rows, write_batch


def test_pick_images_is_balanced_deterministic_and_disjoint_by_offset(sample_dir: Path) -> None:
    # WHEN two subsets are drawn with the same seed and different offsets
    first = common.pick_images(sample_dir, "Training", 2, seed=0)
    again = common.pick_images(sample_dir, "Training", 2, seed=0)
    other = common.pick_images(sample_dir, "Training", 2, seed=0, offset=2)
    # THEN they are reproducible, class-balanced and disjoint
    classes = common.list_images(sample_dir, "Training")
    assert first == again
    assert len(first) == 2 * len(classes)
    assert {p.parent.name for p in first} == set(classes)
    assert not set(first) & set(other)


def test_pick_images_missing_split_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no Training/"):
        common.pick_images(tmp_path, "Training", 1)


def test_manifest_lines_follow_the_contract(sample_dir: Path, tmp_path: Path) -> None:
    # GIVEN two real images WHEN a manifest is written
    paths = common.pick_images(sample_dir, "Test", 1)[:2]
    manifest = common.write_manifest(paths, tmp_path / "m" / "batch.jsonl")
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    # THEN each line has the contract's keys, an absolute image_uri, the real size and the folder label
    assert [line["image_uri"] for line in lines] == [str(p.resolve()) for p in paths]
    for line, path in zip(lines, paths, strict=True):
        assert set(line) == {"image_uri", "bucket", "key", "version_id", "etag", "size", "label"}
        assert line["size"] == path.stat().st_size and line["label"] == path.parent.name


def test_write_result_adds_machine_info(tmp_path: Path) -> None:
    # WHEN a result is written
    path = common.write_result("demo", {"summary": [], "value": common.ratio(3.0, 2.0)}, tmp_path)
    doc = json.loads(path.read_text())
    # THEN it carries the benchmark name, the payload and the machine description
    assert doc["benchmark"] == "demo" and doc["value"] == 1.5
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu_model"]
    assert "date_utc" in doc["machine"] and "versions" in doc["machine"]
    with pytest.raises(ValueError, match="invalid result name"):
        common.write_result("../escape", {}, tmp_path)


def test_ratio_handles_missing_values() -> None:
    assert common.ratio(1.0, 3.0) == 0.333
    assert common.ratio(None, 3.0) is None and common.ratio(1.0, 0) is None


def test_cost_formula_and_model() -> None:
    # GIVEN 3600 vCPU-seconds per image, i.e. one vCPU-hour per image
    usd = cost.cost_per_1000_images(3600.0, vcpu_hour=0.05, gb_hour=0.01, gb_per_vcpu=4.0)
    # THEN 1,000 images cost 1000 * (0.05 + 4 * 0.01)
    assert usd == pytest.approx(90.0)
    # WHEN the model prices an arm at 2 images/s on 2 cores (1 vCPU-s per image)
    model = cost.cost_model({"job": 2.0, "missing": 0.0}, cores=2)
    row = model["arms"]["job"]
    assert row["vcpu_seconds_per_image"] == 1.0
    x86 = cost.PRICES_USD["x86_64"]
    assert row["usd_per_1000_images"]["x86_64"] == pytest.approx(
        round(1000 * (x86["vcpu_hour"] + 4 * x86["gb_hour"]) / 3600, 4))
    assert row["usd_per_1000_images"]["arm64"] < row["usd_per_1000_images"]["x86_64"]
    assert "missing" not in model["arms"] and model["region"] == "eu-west-3"
    with pytest.raises(ValueError):
        cost.cost_per_1000_images(-1.0, 0.05, 0.01)


def test_readme_is_generated_from_result_files(tmp_path: Path) -> None:
    # GIVEN two result files, one with a missed target
    common.write_result("throughput", {"description": "three arms", "summary": [
        report.summary_row("c / a", 0.95, "", ">= 0.9", True),
        report.summary_row("c / b", 2.5, "", ">= 7", False, note="a|b"),
    ]}, tmp_path)
    common.write_result("custom", {"summary": [report.summary_row("x", None)], "notes": ["n1"]}, tmp_path)
    # WHEN the README is regenerated
    readme = report.write_readme(tmp_path, tmp_path / "README.md")
    text = readme.read_text()
    # THEN the known benchmark comes first, targets are marked, pipes escaped, unknown ones appended
    assert text.index("1. Featurization throughput") < text.index("## custom")
    assert "| c / a | 0.95 |  | >= 0.9 | yes |  |" in text
    assert "| c / b | 2.5 |  | >= 7 | **no** | a\\|b |" in text
    assert "| x | — |" in text and "- n1" in text and "## Machine" in text


def test_empty_results_give_a_placeholder(tmp_path: Path) -> None:
    assert "No results yet" in report.render_readme({})


def test_pca_refit_timing_rows(tmp_path: Path) -> None:
    # GIVEN a few "real" feature vectors of dimension 16
    real = np.random.default_rng(0).standard_normal((10, 16)).astype(np.float32)
    # WHEN the PCA refit is timed after two tiny histories
    rows = pca_refit_seconds((8, 32), n_new=4, real=real, k=3, workdir=tmp_path, repeats=2)
    # THEN one row per history size, each refit committed a second PCA version holding history + new vectors
    assert [r["history"] for r in rows] == [8, 32]
    assert all(len(r["all_seconds"]) == 2 and r["seconds"] == min(r["all_seconds"]) for r in rows)
    meta = json.loads((tmp_path / "pca-history-32-run1" / "pca" / "bench-model" / "v000002.json").read_text())
    assert meta["n_total"] == 36 and meta["dim"] == 16


def test_read_feature_matrix(tmp_path: Path) -> None:
    # GIVEN a lake partition whose rows carry 4-d features
    rows = separable_rows()
    for i, row in enumerate(rows):
        row["features"] = [float(i)] * 4
    write_batch(tmp_path, "b1", rows)
    # WHEN the features are read THEN they come back as a float32 (n, 4) matrix
    x = read_feature_matrix(tmp_path)
    assert x.shape == (len(rows), 4) and x.dtype == np.float32
    assert sorted(x[:, 0].tolist()) == [float(i) for i in range(len(rows))]


def test_selected_adds_dependencies() -> None:
    assert selected(["cost"]) == ["cost"]
    assert selected(["quality"]) == ["throughput", "quality"]
    assert selected(["ingestion"]) == ["ingestion"]
    assert selected(None)[0] == "ingestion" and selected(None)[-1] == "cost"


def test_profile_classifies_py_spy_stacks() -> None:
    from bench.profile_job import classify

    # GIVEN py-spy raw lines: inference, a decode, the JVM wait, the daemon loop and something else
    raw = "\n".join([
        "main (worker.py:1);_featurize_partition.<locals>.run (models.py:2);predict_on_batch (t.py:3) 30",
        "main (worker.py:1);_decode_partition.<locals>.run (images.py:4);decode_image (images.py:5) 5",
        "main (worker.py:1);read_int (serializers.py:594) 50",
        "<module> (daemon.py:218);manager (daemon.py:204) 99",
        "main (worker.py:1);something (x.py:1) 2",
        "garbage line",
    ])
    # WHEN classified THEN each sample lands in its category and the daemon loop is dropped
    counts = classify(raw)
    assert counts["ResNet50 inference (TF predict_on_batch)"] == 30
    assert counts["image read + decode (Pillow)"] == 5
    assert counts["waiting for the JVM (next task / data)"] == 50
    assert counts["other"] == 2 and sum(counts.values()) == 87


def test_measured_peak_replaces_the_guessed_physical_limit() -> None:
    from bench.engines import GFLOP_PER_IMAGE, RELEVANT_FLAGS, cpu_record, peak_gemm

    # GIVEN a small MatMul WHEN the peak is measured in f32, bf16 and int8 (NNCF-quantized)
    peak = peak_gemm(size=64, calls=2)
    # THEN each precision has a positive rate and its ResNet50 images/s bound is rate / 8.2 G operations
    for key in ("f32", "bf16", "int8"):
        rate = peak["gflop_per_s"][key]
        # (both figures are rounded to 0.1 from the unrounded rate)
        assert rate > 0 and peak[f"images_per_s_{key}"] == pytest.approx(rate / GFLOP_PER_IMAGE, abs=0.11)
    # AND the CPU it ran on is recorded: model, cores and the relevant flags it has
    cpu = cpu_record()
    assert peak["cpu"] == cpu and cpu["model"] and cpu["cores"] >= 1 and set(cpu["flags"]) <= set(RELEVANT_FLAGS)
