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

from cdk.iam_eval import Call, evaluate, statement_ids
from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas import aws
from lambdas.config import get_settings
from lambdas.handlers import flush, ingest, job_state, reconcile, tick
from tests.helpers.aws_fixtures import BUCKET, ROLE_ARN, TABLE, load_event, sqs_event, upload
from tests.helpers.iam_calls import iam_calls
from tests.helpers.template_policies import ACCOUNT, REGION, Resolver, function_roles, role_policies

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


def _resolver(s: Synthesized, application_id: str) -> Resolver:
    stack = s.built.stack
    logical = stack.get_logical_id
    bucket = logical(stack.storage.bucket.node.default_child)
    table = logical(stack.manifest.table.node.default_child)
    application = logical(stack.processing.application)
    job_role = logical(stack.processing.execution_role.node.default_child)
    queue = logical(stack.storage.queue.node.default_child)
    dlq = logical(stack.ingestion.job_state_dead_letter_queue.node.default_child)
    names = {bucket: BUCKET, table: TABLE, queue: QUEUE, dlq: JOB_STATE_DLQ}
    arns = {
        bucket: f"arn:aws:s3:::{BUCKET}",
        table: f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}",
        application: f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/{application_id}",
        job_role: ROLE_ARN,
        queue: f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}",
        dlq: f"arn:aws:sqs:{REGION}:{ACCOUNT}:{JOB_STATE_DLQ}",
    }
    for name, function in stack.ingestion.functions.items():
        group = logical(function.log_group.node.default_child)
        arns[group] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/fruits/{name}:*"
    return Resolver(names=names, arns=arns)


def platform_calls(name: str) -> list[Call]:
    """Calls Lambda makes with the function's role (not our code), per the Lambda developer guide."""
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/fruits/{name}:log-stream:2026/12/04/[$LATEST]abc"
    calls = [Call("logs:CreateLogStream", stream), Call("logs:PutLogEvents", stream)]
    calls += [Call("xray:PutTraceSegments", "*"), Call("xray:PutTelemetryRecords", "*")]
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}"
    if name == "ingest":  # the SQS event source mapping polls with the function's role
        calls += [Call(f"sqs:{op}", queue) for op in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")]
    if name == "job_state":  # an asynchronous invocation that fails every retry goes to the function's DLQ
        calls.append(Call("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{JOB_STATE_DLQ}"))
    return calls


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


def test_every_lambda_call_is_allowed_by_its_roles_synthesized_policy(
    synthesized: Synthesized, lambda_calls: dict[str, list[Call]]
) -> None:
    resolver = _resolver(synthesized, get_settings().emr_application_id)
    roles = function_roles(synthesized.resources)
    assert sorted(lambda_calls) == sorted(roles)  # every handler ran and made AWS calls
    denied, used = [], defaultdict(set)
    for name, recorded in lambda_calls.items():
        policies = role_policies(synthesized.resources, roles[name], resolver)
        for call in recorded + platform_calls(name):
            decision = evaluate(policies, call)
            if not decision.allowed:
                denied.append((name, call))
            for statement_id in decision.statements:
                used[(name, statement_id)].add(call.action.lower())
    # THEN no call is denied
    assert denied == []
    # AND every granted action that no call used is justified (the report: tests/cdk/test_calls_against_policies.py)
    unused = _unused_actions(synthesized, resolver, roles, used)
    unjustified = {(n, a) for n, a in unused if a not in JUSTIFIED_UNUSED["lambda"]}
    assert unjustified == set()
    # AND the justification list has no stale entry (each names an action some role holds and no call used)
    assert {a for _, a in unused} == set(JUSTIFIED_UNUSED["lambda"])


def _unused_actions(
    s: Synthesized, resolver: Resolver, roles: dict[str, str], used: dict[tuple[str, str], set[str]]
) -> set[tuple[str, str]]:
    unused = set()
    for name, role in roles.items():
        for statement_id, statement in statement_ids(role_policies(s.resources, role, resolver)):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                if action.lower() not in used.get((name, statement_id), set()):
                    unused.add((name, action))
    return unused


def test_a_call_outside_the_grants_is_denied(synthesized: Synthesized) -> None:
    # GIVEN the ingest role resolved as above / WHEN calls it was never granted are evaluated / THEN denied
    resolver = _resolver(synthesized, "app123")
    policies = role_policies(synthesized.resources, function_roles(synthesized.resources)["ingest"], resolver)
    for call in (
        Call("s3:GetObject", f"arn:aws:s3:::{BUCKET}/images/Training/Kiwi/1.jpg"),  # Lambdas never read photos
        Call("s3:PutObject", f"arn:aws:s3:::{BUCKET}/lake/features/x.parquet"),
        Call("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "images/"}),  # reconcile only
        Call("iam:PassRole", "arn:aws:iam::123456789012:role/admin"),
        Call("dynamodb:DeleteTable", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"),
    ):
        assert not evaluate(policies, call).allowed, call
