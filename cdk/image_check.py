"""Does ``cdk/emr_image/requirements.txt`` install in the EMR image? Checked offline of Docker, against PyPI.

``python -m cdk.image_check [--architecture ARM64|X86_64|both]`` (``make image-check``): the requirement set, its
environment markers evaluated for the image (Linux, Python 3.11, the architecture), is resolved with its whole
dependency tree by ``pip install --dry-run --only-binary=:all: --platform … --python-version 3.11`` (pip reads
each wheel's metadata; nothing is installed): a package without a wheel for the image fails the check. Platforms:
the EMR Serverless 7.x base image is Amazon Linux 2023 (glibc 2.34), so wheels tagged ``manylinux_2_17`` (=
``manylinux2014``) up to ``manylinux_2_34`` install; ``manylinux_2_35`` and newer do not (pip's manylinux tag rules,
PEP 600).

Exit status: 0 resolved, 1 not resolvable (pip's error printed), 2 PyPI unreachable.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

REQUIREMENTS = Path(__file__).resolve().parent / "emr_image" / "requirements.txt"
PYTHON_VERSION = "3.11"
GLIBC_MINOR = 34  # Amazon Linux 2023
MACHINES = {"ARM64": "aarch64", "X86_64": "x86_64"}
# Provided by the EMR Serverless base image itself (Spark 3.5.5's Python side), not by requirements.txt.
BASE_IMAGE_DISTRIBUTIONS = frozenset({"pyspark", "py4j"})


class RegistryUnreachable(RuntimeError):
    """PyPI could not be reached (no network): the check cannot say anything."""


@dataclass(frozen=True)
class Resolution:
    """The distributions (normalized names → versions) pip would install in the image for one architecture."""

    architecture: str
    distributions: dict[str, str]


def target_requirements(architecture: str, path: Path = REQUIREMENTS) -> list[str]:
    """The requirement lines that apply in the image of ``architecture`` (markers evaluated, then dropped)."""
    environment = {"platform_machine": MACHINES[architecture], "python_version": PYTHON_VERSION,
                   "python_full_version": f"{PYTHON_VERSION}.0", "sys_platform": "linux", "os_name": "posix",
                   "platform_system": "Linux", "implementation_name": "cpython"}
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        if requirement.marker is None or Marker(str(requirement.marker)).evaluate(environment):
            requirement.marker = None
            lines.append(str(requirement))
    return lines


def platforms(architecture: str) -> list[str]:
    """pip ``--platform`` tags the image accepts, newest first (manylinux_2_34 down to manylinux2014)."""
    machine = MACHINES[architecture]
    return [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 16, -1)] + [f"manylinux2014_{machine}"]


def resolve(architecture: str, path: Path = REQUIREMENTS, timeout_s: int = 900) -> Resolution:
    """Resolve the image's requirement set for ``architecture`` with pip (metadata only).

    Raises:
        RegistryUnreachable: pip could not reach PyPI.
        RuntimeError: a requirement (or a dependency) has no wheel for the image; pip's message included.
    """
    with tempfile.TemporaryDirectory(prefix="fruits-image-check-") as work:
        requirements = Path(work) / "requirements.txt"
        requirements.write_text("\n".join(target_requirements(architecture, path)) + "\n", encoding="utf-8")
        report = Path(work) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                   "--target", str(Path(work) / "target"), "--only-binary=:all:", "--python-version", PYTHON_VERSION,
                   "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
                   *(arg for tag in platforms(architecture) for arg in ("--platform", tag)),
                   "--report", str(report), "--disable-pip-version-check", "--retries", "1", "--timeout", "15",
                   "-r", str(requirements)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip()
            if any(s in message for s in ("NewConnectionError", "Temporary failure in name resolution",
                                          "Network is unreachable", "ConnectTimeoutError")):
                raise RegistryUnreachable(message.splitlines()[-1] if message else "PyPI unreachable")
            raise RuntimeError(f"{architecture}: the image's requirements do not resolve to wheels:\n{message}")
        installed = json.loads(report.read_text(encoding="utf-8"))["install"]
    return Resolution(architecture, {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                                     for item in installed})


def main(argv: list[str] | None = None) -> int:
    """CLI: resolve for one or both architectures; print what would be installed (count) or why not."""
    parser = argparse.ArgumentParser(prog="python -m cdk.image_check", description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", choices=(*MACHINES, "both"), default="both")
    args = parser.parse_args(argv)
    for architecture in MACHINES if args.architecture == "both" else (args.architecture,):
        try:
            resolution = resolve(architecture)
        except RegistryUnreachable as err:
            print(f"image-check: PyPI unreachable, nothing checked ({err})", file=sys.stderr)
            return 2
        except RuntimeError as err:
            print(f"image-check: {err}", file=sys.stderr)
            return 1
        print(f"{architecture}: {len(resolution.distributions)} distributions resolve to wheels for Python "
              f"{PYTHON_VERSION} / glibc 2.{GLIBC_MINOR} ({', '.join(sorted(resolution.distributions)[:6])}, …)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
