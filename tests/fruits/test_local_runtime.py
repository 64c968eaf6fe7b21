"""The local stand-ins for the Lambda event source mapping and the EMR Serverless service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from fruits.local.emr_runner import LocalEmrRunner, argument, arguments, job_state_event
from fruits.local.lambda_runtime import drain_queue, sqs_event


def test_sqs_event_has_the_lambda_shape() -> None:
    message = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "Attributes": {"ApproximateReceiveCount": "1"}}
    event = sqs_event([message], "arn:aws:sqs:eu-west-3:123456789012:q")
    record = event["Records"][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["messageId"] == "m1"
    assert record["body"] == "{}"
    assert record["md5OfBody"] == "99914b932bd37a50b983c5e7c90ae93b"  # md5("{}")


def test_drain_queue_deletes_processed_and_keeps_reported_failures(aws_credentials: None) -> None:
    with mock_aws():
        # GIVEN a queue with 25 messages and a handler that reports message body "7" as failed
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for i in range(25):
            sqs.send_message(QueueUrl=url, MessageBody=str(i))
        seen: list[str] = []

        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            assert context.function_name == "ingest"
            seen.extend(r["body"] for r in event["Records"])
            return {
                "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "7"]
            }

        # WHEN the queue is drained like the event source mapping does
        result = drain_queue(url, arn, handler)
        # THEN 24 are deleted, 1 stays in the queue for another delivery
        assert result.deleted == 24
        assert result.failed == 1
        assert sorted(seen, key=int) == [str(i) for i in range(25)]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
        assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_argument_reads_both_spellings() -> None:
    assert argument(["--lake", "/l", "--batch-id", "b1"], "--batch-id") == "b1"
    assert argument(["--batch-id=b2"], "--batch-id") == "b2"
    assert argument(["--lake", "/l"], "--batch-id") is None


def test_arguments_reads_every_batch_of_a_job_run_in_order() -> None:
    # GIVEN the entry point arguments of a job run of three batches (both spellings)
    argv = ["--manifest", "m1", "--batch-id", "b1", "--manifest", "m2", "--batch-id=b2", "--lake", "/l",
            "--manifest", "m3", "--batch-id", "b3"]
    # WHEN the batch ids are read  THEN all three come back in order; a job of one batch gives one
    assert arguments(argv, "--batch-id") == ["b1", "b2", "b3"]
    assert arguments(["--batch-id", "b1"], "--batch-id") == ["b1"]
    assert arguments(["--lake", "/l"], "--batch-id") == []


def test_spark_submit_command_drops_emr_only_settings(tmp_path: Path) -> None:
    # GIVEN a job run's sparkSubmit as the ingest Lambda builds it for EMR Serverless
    entry = tmp_path / "main.py"
    entry.write_text("print('job')")
    submit = {
        "entryPoint": str(entry),
        "entryPointArguments": ["--manifest", "s3://b/manifests/x.jsonl", "--batch-id", "x"],
        "sparkSubmitParameters": "--conf spark.executor.cores=4 --conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON="
        "/usr/bin/python3.11 --conf spark.sql.shuffle.partitions=8",
    }
    runner = LocalEmrRunner("app", lambda e, c: None, tmp_path, master="local[2]")
    # WHEN the local command is built
    command = runner.spark_submit_command(submit, tmp_path)
    # THEN worker sizing and EMR-only env are dropped, portable settings and the arguments kept
    joined = " ".join(command)
    assert command[0].endswith("spark-submit")
    assert "--master local[2]" in joined
    assert "spark.sql.shuffle.partitions=8" in joined
    assert "spark.executor.cores" not in joined
    assert "emr-serverless" not in joined
    assert command[-5:] == [str(entry), "--manifest", "s3://b/manifests/x.jsonl", "--batch-id", "x"]


def test_job_state_event_matches_the_eventbridge_shape(events_dir: Path) -> None:
    job_run = {
        "applicationId": "00abc",
        "jobRunId": "00run",
        "arn": "arn:aws:emr-serverless:eu-west-3:123456789012:/applications/00abc/jobruns/00run",
        "name": "fruits-b000001",
        "releaseLabel": "emr-7.9.0",
    }
    event = job_state_event(job_run, "FAILED", details="boom")
    assert event["source"] == "aws.emr-serverless"
    assert event["detail-type"] == "EMR Serverless Job Run State Change"
    assert event["detail"]["state"] == "FAILED"
    assert event["detail"]["applicationId"] == "00abc"
    fixtures = [json.loads(p.read_text()) for p in events_dir.glob("*.json")]
    emr_fixtures = [f for f in fixtures if f.get("source") == "aws.emr-serverless"]
    for fixture in emr_fixtures:  # same keys as the real-shaped fixtures the job_state tests use
        assert set(fixture["detail"]) <= set(event["detail"]) | {"jobRunName"}


def test_moto_server_rolls_back_only_the_items_a_cancelled_transaction_names() -> None:
    import os
    import urllib.error
    import urllib.request

    import moto.dynamodb.models as ddb_models
    from botocore.exceptions import ClientError

    from fruits.local import moto_compat
    from fruits.local.moto_server import moto_server

    original = ddb_models.DynamoDBBackend.transact_write_items
    with moto_server() as endpoint:
        # GIVEN the demo's moto server, in a process of its own with every moto_compat fix installed there (no
        # whole-table deepcopy per transaction), this process's moto untouched, and a table of 3 items
        assert endpoint.pid not in (0, os.getpid())
        assert endpoint.fixes == tuple(moto_compat.FIXES)
        assert "fast_transaction_rollback" in endpoint.fixes
        assert ddb_models.DynamoDBBackend.transact_write_items is original
        ddb = boto3.client("dynamodb", endpoint_url=endpoint.url)
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        for pk in ("a", "b", "c"):
            ddb.put_item(TableName="t", Item={"pk": {"S": pk}, "n": {"N": "0"}})
        # WHEN a transaction updates "a" then fails its condition on "b"
        update = {"TableName": "t", "UpdateExpression": "SET n = :one",
                  "ExpressionAttributeValues": {":one": {"N": "1"}}}
        try:
            ddb.transact_write_items(TransactItems=[
                {"Update": {**update, "Key": {"pk": {"S": "a"}}}},
                {"Update": {**update, "Key": {"pk": {"S": "b"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
            cancelled = False
        except ClientError as err:
            cancelled = err.response["Error"]["Code"] == "TransactionCanceledException"
        # THEN it is cancelled as on DynamoDB: nothing it named changed, and the other items are untouched
        assert cancelled
        items = {i["pk"]["S"]: i["n"]["N"] for i in ddb.scan(TableName="t")["Items"]}
        assert items == {"a": "0", "b": "0", "c": "0"}
        # AND a transaction that passes applies all its writes
        ddb.transact_write_items(TransactItems=[{"Update": {**update, "Key": {"pk": {"S": pk}}}} for pk in "ab"])
        assert {i["pk"]["S"]: i["n"]["N"] for i in ddb.scan(TableName="t")["Items"]} == {"a": "1", "b": "1", "c": "0"}
    # AND the server ends with the block
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{endpoint.url}/moto-api/", timeout=5)


def test_local_emr_runner_lists_no_job_runs_before_the_first_start(tmp_path: Path) -> None:
    """Regression: ``fruits demo --limit 20 --threshold 10`` died with "ListJobRuns: Application … does not exist"
    when the first wave (7 photos) sealed no batch: moto knew the application but had no job run list for it."""
    from botocore.exceptions import ClientError

    from fruits.local.moto_server import moto_server
    from fruits.local.provision import provision

    with moto_server():
        # GIVEN the demo's moto server and resources, and an application that has started no job run yet
        res = provision()
        emr = boto3.client("emr-serverless")
        assert emr.get_application(applicationId=res.application_id)["application"]["state"]  # same account/region
        events: list[dict[str, Any]] = []
        runner = LocalEmrRunner(res.application_id, lambda event, context: events.append(event), tmp_path)
        # WHEN the local EMR runner looks for work, as the demo does after each wave
        # THEN there is none, as on EMR Serverless (no error), and nothing is executed
        assert runner.new_job_runs() == []
        assert runner.run_pending() == [] and events == []
        assert emr.list_job_runs(applicationId=res.application_id)["jobRuns"] == []
        # AND a job run started afterwards is listed; an unknown job run or application is still an error
        job_run_id = emr.start_job_run(
            applicationId=res.application_id, executionRoleArn=res.execution_role_arn, clientToken="t1",
            jobDriver={"sparkSubmit": {"entryPoint": f"s3://{res.bucket}/code/main.py"}},
        )["jobRunId"]
        assert [run["id"] for run in runner.new_job_runs()] == [job_run_id]
        for call in (
            lambda: emr.get_job_run(applicationId=res.application_id, jobRunId="00nosuchjobrun00"),
            lambda: emr.list_job_runs(applicationId="00nosuchapp00000"),
        ):
            try:
                call()
                raise AssertionError("expected ResourceNotFoundException")
            except ClientError as err:
                assert err.response["Error"]["Code"] == "ResourceNotFoundException"


def test_last_stage_progress_reads_sparks_console_progress_bar(tmp_path: Path) -> None:
    # GIVEN a driver log with Spark's console progress bar redrawn by carriage returns
    log = tmp_path / "driver.log"
    log.write_bytes(b"INFO start\n[Stage 2:>      (0 + 2) / 8]\r[Stage 2:===>   (5 + 2) / 8]\rfruits: built x\n")
    # WHEN the runner reads it THEN it gets the last (stage, done, total); a log without a bar gives None
    from fruits.local.emr_runner import last_stage_progress

    assert last_stage_progress(log) == (2, 5, 8)
    log.write_text("nothing yet\n")
    assert last_stage_progress(log) is None
    assert last_stage_progress(tmp_path / "missing.log") is None


def test_the_sqs_retention_patch_keeps_moto_semantics(aws_credentials) -> None:
    from moto import mock_aws
    from moto.sqs.models import SQSBackend, sqs_backends

    from fruits.local.moto_compat import install_fast_sqs_retention_check

    with mock_aws():
        # GIVEN a queue (retention 60 s) holding a fresh message and one sent two minutes ago
        sqs = boto3.client("sqs", region_name="eu-west-3")
        sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})
        url = sqs.get_queue_url(QueueName="q")["QueueUrl"]
        for body in ("fresh", "old"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=60)
        backend = sqs_backends["123456789012"]["eu-west-3"]
        fresh, old, delayed = backend.get_queue("q")._messages
        old.sent_timestamp -= 120_000  # milliseconds
        original = SQSBackend.is_message_valid_based_on_retention_period
        expected = [original(backend, "q", m) for m in (fresh, old)]
        expected_delayed = backend.get_queue("q").approximate_number_of_messages_delayed
        # WHEN the cheap check is installed THEN it gives moto's answers (fresh valid, expired not)
        undo = install_fast_sqs_retention_check()
        queue = backend.get_queue("q")
        listed = (len(queue.messages), queue.approximate_number_of_messages_not_visible)
        fresh.mark_received(visibility_timeout=30)  # in flight: not visible
        in_flight = (len(queue.messages), queue.approximate_number_of_messages_not_visible)
        fresh.visible_at = 0
        try:
            assert [backend.is_message_valid_based_on_retention_period("q", m) for m in (fresh, old)] == expected
            assert expected == [True, False]
            # AND the visible / in-flight / delayed counts are moto's
            assert (len(queue.messages), queue.approximate_number_of_messages_not_visible) == listed == (2, 0)
            assert queue.approximate_number_of_messages_delayed == expected_delayed == 1
            delayed.delayed_until = 0
            assert queue.approximate_number_of_messages_delayed == 0 and len(queue.messages) == 3
            delayed.delayed_until = 2**62
            fresh.mark_received(visibility_timeout=30)
            assert (len(queue.messages), queue.approximate_number_of_messages_not_visible) == in_flight == (1, 1)
        finally:
            undo()
        assert SQSBackend.is_message_valid_based_on_retention_period is original


def _all_query_pages(ddb: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
    """Every page of a Query (``Limit`` pages), each page's items."""
    pages, start = [], None
    while True:
        page = ddb.query(**kwargs, **({"ExclusiveStartKey": start} if start else {}))
        pages.append(page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


def test_the_dynamodb_query_patch_keeps_moto_results_and_pages(aws_credentials) -> None:
    from moto import mock_aws
    from moto.dynamodb.models.table import Table

    from fruits.local.moto_compat import install_fast_dynamodb_query

    with mock_aws():
        # GIVEN a pk/sk table with a GSI (status, updated) holding items of several partitions, added out of order
        ddb = boto3.client("dynamodb", region_name="eu-west-3")
        ddb.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "st", "up")],
            GlobalSecondaryIndexes=[{
                "IndexName": "gsi1",
                "KeySchema": [{"AttributeName": "st", "KeyType": "HASH"}, {"AttributeName": "up", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
        )
        for n in (7, 3, 11, 0, 5, 9, 1, 4, 12, 2, 8, 6, 10):
            item = {"pk": {"S": f"P#{n % 3}"}, "sk": {"S": f"S#{n:03d}"}, "up": {"S": f"2026-{n % 4}"}}
            if n % 5:  # items without the GSI key are not in the index
                item["st"] = {"S": "PENDING" if n % 2 else "DONE"}
            ddb.put_item(TableName="t", Item=item)
        queries = [
            {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P#1"}}},
            {"KeyConditionExpression": "pk = :p AND sk > :s",
             "ExpressionAttributeValues": {":p": {"S": "P#2"}, ":s": {"S": "S#004"}}, "ScanIndexForward": False},
            {"IndexName": "gsi1", "KeyConditionExpression": "st = :v",
             "ExpressionAttributeValues": {":v": {"S": "PENDING"}}},
            {"IndexName": "gsi1", "KeyConditionExpression": "st = :v AND up >= :u",
             "ExpressionAttributeValues": {":v": {"S": "DONE"}, ":u": {"S": "2026-1"}}, "ScanIndexForward": False},
            {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P#9"}}},  # no item
        ]
        expected = [_all_query_pages(ddb, TableName="t", Limit=2, **q) for q in queries]
        scanned = ddb.scan(TableName="t")["Items"]
        # WHEN the patch is installed
        undo = install_fast_dynamodb_query()
        try:
            # THEN every query returns moto's items in moto's order, page by page, and Scan is unchanged
            assert [_all_query_pages(ddb, TableName="t", Limit=2, **q) for q in queries] == expected
            assert sum(len(p) for p in expected[0]) == 4 and sum(len(p) for p in expected[2]) > 0
            assert ddb.scan(TableName="t")["Items"] == scanned
        finally:
            undo()
        assert Table.query.__name__ == "query" and "fruits" not in Table.query.__module__


def test_the_moto_module_list_is_read_once_with_moto_answers() -> None:
    from moto import backends

    from fruits.local.moto_compat import install_cached_moto_module_list

    # GIVEN moto's own list of its service packages
    original = backends.list_of_moto_modules
    expected = list(original())
    # WHEN the cached list is installed
    undo = install_cached_moto_module_list()
    try:
        # THEN it holds the same modules, every time, and the server's host check answers as before
        assert list(backends.list_of_moto_modules()) == expected == list(backends.list_of_moto_modules())
        assert "dynamodb" in backends.list_of_moto_modules() and "127.0.0.1:5000" not in expected
    finally:
        undo()
    assert backends.list_of_moto_modules is original
