"""Stage the code the stack ships, without Docker and without network.

* the Lambda asset: the whole ``lambdas`` package (``.py`` files, no caches); operator tools live in the
  ``fruits`` package and never ship; Powertools (+ pydantic) comes from the public layer, boto3 from the runtime;
* the Spark job code: ``spark_jobs/main.py`` (the EMR Serverless ``entryPoint``) and ``spark_jobs.zip``
  (the package + ``lambdas/contracts.py``, for ``--py-files``), zipped deterministically by
  :func:`spark_jobs.packaging.spark_package_zip` so the asset hash only changes with the code (the local
  provisioner uploads the same).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from spark_jobs.packaging import python_files, spark_package_zip

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_PACKAGE = "lambdas"
SPARK_ENTRY_POINT = "main.py"
SPARK_ZIP = "spark_jobs.zip"


def _staging_dir(prefix: str) -> Path:
    """A fresh temporary folder, removed when the process exits (after synthesis has copied it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def stage_lambda_code(repo_root: Path = REPO_ROOT) -> Path:
    """Copy the ``lambdas`` package (``.py`` files) into a fresh folder; returns the folder (asset root).

    Raises:
        FileNotFoundError: ``lambdas/handlers/`` is missing (the handlers are the asset's reason to exist).
    """
    package = repo_root / LAMBDA_PACKAGE
    if not (package / "handlers").is_dir():
        raise FileNotFoundError(f"{package / 'handlers'} not found: the Lambda handlers are part of the asset")
    staging = _staging_dir("fruits-lambda-asset-")
    for path in python_files(package):
        target = staging / path.relative_to(repo_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return staging


def stage_spark_code(repo_root: Path = REPO_ROOT) -> Path:
    """Write ``main.py`` and ``spark_jobs.zip`` (importable package, ``.py`` only) to a fresh folder.

    Raises:
        FileNotFoundError: ``spark_jobs/main.py`` is missing.
    """
    package = repo_root / "spark_jobs"
    entry_point = package / SPARK_ENTRY_POINT
    if not entry_point.is_file():
        raise FileNotFoundError(f"{entry_point} not found: it is the EMR Serverless entry point")
    staging = _staging_dir("fruits-spark-asset-")
    shutil.copyfile(entry_point, staging / SPARK_ENTRY_POINT)
    (staging / SPARK_ZIP).write_bytes(spark_package_zip(repo_root))
    return staging
