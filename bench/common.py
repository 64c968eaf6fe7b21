"""Helpers shared by the benchmarks: machine description, result files, deterministic image subsets, manifests."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
README_PATH = REPO_ROOT / "bench" / "README.md"
DEFAULT_SAMPLE_DIR = REPO_ROOT.parent / "shared" / "data" / "fruits-360-sample"
SAMPLE_DIR = Path(os.environ.get("FRUITS_SAMPLE_DIR", DEFAULT_SAMPLE_DIR)).resolve()
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "pyspark", "pyarrow", "numpy", "scikit-learn", "boto3", "moto",
            "aws-lambda-powertools", "pillow", "openvino", "onnxruntime", "nncf")


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (``platform.processor()`` when unavailable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty set when unavailable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info() -> dict[str, Any]:
    """Describe the machine and software a figure was measured on (cores, CPU model, bf16 support, versions, date)."""
    flags = cpu_flags()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "cpu_bf16_instructions": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
        "cpu_int8_instructions": sorted(f for f in flags if "vnni" in f or f in ("amx_int8", "asimddp", "i8mm")),
        "python": platform.python_version(),
        "loadavg_1_5_15min": [round(v, 2) for v in os.getloadavg()],
        "versions": versions,
    }


def write_result(name: str, payload: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``payload`` plus ``machine_info()`` to ``results_dir/<name>.json`` and return the path.

    Raises:
        ValueError: if ``name`` is not a plain file stem.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid result name: {name!r}")
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    document = {"benchmark": name, **payload, "machine": machine_info()}
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def list_images(sample_dir: Path, split: str) -> dict[str, list[Path]]:
    """Map each class folder of ``sample_dir/split`` to its sorted image files.

    Raises:
        FileNotFoundError: if ``sample_dir/split`` does not exist.
    """
    root = sample_dir / split
    if not root.is_dir():
        raise FileNotFoundError(f"no {split}/ folder under {sample_dir}")
    classes: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            classes[folder.name] = files
    return classes


def pick_images(sample_dir: Path, split: str, per_class: int, seed: int = 0, offset: int = 0) -> list[Path]:
    """Deterministic subset: ``per_class`` images of every class of ``split``, class-balanced.

    Each class's files are shuffled with ``numpy.random.default_rng(seed)`` and the slice
    ``[offset, offset + per_class)`` is taken, so disjoint subsets come from different offsets with one seed.
    Returns the paths ordered class by class.
    """
    chosen: list[Path] = []
    for index, files in enumerate(list_images(sample_dir, split).values()):
        order = np.random.default_rng([seed, index]).permutation(len(files))
        chosen.extend(files[i] for i in order[offset : offset + per_class])
    return chosen


def manifest_record(path: Path) -> dict[str, Any]:
    """One batch-manifest line for a local file (contract: docs/contracts.md, "Batch manifest")."""
    path = path.resolve()
    return {"image_uri": str(path), "bucket": None, "key": None, "version_id": None, "etag": None,
            "size": path.stat().st_size, "label": path.parent.name}


def write_manifest(paths: Sequence[Path], dest: Path) -> Path:
    """Write a JSON-lines batch manifest listing ``paths`` to ``dest``; returns ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(json.dumps(manifest_record(p)) + "\n" for p in paths))
    return dest


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """Measure wall-clock seconds (``time.perf_counter``) of the ``with`` block into ``result["seconds"]``."""
    result: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` rounded to 3 decimals, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator in (None, 0):
        return None
    return round(numerator / denominator, 3)
