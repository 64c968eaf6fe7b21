"""``fruits start-job | status | reconcile``: same code paths as the Lambdas, one-line errors, exact dry-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fruits.cli.main import main
from lambdas.config import get_settings
from tests.helpers.aws_fixtures import BUCKET, ROLE_ARN, Obj
from tests.helpers.manifest import JobRunWatch, ingest_objects, send_job_state, table


@pytest.fixture
def two_batches(moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Threshold 5: batch 1 RUNNING, batch 2 SEALED (waiting for the slot), 3 images pending."""
    monkeypatch.setenv("BATCH_THRESHOLD", "5")
    get_settings.cache_clear()
    ingest_objects(events_dir, [Obj(f"images/Test/Mango/{i}.jpg", f"{i:032x}", 50 + i) for i in range(13)])
    return table().all_batches()


def test_missing_configuration_is_one_line_not_a_traceback(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no DATA_BUCKET / MANIFEST_TABLE / EMR_* variables and no deployed stack named Fruits
    from moto import mock_aws

    from lambdas import aws

    for name in ("DATA_BUCKET", "MANIFEST_TABLE", "EMR_APPLICATION_ID", "EMR_EXECUTION_ROLE_ARN", "JOB_ENTRY_POINT",
                 "FRUITS_STACK"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()

    # WHEN any command runs
    with mock_aws():
        aws.reset_clients()
        code = main(["start-job", "--dry-run"])
    aws.reset_clients()

    # THEN it exits 1 with one line naming what is missing
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("fruits start-job: error: invalid configuration: DATA_BUCKET: missing")
    assert "EMR_EXECUTION_ROLE_ARN: missing" in err
    assert "stack 'Fruits' not found" in err  # and how to point it at a stack


@pytest.mark.parametrize(
    "argv",
    [
        ["start-job", "--batch-id", "../etc"],
        ["status", "--endpoint-url", "localhost:5000"],
        ["reconcile", "--region", "paris"],
        ["start-job", "--dry-run", "--bogus"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN a command gets a bad argument
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    # THEN argparse prints one line and exits 2
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "error:" in err


def test_dry_run_prints_the_exact_request_and_changes_nothing(two_batches, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN batch 2 sealed and waiting
    watch = JobRunWatch().install()
    second = two_batches[1]
    capsys.readouterr()

    # WHEN start-job --dry-run runs
    assert main(["start-job", "--dry-run"]) == 0

    # THEN it prints the exact start_job_run request of the oldest sealed batch (attempt 1) as JSON
    request = json.loads(capsys.readouterr().out)
    settings = get_settings()
    assert request == {
        "applicationId": settings.emr_application_id,
        "clientToken": f"{second['batch_id']}-a1",
        "executionRoleArn": ROLE_ARN,
        "name": f"fruits-{second['batch_id']}-a1",
        "jobDriver": {
            "sparkSubmit": {
                "entryPoint": f"s3://{BUCKET}/code/main.py",
                "entryPointArguments": [
                    "--manifest", f"s3://{BUCKET}/manifests/{second['batch_id']}.jsonl",
                    "--lake", f"s3://{BUCKET}/lake",
                    "--batch-id", second["batch_id"],
                    "--weights", "random:7",
                    "--pca-k", "16",
                ],
                "sparkSubmitParameters": f"--py-files s3://{BUCKET}/code/spark_jobs.zip",
            }
        },
        "configurationOverrides": {
            "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": f"s3://{BUCKET}/logs/"}}
        },
        "tags": {"project": "fruits", "batch_id": second["batch_id"], "attempt": "1"},
        "executionTimeoutMinutes": 120,
    }  # fmt: skip
    # AND nothing was started or changed
    assert watch.requests == []
    assert [b["status"] for b in table().all_batches()] == ["RUNNING", "SEALED"]
    assert table().counter()[0] == 3


def test_start_job_rerun_refused_while_slot_busy_then_status_and_reconcile(
    two_batches, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = two_batches
    # WHEN re-running a batch while the slot is held, and asking for an unknown batch
    busy = main(["start-job", "--batch-id", second["batch_id"]])
    unknown = main(["start-job", "--batch-id", "b999999-ffffffff"])
    # THEN both exit 1 with one line each
    err = capsys.readouterr().err.splitlines()
    assert (busy, unknown) == (1, 1) and len(err) == 2
    assert f"slot busy with batch {first['batch_id']}" in err[0] and "unknown batch" in err[1]

    # WHEN start-job (flush) runs: the 3 pending images are sealed, the slot is still busy
    assert main(["start-job"]) == 0
    out = capsys.readouterr().out
    assert "sealed batch b000003" in out and f"slot busy with batch {first['batch_id']}" in out

    # WHEN status runs
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    # THEN it shows the image counts, the three batches and the running job run
    assert "PENDING" in out and "CLAIMED" in out
    for batch in table().all_batches():
        assert batch["batch_id"] in out
    assert first["job_run_id"] in out and "RUNNING" in out and "SEALED" in out
    assert main(["status", "--json"]) == 0
    snapshot = json.loads(capsys.readouterr().out)
    assert snapshot["images"] == {"PENDING": 0, "CLAIMED": 13, "DONE": 0}

    # WHEN reconcile runs: nothing is missing, nothing can start
    assert main(["reconcile"]) == 0
    assert "recorded 0 missing images" in capsys.readouterr().out


def test_rerun_of_a_quarantined_batch_gets_a_new_attempt(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN one batch of 5 quarantined after MAX_ATTEMPTS=2 failed job runs, and 2 pending images
    monkeypatch.setenv("BATCH_THRESHOLD", "5")
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    watch = JobRunWatch().install()
    ingest_objects(events_dir, [Obj(f"images/Test/Plum/{i}.jpg", f"{i:032x}", 9) for i in range(7)])
    [batch] = table().all_batches()
    for _ in range(2):
        send_job_state(events_dir, "FAILED", table().get_batch(batch["batch_id"])["job_run_id"])
    assert table().get_batch(batch["batch_id"])["status"] == "QUARANTINED"

    # WHEN the operator re-runs it
    assert main(["start-job", "--batch-id", batch["batch_id"]]) == 0

    # THEN attempt 3 starts with a new client token, its failures reset
    assert f"for batch {batch['batch_id']} (attempt 3)" in capsys.readouterr().out
    assert watch.client_tokens == [f"{batch['batch_id']}-a{n}" for n in (1, 2, 3)]
    rerun = table().get_batch(batch["batch_id"])
    assert (rerun["status"], rerun["failures"]) == ("RUNNING", 0)

    # WHEN it succeeds and start-job (flush) runs
    send_job_state(events_dir, "SUCCESS", rerun["job_run_id"])
    assert main(["start-job"]) == 0
    # THEN the 2 pending images are sealed into a new batch and started at once
    out = capsys.readouterr().out
    assert "sealed batch b000002" in out and "started job run" in out
    assert [b["status"] for b in table().all_batches()] == ["SUCCEEDED", "RUNNING"]


def test_unreachable_endpoint_is_one_line(
    lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a complete configuration but --endpoint-url pointing at nothing (env restored after the test)
    monkeypatch.setenv("EMR_APPLICATION_ID", "00fs5mjq8qd9i109")
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "placeholder")
    # WHEN status runs THEN botocore's retries end in one line and exit 1
    assert main(["status", "--endpoint-url", "http://127.0.0.1:9", "--region", "eu-west-3"]) == 1
    err = capsys.readouterr().err
    assert err == 'fruits status: error: Could not connect to the endpoint URL: "http://127.0.0.1:9/"\n'
