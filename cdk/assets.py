"""Stage the code the stack ships, without Docker and without network.

* the Lambda asset: the whole ``lambdas`` package (``.py`` files, no caches); operator tools live in the
  ``fruits`` package and never ship; Powertools (+ pydantic) comes from the public layer, boto3 from the runtime;
* the Spark job code: ``spark_jobs/main.py`` (the EMR Serverless ``entryPoint``) and ``spark_jobs.zip``
  (the package + ``lambdas/contracts.py``, for ``--py-files``), zipped deterministically by
  :func:`spark_package_zip` so the asset hash only changes with the code (the local provisioner uploads the same).
"""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_PACKAGE = "lambdas"
SPARK_PACKAGE = "spark_jobs"
SPARK_ENTRY_POINT = "main.py"
SPARK_ZIP = "spark_jobs.zip"
# lambdas modules the Spark job imports (standard library only): the contracts both deployed packages share
SHARED_MODULES = ("lambdas/__init__.py", "lambdas/contracts.py")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: same code, same zip bytes, same asset hash


def _staging_dir(prefix: str) -> Path:
    """A fresh temporary folder, removed when the process exits (after synthesis has copied it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _python_files(package_dir: Path, excluded_dirs: tuple[str, ...] = ("__pycache__",)) -> list[Path]:
    """The package's ``.py`` files (sorted), skipping any path through ``excluded_dirs``."""
    files = []
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).parts[:-1]
        if not any(part in excluded_dirs for part in parts):
            files.append(path)
    return files


def stage_lambda_code(repo_root: Path = REPO_ROOT) -> Path:
    """Copy the ``lambdas`` package (``.py`` files) into a fresh folder; returns the folder (asset root).

    Raises:
        FileNotFoundError: ``lambdas/handlers/`` is missing (the handlers are the asset's reason to exist).
    """
    package = repo_root / LAMBDA_PACKAGE
    if not (package / "handlers").is_dir():
        raise FileNotFoundError(f"{package / 'handlers'} not found: the Lambda handlers are part of the asset")
    staging = _staging_dir("fruits-lambda-asset-")
    for path in _python_files(package):
        target = staging / path.relative_to(repo_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return staging


def stage_spark_code(repo_root: Path = REPO_ROOT) -> Path:
    """Write ``main.py`` and ``spark_jobs.zip`` (importable package, ``.py`` only) to a fresh folder.

    Raises:
        FileNotFoundError: ``spark_jobs/main.py`` is missing.
    """
    package = repo_root / SPARK_PACKAGE
    entry_point = package / SPARK_ENTRY_POINT
    if not entry_point.is_file():
        raise FileNotFoundError(f"{entry_point} not found: it is the EMR Serverless entry point")
    staging = _staging_dir("fruits-spark-asset-")
    shutil.copyfile(entry_point, staging / SPARK_ENTRY_POINT)
    (staging / SPARK_ZIP).write_bytes(spark_package_zip(repo_root))
    return staging


def spark_package_zip(repo_root: Path = REPO_ROOT) -> bytes:
    """The ``--py-files`` zip: ``spark_jobs/**.py`` + :data:`SHARED_MODULES` present, deterministic bytes.

    Entries are sorted, dated 1980-01-01 with mode 0644, so the same code gives the same bytes (and asset hash).
    """
    files = _python_files(repo_root / SPARK_PACKAGE)
    files += [repo_root / name for name in SHARED_MODULES if (repo_root / name).is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(repo_root).as_posix(), date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()
