"""What the stack ships: the Lambda asset is the whole `lambdas` package (operator tools live in `fruits/`);
the Spark code is the entry point + a deterministic zip of the package; the image pins what the tests run."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from cdk.assets import stage_lambda_code, stage_spark_code
from cdk.components.processing import IMAGE_DIR, IMAGE_WEIGHTS_PATH
from spark_jobs.release import EMR_RELEASE_LABEL, JOB_PYTHON


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small repo layout with every kind of file the staging must keep or drop."""
    return _tree(
        tmp_path / "repo",
        {
            "lambdas/__init__.py": "",
            "lambdas/resources.py": "X = 1\n",
            "lambdas/handlers/__init__.py": "",
            "lambdas/handlers/ingest.py": "def handler(e, c): ...\n",
            "lambdas/logic/batches.py": "",
            "fruits/cli/main.py": "import rich\n",
            "fruits/local/moto_server.py": "import moto\n",
            "lambdas/handlers/__pycache__/ingest.cpython-311.pyc": "junk",
            "lambdas/handlers/notes.txt": "not code",
            "spark_jobs/__init__.py": "",
            "spark_jobs/main.py": "def main(argv=None): return 0\n",
            "spark_jobs/lakehouse/reports.py": "SCHEMA = 1\n",
            "spark_jobs/__pycache__/lake.cpython-311.pyc": "junk",
            "lambdas/contracts.py": "BATCH_ID_RE = None\n",
        },
    )


def test_lambda_asset_is_the_whole_lambdas_package_without_caches_or_tools(repo: Path) -> None:
    staged = stage_lambda_code(repo)
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert files == [
        "lambdas/__init__.py",
        "lambdas/contracts.py",
        "lambdas/handlers/__init__.py",
        "lambdas/handlers/ingest.py",
        "lambdas/logic/batches.py",
        "lambdas/resources.py",
    ]


def test_lambda_asset_needs_the_handlers(tmp_path: Path) -> None:
    _tree(tmp_path, {"lambdas/__init__.py": ""})
    with pytest.raises(FileNotFoundError, match="handlers"):
        stage_lambda_code(tmp_path)


def test_spark_code_is_entry_point_plus_a_deterministic_package_zip(repo: Path) -> None:
    first, second = stage_spark_code(repo), stage_spark_code(repo)
    assert sorted(p.name for p in first.iterdir()) == ["main.py", "spark_jobs.zip"]
    assert (first / "spark_jobs.zip").read_bytes() == (second / "spark_jobs.zip").read_bytes()
    with zipfile.ZipFile(first / "spark_jobs.zip") as archive:
        assert archive.namelist() == [
            "spark_jobs/__init__.py",
            "spark_jobs/lakehouse/reports.py",
            "spark_jobs/main.py",
            "lambdas/__init__.py",  # the contracts both deployed packages share ship with the job
            "lambdas/contracts.py",
        ]


def test_image_dockerfile_follows_the_release_pairing_and_bakes_the_weights_the_job_is_given() -> None:
    dockerfile = (IMAGE_DIR / "Dockerfile").read_text()
    assert f"ARG EMR_RELEASE={EMR_RELEASE_LABEL}" in dockerfile
    assert "FROM public.ecr.aws/emr-serverless/spark/${EMR_RELEASE}:latest" in dockerfile
    assert f"ENV PYSPARK_PYTHON={JOB_PYTHON}" in dockerfile
    assert f"ENV FRUITS_WEIGHTS_PATH={IMAGE_WEIGHTS_PATH}" in dockerfile
    assert "md5sum -c" in dockerfile
    assert dockerfile.rstrip().endswith("USER hadoop:hadoop")


def test_image_requirements_pin_the_versions_the_tests_run() -> None:
    from importlib.metadata import version

    pins = {}
    for line in (IMAGE_DIR / "requirements.txt").read_text().splitlines():
        requirement = line.split(";")[0].strip()
        if requirement and not requirement.startswith("#"):
            name, pinned = requirement.split("==")
            pins[name] = pinned
    assert pins["tensorflow"] == pins["tensorflow-cpu"] == "2.21.0"
    for name in ("numpy", "scipy", "pandas", "pyarrow", "pillow"):
        assert pins[name] == version(name), name
    assert pins["pyiceberg[glue,pyarrow,pyiceberg-core]"] == version("pyiceberg")
    assert "pyspark" not in pins  # the base image's Spark is used


