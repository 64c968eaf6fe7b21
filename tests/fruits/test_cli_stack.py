"""``--stack NAME``: the CLI reads a deployed stack's CloudFormation outputs, explicit variables still win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fruits.cli.main import main
from lambdas import aws
from lambdas.config import SETTING_NAMES, get_settings, stack_output_key
from tests.helpers.aws_fixtures import Obj
from tests.helpers.manifest import ingest_objects


def create_stack(name: str, settings: dict[str, str]) -> None:
    """A CloudFormation stack (moto) whose outputs are ``settings`` under the keys the real stack uses."""
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {stack_output_key(env): {"Value": value} for env, value in settings.items()},
    }
    aws.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def deployed(moto_aws, lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A stack "Fruits" exporting the moto resources' settings; no job-related variable left in the environment."""
    import os

    settings = {name: os.environ[name] for name in SETTING_NAMES if os.environ.get(name)}
    create_stack("Fruits", settings)
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FRUITS_STACK", raising=False)
    get_settings.cache_clear()
    return settings


def test_status_and_dry_run_work_from_the_stack_outputs_alone(
    deployed: dict[str, str], events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a deployed stack "Fruits" and 3 images recorded (threshold 2 in the stack: one batch sealed, 1 pending)
    for name, value in {**deployed, "BATCH_THRESHOLD": "2", "BATCH_MAX_IMAGES": "2"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    ingest_objects(events_dir, [Obj(f"images/Test/Kiwi/{i}.jpg", f"{i:032x}", 10) for i in range(3)])
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    capsys.readouterr()  # the handler's log lines

    # WHEN status runs with only --stack
    assert main(["status", "--stack", "Fruits", "--json"]) == 0
    # THEN it reads the stack's table
    status = json.loads(capsys.readouterr().out)
    assert status["pending"] == 1 and len(status["batches"]) == 1

    # WHEN start-job --dry-run runs with only --stack
    assert main(["start-job", "--stack", "Fruits", "--dry-run", "--batch-id", status["batches"][0]["batch_id"]]) == 0
    # THEN the request names the stack's application, execution role and entry point
    request = json.loads(capsys.readouterr().out)
    assert request["applicationId"] == deployed["EMR_APPLICATION_ID"]
    assert request["executionRoleArn"] == deployed["EMR_EXECUTION_ROLE_ARN"]
    assert request["jobDriver"]["sparkSubmit"]["entryPoint"] == deployed["JOB_ENTRY_POINT"]


def test_environment_variables_win_over_outputs_and_a_missing_stack_is_one_line(
    deployed: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the stack, and JOB_ENTRY_POINT set explicitly in the environment
    monkeypatch.setenv("JOB_ENTRY_POINT", "s3://elsewhere/main.py")
    from fruits.cli.stack import resolve_environment

    class Args:
        stack = "Fruits"

    # WHEN the environment is resolved
    environ, note = resolve_environment(Args(), {"JOB_ENTRY_POINT": "s3://elsewhere/main.py"}, lambda: aws.client(
        "cloudformation"))
    # THEN the explicit variable wins and the others come from the outputs
    assert environ["JOB_ENTRY_POINT"] == "s3://elsewhere/main.py" and note is None
    assert environ["DATA_BUCKET"] == deployed["DATA_BUCKET"]

    # WHEN a stack that does not exist is named
    code = main(["status", "--stack", "Nope"])
    # THEN one line says how to fix it
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1
    assert "stack 'Nope' not found" in err and "cdk deploy" in err
