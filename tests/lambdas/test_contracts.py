"""One source per shared contract: lambdas/contracts.py holds the batch-id rule, the precisions and the
service name / metrics namespace; the Lambdas, the Spark job, the CLI and CDK import them from there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lambdas import contracts

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("lambdas", "spark_jobs", "fruits", "cdk", "bench")


def _sources() -> dict[Path, str]:
    return {path: path.read_text() for d in CODE_DIRS for path in sorted((ROOT / d).rglob("*.py"))}


@pytest.mark.parametrize(
    "literal",
    [
        contracts.BATCH_ID_RE.pattern,
        repr(contracts.JOB_PRECISIONS).replace("'", '"'),
        f'"{contracts.SERVICE_NAME}"',
    ],
)
def test_each_contract_literal_is_written_once(literal: str) -> None:
    # GIVEN every code file of the project WHEN searching a contract's literal THEN only contracts.py has it
    hits = {path.relative_to(ROOT).as_posix() for path, text in _sources().items() if literal in text}
    if literal == f'"{contracts.SERVICE_NAME}"':  # the distribution's name (importlib.metadata) is the same word
        hits.discard("fruits/cli/main.py")
    assert hits == {"lambdas/contracts.py"}


def test_the_metrics_namespace_is_written_once() -> None:
    namespace = re.compile(r"namespace\w*\s*[=:]\s*\"" + re.escape(contracts.METRICS_NAMESPACE) + '"', re.I)
    hits = [path.relative_to(ROOT).as_posix() for path, text in _sources().items() if namespace.search(text)]
    assert hits == ["lambdas/contracts.py"]


def test_the_spark_job_and_the_lambdas_check_batch_ids_and_precisions_alike() -> None:
    from lambdas.config import SettingsError, settings_from_env
    from lambdas.logic.batches import new_batch_id
    from spark_jobs import main
    from spark_jobs.featurize import models

    # GIVEN the Keras policies of the job's precisions THEN they cover exactly the contract's precisions
    assert tuple(models.PRECISIONS) == contracts.JOB_PRECISIONS
    # WHEN the job parses a batch id the Lambdas generate THEN it is accepted; a bad one exits with code 2
    batch_id = new_batch_id(7)
    args = ["--manifest", "m.jsonl", "--lake", "/tmp/lake", "--engine", "tensorflow"]
    assert main.parse_args([*args, "--batch-id", batch_id]).batch_id == batch_id
    with pytest.raises(SystemExit) as exc:
        main.parse_args([*args, "--batch-id", "../escape"])
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="batch id must match"):
        contracts.check_batch_id("../escape")
    # AND a precision outside the contract is refused by the Lambdas' settings with the variable's name
    env = {
        "DATA_BUCKET": "bucket",
        "MANIFEST_TABLE": "table",
        "EMR_APPLICATION_ID": "app",
        "JOB_ENTRY_POINT": "e",
        "EMR_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/r",
    }
    for precision in contracts.JOB_PRECISIONS:
        assert settings_from_env({**env, "JOB_PRECISION": precision}).job_precision == precision
    with pytest.raises(SettingsError, match="JOB_PRECISION"):
        settings_from_env({**env, "JOB_PRECISION": "float16"})


def test_the_environment_table_documents_every_variable_the_lambdas_get() -> None:
    # GIVEN the one environment table of docs/contracts.md and the block lambda_environment writes
    from lambdas.config import SETTING_NAMES, lambda_environment

    table = (ROOT / "docs" / "contracts.md").read_text().split("## Lambda environment", 1)[1].split("\n## ", 1)[0]
    documented = {name for pair in re.findall(r"^\| `([A-Z_]+)`(?: / `([A-Z_]+)`)?", table, re.M) for name in pair}
    environment = lambda_environment(
        data_bucket="b",
        manifest_table="t",
        emr_application_id="a",
        emr_execution_role_arn="r",
        job_entry_point="e",
        job_py_files="p",
    )
    # THEN the table, the block and the settings name the same variables (plus the two Powertools names)
    powertools = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
    assert documented - {""} == set(environment) == set(SETTING_NAMES) | powertools
