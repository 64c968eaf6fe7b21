"""The Lambdas' recorded calls against their roles' synthesized policies: resolver, platform calls, verdict, and a
recorder that attributes each boto3 request to the handler on the call stack (for whole flows such as the demo).
Used by tests/cdk/test_calls_against_policies.py and tests/e2e/test_demo_loop.py (docs/iam-calls.md)."""

from __future__ import annotations

import copy
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import botocore.client

from cdk.iam_eval import Call, evaluate, statement_ids
from tests.helpers.iam_calls import iam_calls
from tests.helpers.template_policies import ACCOUNT, REGION, Resolver, function_roles, role_policies


@dataclass(frozen=True)
class LocalNames:
    """Physical names of the stack's resources in a local run (moto)."""

    bucket: str
    table: str
    queue: str
    job_state_dlq: str
    job_role_arn: str
    application_id: str


def resolver_for(stack: Any, names: LocalNames) -> Resolver:
    """Template logical ids of ``stack`` → the local run's names and ARNs (account :data:`ACCOUNT`, eu-west-3)."""
    logical = stack.get_logical_id
    bucket = logical(stack.storage.bucket.node.default_child)
    table = logical(stack.manifest.table.node.default_child)
    application = logical(stack.processing.application)
    job_role = logical(stack.processing.execution_role.node.default_child)
    queue = logical(stack.storage.queue.node.default_child)
    dlq = logical(stack.ingestion.job_state_dead_letter_queue.node.default_child)
    arns = {
        bucket: f"arn:aws:s3:::{names.bucket}",
        table: f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{names.table}",
        application: f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/{names.application_id}",
        job_role: names.job_role_arn,
        queue: f"arn:aws:sqs:{REGION}:{ACCOUNT}:{names.queue}",
        dlq: f"arn:aws:sqs:{REGION}:{ACCOUNT}:{names.job_state_dlq}",
    }
    for name, function in stack.ingestion.functions.items():
        arns[logical(function.log_group.node.default_child)] = (
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/fruits/{name}:*"
        )
    names_by_id = {bucket: names.bucket, table: names.table, queue: names.queue, dlq: names.job_state_dlq}
    return Resolver(names=names_by_id, arns=arns)


def platform_calls(name: str, names: LocalNames) -> list[Call]:
    """Calls Lambda itself makes with the function's role (AWS Lambda developer guide): logs, X-Ray (active
    tracing), the SQS event source mapping's polling (ingest), the asynchronous-invocation DLQ (job_state)."""
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/fruits/{name}:log-stream:2026/12/04/[$LATEST]abc"
    calls = [Call("logs:CreateLogStream", stream), Call("logs:PutLogEvents", stream)]
    calls += [Call("xray:PutTraceSegments", "*"), Call("xray:PutTelemetryRecords", "*")]
    if name == "ingest":
        queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{names.queue}"
        calls += [Call(f"sqs:{op}", queue) for op in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")]
    if name == "job_state":
        calls.append(Call("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{names.job_state_dlq}"))
    return calls


def audit(
    resources: dict[str, Any], stack: Any, calls_by_handler: dict[str, list[Call]], names: LocalNames
) -> tuple[list[tuple[str, Call]], set[tuple[str, str]]]:
    """``(denied, unused)``: every recorded + platform call its role denies, and every ``(handler, action)``
    granted to a handler that ran but used by none of its calls."""
    resolver = resolver_for(stack, names)
    roles = function_roles(resources)
    denied: list[tuple[str, Call]] = []
    used: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, recorded in calls_by_handler.items():
        policies = role_policies(resources, roles[name], resolver)
        for call in recorded + platform_calls(name, names):
            decision = evaluate(policies, call)
            if not decision.allowed:
                denied.append((name, call))
            for statement_id in decision.statements:
                used[(name, statement_id)].add(call.action.lower())
    unused = set()
    for name in calls_by_handler:
        for statement_id, statement in statement_ids(role_policies(resources, roles[name], resolver)):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            unused |= {(name, a) for a in actions if a.lower() not in used.get((name, statement_id), set())}
    return denied, unused


@contextmanager
def record_handler_calls() -> Iterator[dict[str, list[Call]]]:
    """Record every boto3 request made under a ``lambdas.handlers.<name>`` frame, as IAM calls by handler name
    (requests of the harness itself, e.g. uploads or the local runner, are on no handler's stack: not recorded)."""
    calls: dict[str, list[Call]] = defaultdict(list)
    lock = threading.Lock()
    original = botocore.client.BaseClient._make_api_call

    def make_api_call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        frame = sys._getframe(1)
        handler = None
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module.startswith("lambdas.handlers.") and module != "lambdas.handlers.observability":
                handler = module.rsplit(".", 1)[1]
            frame = frame.f_back
        if handler is not None:
            mapped = iam_calls(self.meta.service_model.service_name, operation, copy.deepcopy(params))
            with lock:
                calls[handler] += mapped
        return original(self, operation, params)

    botocore.client.BaseClient._make_api_call = make_api_call
    try:
        yield calls
    finally:
        botocore.client.BaseClient._make_api_call = original
