"""The EMR image's requirements resolve to wheels for its platform (``make image-check``), and every module the
Spark job imports is provided by that set or the EMR base image. Needs PyPI: skipped, with the reason, without it."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from cdk import image_check

SPARK_JOBS = Path(__file__).resolve().parents[2] / "spark_jobs"
SHIPPED_WITH_THE_JOB = {"spark_jobs", "lambdas"}  # spark_jobs.zip holds spark_jobs/ and lambdas/contracts.py


@pytest.fixture(scope="module")
def resolutions() -> dict[str, image_check.Resolution]:
    found = {}
    for architecture in image_check.MACHINES:
        try:
            found[architecture] = image_check.resolve(architecture)
        except image_check.RegistryUnreachable as err:
            print(f"image check skipped: PyPI unreachable ({err})")
            pytest.skip(f"PyPI unreachable, the image's requirements were not checked: {err}")
    return found


def test_markers_select_the_architectures_packages() -> None:
    arm, x86 = (image_check.target_requirements(a) for a in ("ARM64", "X86_64"))
    assert "tensorflow==2.21.0" in arm and "tensorflow-cpu==2.21.0" not in arm
    assert "tensorflow-cpu==2.21.0" in x86 and not [r for r in arm if r.startswith("openvino")]
    assert image_check.platforms("ARM64")[0] == "manylinux_2_34_aarch64"  # AL2023 glibc, never 2_35
    assert "manylinux_2_35_aarch64" not in image_check.platforms("ARM64")


def test_requirements_resolve_to_wheels_for_the_image_on_both_architectures(resolutions) -> None:
    # THEN pip found a wheel for every package and dependency (it raises otherwise), the pins included
    for resolution in resolutions.values():
        assert resolution.distributions["pyarrow"] == "21.0.0"
        assert resolution.distributions["pyiceberg"] == "0.12.0"
    assert "tensorflow" in resolutions["ARM64"].distributions
    assert "openvino" in resolutions["X86_64"].distributions


def _imported_top_level_modules() -> set[str]:
    names = set()
    for path in SPARK_JOBS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"} - SHIPPED_WITH_THE_JOB


def test_every_module_the_job_imports_is_in_the_image(resolutions) -> None:
    provided = set(image_check.BASE_IMAGE_DISTRIBUTIONS)
    for resolution in resolutions.values():
        provided |= set(resolution.distributions)
    owners = packages_distributions()  # import name -> distributions, from the local environment's metadata
    modules = _imported_top_level_modules()
    assert {"numpy", "pyarrow", "pyiceberg", "pyspark"} <= modules
    missing = {
        module: owners.get(module, ["<unknown>"])
        for module in modules
        if not {d.lower().replace("_", "-") for d in owners.get(module, [])} & provided
    }
    assert missing == {}
