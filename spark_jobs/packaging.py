"""How the Spark job code ships: the deterministic ``--py-files`` zip (CDK asset and local provisioner alike).

It lives here, not in ``cdk/``, so the installed tools (``fruits demo``'s provisioner) build the same bytes
without importing the CDK app (``cdk`` is not an installed package).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SPARK_PACKAGE = "spark_jobs"
# lambdas modules the Spark job imports (standard library only): the contracts both deployed packages share
SHARED_MODULES = ("lambdas/__init__.py", "lambdas/contracts.py")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: same code, same zip bytes, same asset hash


def python_files(package_dir: Path, excluded_dirs: tuple[str, ...] = ("__pycache__",)) -> list[Path]:
    """The package's ``.py`` files (sorted), skipping any path through ``excluded_dirs``."""
    files = []
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).parts[:-1]
        if not any(part in excluded_dirs for part in parts):
            files.append(path)
    return files


def spark_package_zip(repo_root: Path = REPO_ROOT) -> bytes:
    """The ``--py-files`` zip: ``spark_jobs/**.py`` + :data:`SHARED_MODULES` present, deterministic bytes.

    Entries are sorted, dated 1980-01-01 with mode 0644, so the same code gives the same bytes (and asset hash).
    """
    files = python_files(repo_root / SPARK_PACKAGE)
    files += [repo_root / name for name in SHARED_MODULES if (repo_root / name).is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(repo_root).as_posix(), date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()
