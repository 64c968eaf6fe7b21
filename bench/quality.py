"""Benchmark 5 — feature quality: the ``fruits evaluate`` linear probe on the lake the throughput run produced.

The lake holds a class-balanced Training subset and Test subset of the Fruits-360 sample featurized by the job.
ImageNet weights cannot be downloaded on these machines, so the features come from a deterministically
*randomly initialised* ResNet50 (model_id ``resnet50-random0-224``): the accuracy measures the pipeline and
random convolutional features, not what ImageNet features would give. The seeds' anchors (ImageNet features,
full dataset) are shown for reference only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import write_result
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
    return doc
