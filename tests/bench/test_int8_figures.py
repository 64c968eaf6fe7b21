"""How the int8 benchmark figures are derived: the job-time line (fixed seconds per run + per-image rate), the
class-balanced prefixes of the job runs, and the paired int8/f32 probe re-splits.

Correctness only: no figure measured here is compared with a target (benchmarks are not tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.engines import fit_note, interleave, job_fit
from bench.quality import paired_splits


def test_job_fit_separates_fixed_seconds_from_the_per_image_rate() -> None:
    # GIVEN two job runs of a job costing 12 s per run plus 1/40 s per image
    runs = {300: 12 + 300 / 40, 1200: 12 + 1200 / 40}
    # WHEN the line is fitted THEN it gives back the fixed seconds and the per-image rate
    fit = job_fit(runs)
    assert fit["fixed_seconds"] == pytest.approx(12, abs=0.01)
    assert fit["images_per_s_per_image"] == pytest.approx(40, rel=1e-3)
    assert fit["points"] == {"300": runs[300], "1200": runs[1200]}
    # AND three runs are fitted by least squares; one run gives no fit
    assert job_fit({**runs, 600: 12 + 600 / 40})["fixed_seconds"] == pytest.approx(12, abs=0.01)
    assert job_fit({300: 19.5}) is None
    # AND the note states both parts and the per-image part against the raw rate
    note = fit_note({"fit": {**fit, "job_over_raw_per_image": 0.8}})
    assert "12.0 s fixed per run" in note and "n / 40.0 images/s" in note and "0.8 x raw" in note
    assert fit_note({"fit": None}) == ""


def test_interleave_makes_every_prefix_class_balanced() -> None:
    # GIVEN photos grouped class by class, three per class, one class short of a photo
    paths = [Path(f"/T/{c}/{i}.jpg") for c in ("a", "b", "c") for i in range(3)][:-1]
    # WHEN interleaved THEN every photo is kept once and each prefix of a round holds one photo per class
    got = interleave(paths)
    assert sorted(got) == sorted(paths)
    assert [p.parent.name for p in got[:6]] == ["a", "b", "c", "a", "b", "c"]
    assert [p.parent.name for p in got[6:]] == ["a", "b"]


def test_paired_splits_measure_the_spread_on_the_same_splits() -> None:
    # GIVEN separable features of 4 classes, 20 photos each, and an int8 copy equal to them
    rng = np.random.default_rng(0)
    labels = [c for c in "abcd" for _ in range(20)]
    centres = {c: rng.normal(0, 3, 8) for c in "abcd"}
    f32 = np.stack([centres[c] + rng.normal(0, 1, 8) for c in labels])
    # WHEN the same photos are re-split 5 times
    same = paired_splits({"float32": f32, "int8": f32.copy()}, labels, splits=5, test_share=0.3)
    # THEN identical features differ by 0 points on every split (the splits are shared)
    assert same["points"] == [0.0] * 5 and same["mean"] == 0.0 and same["std"] == 0.0
    assert same["splits"] == 5 and same["test_share"] == 0.3 and len(same["accuracy_f32"]) == 5
    # WHEN int8 is replaced by noise THEN it loses points on every split
    noise = paired_splits({"float32": f32, "int8": rng.normal(0, 1, f32.shape)}, labels, splits=5, test_share=0.3)
    assert noise["max"] < -20 and noise["min"] <= noise["mean"] <= noise["max"]
    # AND a class with one photo is left out, a tiny set still holds one photo per class on each side
    few = np.vstack([f32[::10], f32[:1]])  # 2 photos of each class + 1 photo of class "e"
    tiny = paired_splits({"float32": few, "int8": few}, [*labels[::10], "e"], splits=2, test_share=0.1)
    assert tiny["test_share"] == 0.5 and tiny["points"] == [0.0, 0.0]
