"""Every AWS call of the five Lambdas, recorded through the real handlers under moto, is allowed by the synthesized
policy of the role that function runs as on AWS (cdk.iam_eval, template resolved for a test account in eu-west-3);
every statement (action) no recorded or platform call used is listed and must be justified below.

Recorded: each boto3 request (the ``api_calls`` recorder of tests/helpers/aws_fixtures.py) while one handler runs,
mapped to IAM authorizations by tests/helpers/iam_calls.py. Platform calls (made on the function's role by Lambda
itself, not by our code; AWS Lambda developer guide): CloudWatch Logs writes, X-Ray segments (Tracing.ACTIVE),
the SQS event source mapping's polling (ingest) and the asynchronous-invocation dead-letter queue (job_state).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from cdk.iam_eval import Call, evaluate
from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas import aws
from lambdas.config import get_settings
from lambdas.handlers import flush, ingest, job_state, reconcile, tick
from tests.helpers.aws_fixtures import BUCKET, ROLE_ARN, TABLE, load_event, sqs_event, upload
from tests.helpers.iam_calls import iam_calls
from tests.helpers.lambda_policy_audit import LocalNames, audit, resolver_for
from tests.helpers.template_policies import ACCOUNT, REGION, function_roles, role_policies

from .conftest import Synthesized

QUEUE, JOB_STATE_DLQ = "fruits-ingest", "fruits-job-state-dlq"

# Actions granted but used by no recorded or platform call, with the reason they stay (role → action → why).
JUSTIFIED_UNUSED = {
    "lambda": {
        "dynamodb:BatchWriteItem": "aws-cdk-lib grant_read_write_data action set; backfill/erasure paths may batch",
        "dynamodb:DeleteItem": "grant_read_write_data; cursor and lock items are deleted on paths not run here",
        "dynamodb:DescribeTable": "grant_read_write_data (Powertools/boto3 never call it here); read-only metadata",
        "dynamodb:GetRecords": "grant_read_write_data includes stream reads; the table has no stream (no effect)",
        "dynamodb:GetShardIterator": "grant_read_write_data includes stream reads; the table has no stream",
        "dynamodb:ConditionCheckItem": "grant_read_write_data; transactions may hold condition checks",
        "dynamodb:Scan": "grant_read_write_data; `fruits status` style scans are not on these handlers' paths",
        "dynamodb:BatchGetItem": "backfill (reconcile) checks 100 listed keys per BatchGetItem; not every run lists",
        "dynamodb:PutItem": "grant_read_write_data; every function may seal a batch (shared data-plane grant)",
        "dynamodb:UpdateItem": "grant_read_write_data; every function may seal a batch (shared data-plane grant)",
        "s3:PutObject": "every function may seal a batch and write its manifest (shared grant)",
        "emr-serverless:StartJobRun": "every function may start a sealed batch's job run (shared grant)",
        "emr-serverless:GetJobRun": "reconcile/repair reads a job run whose event was lost; shared grant",
        "emr-serverless:TagResource": "StartJobRun with tags needs it on the new job run; shared grant",
        "iam:PassRole": "StartJobRun passes the execution role; shared grant",
        "sqs:ChangeMessageVisibility": "aws-cdk-lib SqsEventSource grant (consume); the poller may extend visibility",
        "sqs:GetQueueUrl": "aws-cdk-lib SqsEventSource grant (consume); harmless lookup of the queue URL",
    },
}


def _removed(event: dict[str, Any]) -> dict[str, Any]:
    for record in event["Records"]:
        body = json.loads(record["body"])
        body["Records"][0]["eventName"] = "ObjectRemoved:Delete"
        record["body"] = json.dumps(body)
    return event


@pytest.fixture
def lambda_calls(moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Call]]:
    """Drive the five handlers through a whole cycle; the IAM calls each made, by handler name."""
    monkeypatch.setenv("BATCH_THRESHOLD", "5")
    get_settings.cache_clear()
    calls: dict[str, list[Call]] = defaultdict(list)

    def run(name: str, module: Any, event: dict[str, Any]) -> Any:
        start = len(moto_aws.calls)
        result = module.handler(event, LocalLambdaContext(name))
        for service, operation, params in moto_aws.calls[start:]:
            calls[name] += iam_calls(service, operation, params)
        return result

    scheduled = load_event(events_dir, "scheduled_event.json")
    application_id = get_settings().emr_application_id
    # GIVEN 12 photos uploaded: ingest records them, seals 2 batches of 5 and starts their job runs
    photos = upload([f"images/Training/Kiwi/{i}.jpg" for i in range(12)])
    run("ingest", ingest, sqs_event(events_dir, photos))
    emr = aws.client("emr-serverless")
    runs = emr.list_job_runs(applicationId=application_id)["jobRuns"]
    # the job_state Lambda applies each SUCCESS (and a duplicate), tick looks at the backlog, flush seals the rest
    from tests.helpers.aws_fixtures import job_state_event

    for job_run in runs + runs[:1]:
        run("job_state", job_state, job_state_event(events_dir, "SUCCESS", job_run["id"], application_id))
    run("tick", tick, scheduled)
    run("flush", flush, scheduled)
    # a photo whose event was lost is found by reconcile; a deleted photo's removal reaches ingest
    upload(["images/Training/Kiwi/lost.jpg"])
    run("reconcile", reconcile, scheduled)
    run("ingest", ingest, _removed(sqs_event(events_dir, photos[:1])))
    return calls


def _names() -> LocalNames:
    return LocalNames(BUCKET, TABLE, QUEUE, JOB_STATE_DLQ, ROLE_ARN, get_settings().emr_application_id)


def test_every_lambda_call_is_allowed_by_its_roles_synthesized_policy(
    synthesized: Synthesized, lambda_calls: dict[str, list[Call]]
) -> None:
    assert sorted(lambda_calls) == sorted(function_roles(synthesized.resources))  # every handler ran and called AWS
    denied, unused = audit(synthesized.resources, synthesized.built.stack, lambda_calls, _names())
    # THEN no call is denied
    assert denied == []
    # AND every granted action no call used is justified, and no justification is stale
    assert {a for _, a in unused} == set(JUSTIFIED_UNUSED["lambda"])


def test_a_call_outside_the_grants_is_denied(synthesized: Synthesized) -> None:
    # GIVEN the ingest role resolved as above / WHEN calls it was never granted are evaluated / THEN denied
    resolver = resolver_for(synthesized.built.stack, LocalNames(BUCKET, TABLE, QUEUE, JOB_STATE_DLQ, ROLE_ARN, "a1"))
    policies = role_policies(synthesized.resources, function_roles(synthesized.resources)["ingest"], resolver)
    for call in (
        Call("s3:GetObject", f"arn:aws:s3:::{BUCKET}/images/Training/Kiwi/1.jpg"),  # Lambdas never read photos
        Call("s3:PutObject", f"arn:aws:s3:::{BUCKET}/lake/features/x.parquet"),
        Call("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "images/"}),  # reconcile only
        Call("iam:PassRole", "arn:aws:iam::123456789012:role/admin"),
        Call("dynamodb:DeleteTable", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"),
    ):
        assert not evaluate(policies, call).allowed, call
