"""The findings of the deploy review (issue 20), one template assertion each: the code deployment writes only
code/, every function has reserved concurrency and the SQS source a maximum concurrency, S3 listing is prefix-bound
and no object-lock action is granted, the job_state events have a dead-letter queue with an alarm, every log group
has a retention."""

from __future__ import annotations

from typing import Any

from cdk.config import DEFAULT_RESERVED_CONCURRENCY
from lambdas import resources as r

from .conftest import Synthesized


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _policies_of_role(s: Synthesized, role_id: str) -> list[dict[str, Any]]:
    statements = []
    for policy in s.resources[role_id]["Properties"].get("Policies", []):
        statements += _statements(policy["PolicyDocument"])
    for policy in s.of_type("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += _statements(policy["Properties"]["PolicyDocument"])
    return statements


def _all_statements(s: Synthesized) -> list[dict[str, Any]]:
    documents = [p["Properties"]["PolicyDocument"] for p in s.of_type("AWS::IAM::Policy").values()]
    documents += [p["Properties"]["PolicyDocument"] for p in s.of_type("AWS::IAM::ManagedPolicy").values()]
    for role in s.of_type("AWS::IAM::Role").values():
        documents += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
    return [st for document in documents for st in _statements(document)]


def _flat(value: Any) -> str:
    """A CloudFormation value as text (``Fn::Join`` parts and references concatenated) for suffix checks."""
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(_flat(part) for part in value["Fn::Join"][1])
    if isinstance(value, dict):
        return f"<{value}>"
    return str(value)


def test_code_deployment_role_may_write_and_list_only_under_code(synthesized: Synthesized) -> None:
    # GIVEN the aws-cdk-lib BucketDeployment provider that copies the job code
    (function,) = [f for k, f in synthesized.of_type("AWS::Lambda::Function").items() if "CDKBucketDeployment" in k]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    role = synthesized.resources[role_id]["Properties"]
    statements = _policies_of_role(synthesized, role_id)
    # THEN its role has no managed policy and no action group, and every S3 object it may change is under code/
    assert "ManagedPolicyArns" not in role
    actions = [a for st in statements for a in _as_list(st["Action"])]
    assert not [a for a in actions if "*" in a], actions
    for st in statements:
        st_actions = _as_list(st["Action"])
        if any(a in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload") for a in st_actions):
            assert all(_flat(res).endswith(f"/{r.CODE_PREFIX}*") for res in _as_list(st["Resource"])), st
        if "s3:ListBucket" in st_actions:
            assert st["Condition"] == {"StringLike": {"s3:prefix": [f"{r.CODE_PREFIX}*"]}}, st
        if "s3:GetObject" in st_actions:  # the one source zip in the CDK asset bucket, by its content hash
            (resource,) = _as_list(st["Resource"])
            assert _flat(resource).endswith(".zip") and "cdk-" in _flat(resource), st


def test_every_lambda_has_reserved_concurrency_and_the_queue_source_a_maximum_concurrency(
    synthesized: Synthesized,
) -> None:
    config = synthesized.built.config
    functions = {
        f["Properties"]["Handler"].split(".")[2]: f
        for f in synthesized.of_type("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler", "").startswith("lambdas.handlers.")
    }
    # THEN each of our five functions reserves the configured concurrency (cdk.json defaults)
    assert {name: f["Properties"].get("ReservedConcurrentExecutions") for name, f in functions.items()} == dict(
        config.reserved_concurrency
    )
    assert dict(config.reserved_concurrency) == DEFAULT_RESERVED_CONCURRENCY
    # AND the SQS event source polls with at most ingestMaxConcurrency invocations, within ingest's reservation
    (mapping,) = synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": config.ingest_max_concurrency}
    assert config.ingest_max_concurrency <= functions["ingest"]["Properties"]["ReservedConcurrentExecutions"]


def test_s3_listing_is_prefix_bound_and_no_role_holds_object_lock_or_bucket_wide_groups(
    synthesized: Synthesized,
) -> None:
    statements = [st for st in _all_statements(synthesized) if st["Effect"] == "Allow"]
    for st in statements:
        actions = _as_list(st["Action"])
        # no s3:List* / s3:GetBucket* groups, no object lock (nothing here uses legal holds or retention)
        assert not {"s3:List*", "s3:GetBucket*", "s3:PutObjectLegalHold", "s3:PutObjectRetention"} & set(actions), st
        if "s3:ListBucket" in actions:
            prefixes = st["Condition"]["StringLike"]["s3:prefix"]
            assert prefixes and all(p.endswith("/*") for p in prefixes), st


def test_job_role_lists_only_the_prefixes_it_reads(synthesized: Synthesized) -> None:
    stack = synthesized.built.stack
    role_id = stack.get_logical_id(stack.processing.execution_role.node.default_child)
    (listing,) = [st for st in _policies_of_role(synthesized, role_id) if "s3:ListBucket" in _as_list(st["Action"])]
    assert sorted(listing["Condition"]["StringLike"]["s3:prefix"]) == sorted(
        f"{p}*" for p in (r.IMAGES_PREFIX, r.MANIFESTS_PREFIX, r.CODE_PREFIX, r.LAKE_PREFIX)
    )  # logs/ is written by EMR Serverless, never listed


def test_job_state_events_that_exhaust_their_retries_land_in_an_alarmed_dead_letter_queue(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.built.stack
    queue_id = stack.get_logical_id(stack.ingestion.job_state_dead_letter_queue.node.default_child)
    rule_id = stack.get_logical_id(stack.ingestion.job_state_rule.node.default_child)
    function_id = stack.get_logical_id(stack.ingestion.functions["job_state"].node.default_child)
    queue_arn = {"Fn::GetAtt": [queue_id, "Arn"]}
    # THEN EventBridge's delivery failures and the Lambda's failed asynchronous invocations go to the same queue
    (target,) = synthesized.resources[rule_id]["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": queue_arn}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert synthesized.resources[function_id]["Properties"]["DeadLetterConfig"] == {"TargetArn": queue_arn}
    # AND only this rule may send to it (EventBridge service principal, aws:SourceArn of the rule)
    policies = synthesized.of_type("AWS::SQS::QueuePolicy").values()
    (policy,) = [p for p in policies if {"Ref": queue_id} in p["Properties"]["Queues"]]
    sends = [st for st in _statements(policy["Properties"]["PolicyDocument"]) if st["Effect"] == "Allow"]
    assert sends and all(st["Principal"] == {"Service": "events.amazonaws.com"} for st in sends)
    assert all(st["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]} for st in sends)
    # AND an alarm fires on its first message, queue encrypted and TLS only like the others
    dimensions = [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    alarms = synthesized.of_type("AWS::CloudWatch::Alarm").values()
    alarms = [a for a in alarms if a["Properties"].get("Dimensions") == dimensions]
    assert len(alarms) == 1 and alarms[0]["Properties"]["Threshold"] == 1
    assert synthesized.resources[queue_id]["Properties"]["SqsManagedSseEnabled"] is True


def test_every_log_group_has_a_retention_and_every_function_logs_to_one_of_them(synthesized: Synthesized) -> None:
    groups = synthesized.of_type("AWS::Logs::LogGroup")
    retention = synthesized.built.config.log_retention_days
    # THEN every log group expires its events (the custom-resource functions' groups included)
    assert {k: g["Properties"].get("RetentionInDays") for k, g in groups.items()} == dict.fromkeys(groups, retention)
    # AND every function, ours and aws-cdk-lib's deploy-time helpers, names one of them (no implicit
    # /aws/lambda/<name> group created at first invocation and kept forever)
    functions = synthesized.of_type("AWS::Lambda::Function")
    assert len(functions) == 7  # five handlers + bucket notifications + bucket deployment
    for logical_id, function in functions.items():
        log_group = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
        assert log_group is not None and log_group["Ref"] in groups, logical_id