def test_real_lambda_asset_imports_every_handler_on_its_own(tmp_path: Path) -> None:
    """The staged asset is self-sufficient: each handler imports from it alone, without the CLI, the local
    runner, the Spark job or any package the Lambda runtime and the Powertools layer do not provide."""
    import json
    import os
    import subprocess
    import sys

    staged = stage_lambda_code()
    probe = (
        "import json, sys\n"
        "for name in ('ingest', 'job_state', 'flush', 'reconcile'):\n"
        "    __import__(f'lambdas.handlers.{name}')\n"
        "mods = [m for m in sys.modules if m.split('.')[0] == 'lambdas']\n"
        "ours = {m: getattr(sys.modules[m], '__file__', '') or '' for m in mods}\n"
        "top = sorted({m.split('.')[0] for m in sys.modules})\n"
        "print(json.dumps({'ours': ours, 'top': top}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(staged)
    result = subprocess.run(
        [sys.executable, "-P", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert loaded["ours"] and all(path.startswith(str(staged)) for path in loaded["ours"].values()), loaded["ours"]
    assert not {"spark_jobs", "pyspark", "tensorflow", "moto", "rich", "cdk", "aws_cdk"} & set(loaded["top"])


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_image_requirements_install_the_default_engine_of_each_architecture(machine: str) -> None:
    # GIVEN the image requirements, evaluated for one EMR architecture
    from importlib.metadata import version

    from packaging.markers import Marker

    from lambdas.resources import DEFAULT_JOB_ENGINE, ENGINES_BY_ARCHITECTURE
    from spark_jobs.featurize import engines

    architecture = {"x86_64": "X86_64", "aarch64": "ARM64"}[machine]
    pins = {}
    for line in (IMAGE_DIR / "requirements.txt").read_text().splitlines():
        requirement, _, marker = line.partition(";")
        listed = requirement.strip() and not requirement.startswith("#")
        if listed and (not marker.strip() or Marker(marker).evaluate({"platform_machine": machine})):
            name, pinned = requirement.strip().split("==")
            pins[name] = pinned
    # THEN the default engine of that architecture (the job's and CDK's, the same) is pinned at the tested version
    default = engines.default_engine(architecture)
    assert default == DEFAULT_JOB_ENGINE[architecture] and engines.DEFAULT_ENGINE == DEFAULT_JOB_ENGINE
    assert pins[default] == version(default)
    if default == "onnxruntime":  # Keras' ONNX export needs tf2onnx + onnx in the image too
        assert pins["tf2onnx"] == version("tf2onnx") and pins["onnx"] == version("onnx")
    # AND only engines that install on that architecture are offered there (OpenVINO aarch64 needs glibc 2.35)
    assert ("openvino" in pins) == ("openvino" in ENGINES_BY_ARCHITECTURE[architecture])
    assert set(ENGINES_BY_ARCHITECTURE[architecture]) <= {"tensorflow", *pins}


def test_real_spark_zip_runs_the_entry_point_with_the_shared_contracts_alone(tmp_path: Path) -> None:
    """GIVEN the real spark_jobs.zip WHEN a fresh interpreter imports lambdas.contracts and the job's argument
    parser from the zip alone THEN the batch-id rule and precisions are the ones the Lambdas use."""
    import subprocess
    import sys

    from lambdas import contracts

    zip_path = stage_spark_code() / "spark_jobs.zip"
    code = (
        f"import lambdas, lambdas.contracts as c; assert lambdas.__file__.startswith({str(zip_path)!r}), "
        "lambdas.__file__; print(c.BATCH_ID_RE.pattern, *c.JOB_PRECISIONS)"
    )
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(zip_path)}, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [contracts.BATCH_ID_RE.pattern, *contracts.JOB_PRECISIONS]
