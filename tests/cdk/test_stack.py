"""The synthesized template: region, storage security, queue + DLQ, table, EMR Serverless application,
Lambdas and their triggers, least-privilege IAM, Glue table, outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_cdk.assertions import Match
from moto import mock_aws

from cdk.components.processing import BOOTSTRAP_VERSION_PARAMETER, MIN_BOOTSTRAP_VERSION
from fruits.local.provision import provision
from lambdas import resources as r
from spark_jobs.release import EMR_RELEASE_LABEL, JOB_PYTHON

from .conftest import ALARM_EMAIL, Synthesized

CONTRACTS = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"
BOOTSTRAP_TEMPLATE = (
    Path(__file__).resolve().parents[2] / "node_modules/aws-cdk/lib/api/bootstrap/bootstrap-template.yaml"
)


def _statements(policy_document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = policy_document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_statements(s: Synthesized, role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement attached to a role (inline policies + AWS::IAM::Policy resources naming it)."""
    statements = []
    for policy in s.resources[role_logical_id]["Properties"].get("Policies", []):
        statements += _statements(policy["PolicyDocument"])
    for policy in s.of_type("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            statements += _statements(policy["Properties"]["PolicyDocument"])
    return statements


def _role_of(s: Synthesized, function_logical_id: str) -> str:
    return s.resources[function_logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]


def _functions(s: Synthesized) -> dict[str, dict[str, Any]]:
    """Our four handlers (not aws-cdk-lib's helper functions), by handler module name."""
    found = {}
    for logical_id, function in s.of_type("AWS::Lambda::Function").items():
        handler = function["Properties"].get("Handler", "")
        if handler.startswith("lambdas.handlers."):
            found[handler.split(".")[2]] = {"id": logical_id, **function}
    return found


def test_stack_is_pinned_to_paris(synthesized: Synthesized) -> None:
    assert synthesized.built.stack.region == "eu-west-3"
    assert synthesized.built.config.region == r.REGION


def test_data_bucket_is_encrypted_tls_only_private_versioned_and_logged(synthesized: Synthesized) -> None:
    buckets = synthesized.of_type("AWS::S3::Bucket")
    assert len(buckets) == 2  # data + access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
    synthesized.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": Match.object_like({"DestinationBucketName": Match.any_value()}),
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like({"Prefix": r.LOGS_PREFIX, "ExpirationInDays": Match.any_value()}),
                        Match.object_like({"NoncurrentVersionExpiration": Match.any_value()}),
                    ]
                )
            },
        },
    )
    # TLS only: every bucket policy denies aws:SecureTransport=false
    policies = synthesized.of_type("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        assert any(
            st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for st in _statements(policy["Properties"]["PolicyDocument"])
        )


def test_bucket_notifies_the_queue_for_every_object_under_the_images_prefix(synthesized: Synthesized) -> None:
    # GIVEN the synthesized stack WHEN reading the bucket's notifications
    (notifications,) = synthesized.of_type("Custom::S3BucketNotifications").values()
    configs = notifications["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    # THEN one ObjectCreated and one ObjectRemoved rule filter on the images/ prefix only: no case-sensitive
    # suffix filter drops .Jpg, and deletes (erasure) reach the ingest Lambda too
    assert sorted(config["Events"][0] for config in configs) == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    for config in configs:
        assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": r.IMAGES_PREFIX}]


def test_local_provisioner_sets_up_the_same_bucket_notification_as_the_stack(
    synthesized: Synthesized, aws_credentials: None
) -> None:
    # GIVEN the stack's bucket notification rules (events + key filter; the queue ARN is a token)
    (notifications,) = synthesized.of_type("Custom::S3BucketNotifications").values()
    stack_rules = [(c["Events"], c["Filter"]) for c in notifications["Properties"]["NotificationConfiguration"]
                   ["QueueConfigurations"]]  # fmt: skip
    # WHEN `fruits demo`'s provisioner creates the local bucket and queue (moto)
    with mock_aws():
        res = provision()
        local = boto3.client("s3").get_bucket_notification_configuration(Bucket=res.bucket)["QueueConfigurations"]
    # THEN the local bucket notifies the local ingest queue with exactly the stack's rules
    assert [(c["Events"], c["Filter"]) for c in local] == stack_rules
    assert [c["QueueArn"] for c in local] == [res.queue_arn] * len(stack_rules)


def test_ingest_queue_has_a_dlq_and_every_queue_is_encrypted_and_tls_only(synthesized: Synthesized) -> None:
    queues = synthesized.of_type("AWS::SQS::Queue")
    assert len(queues) == 3  # ingest queue, its DLQ, the job_state events' DLQ
    with_dlq = [q for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert len(with_dlq) == 1
    redrive = with_dlq[0]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == r.INGEST_MAX_RECEIVE_COUNT
    dlq_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert dlq_id in queues
    assert with_dlq[0]["Properties"]["VisibilityTimeout"] == r.INGEST_QUEUE_VISIBILITY_TIMEOUT_S
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    for policy in synthesized.of_type("AWS::SQS::QueuePolicy").values():
        assert any(
            st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for st in _statements(policy["Properties"]["PolicyDocument"])
        )


def test_manifest_table_is_on_demand_with_pitr_encryption_and_gsi1(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
            "KeySchema": [
                {"AttributeName": r.TABLE_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": r.TABLE_SORT_KEY, "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                Match.object_like(
                    {
                        "IndexName": r.GSI1_NAME,
                        "KeySchema": [
                            {"AttributeName": r.GSI1_PARTITION_KEY, "KeyType": "HASH"},
                            {"AttributeName": r.GSI1_SORT_KEY, "KeyType": "RANGE"},
                        ],
                    }
                )
            ],
        },
    )


def test_emr_serverless_application_properties(synthesized: Synthesized) -> None:
    (app,) = synthesized.of_type("AWS::EMRServerless::Application").values()
    props = app["Properties"]
    assert props["Type"] == "SPARK"
    assert props["ReleaseLabel"] == EMR_RELEASE_LABEL
    assert props["Architecture"] == "ARM64"
    assert props["AutoStartConfiguration"] == {"Enabled": True}
    assert props["AutoStopConfiguration"] == {"Enabled": True, "IdleTimeoutMinutes": 15}
    config = synthesized.built.config
    assert props["MaximumCapacity"] == {
        "Cpu": config.emr_max_cpu,
        "Memory": config.emr_max_memory,
        "Disk": config.emr_max_disk,
    }
    image_uri = synthesized.built.stack.resolve(synthesized.built.stack.processing.image.image_uri)
    assert props["ImageConfiguration"] == {"ImageUri": image_uri}
    assert "container-assets" in str(image_uri)
    (spark_defaults,) = props["RuntimeConfiguration"]
    assert spark_defaults["Properties"]["spark.executorEnv.PYSPARK_PYTHON"] == JOB_PYTHON
    assert spark_defaults["Properties"]["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] == JOB_PYTHON


def test_custom_image_is_an_asset_built_from_the_repo_dockerfile(synthesized: Synthesized) -> None:
    import json

    manifest = json.loads((synthesized.outdir / "Fruits.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    assert image["source"]["dockerBuildArgs"] == {"EMR_RELEASE": EMR_RELEASE_LABEL}
    assert image["source"]["platform"] == "linux/arm64"
    staged = synthesized.outdir / image["source"]["directory"]
    dockerfile = (staged / "Dockerfile").read_text()
    assert "FROM public.ecr.aws/emr-serverless/spark/${EMR_RELEASE}:latest" in dockerfile
    assert f"ARG EMR_RELEASE={EMR_RELEASE_LABEL}" in dockerfile
    assert f"ENV PYSPARK_PYTHON={JOB_PYTHON}" in dockerfile
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in dockerfile
    requirements = (staged / "requirements.txt").read_text()
    for pin in ("tensorflow==2.21.0", "pyarrow==", "pillow=="):
        assert pin in requirements
    assert "pyspark" not in requirements.replace("# Python", "").split("NOT listed")[-1]


def test_deploy_requires_a_bootstrap_whose_ecr_policy_lets_emr_serverless_pull(synthesized: Synthesized) -> None:
    # GIVEN the template / THEN a rule refuses bootstrap versions below 27 (no EMR Serverless pull statement)
    template = synthesized.template.to_json()
    assert template["Parameters"][BOOTSTRAP_VERSION_PARAMETER]["Default"].startswith("/cdk-bootstrap/")
    rules = [
        rule
        for rule in template["Rules"].values()
        if "Fruits needs CDK bootstrap version" in rule["Assertions"][0]["AssertDescription"]
    ]
    assert len(rules) == 1
    refused = rules[0]["Assertions"][0]["Assert"]["Fn::Not"][0]["Fn::Contains"]
    assert refused == [[str(v) for v in range(1, MIN_BOOTSTRAP_VERSION)], {"Ref": BOOTSTRAP_VERSION_PARAMETER}]
    assert not synthesized.of_type("Custom::AWS")  # no custom resource rewriting the bootstrap repository policy


@pytest.mark.skipif(not BOOTSTRAP_TEMPLATE.exists(), reason="aws-cdk CLI not installed (run `npm ci`)")
def test_pinned_cli_bootstraps_an_ecr_policy_that_lets_emr_serverless_pull() -> None:
    # GIVEN the bootstrap template of the CLI pinned in package.json
    text = BOOTSTRAP_TEMPLATE.read_text()
    version = int(re.search(r"CdkBootstrapVersion:.*?Value: '(\d+)'", text, re.S).group(1))
    # THEN it is recent enough and its container-assets repository policy has the EMR Serverless statement
    assert version >= MIN_BOOTSTRAP_VERSION
    statement = text[text.index("Service: emr-serverless.amazonaws.com") :][:600]
    for action in ("ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"):
        assert action in statement
    assert ":/applications/*" in statement


def test_execution_role_is_trusted_by_emr_serverless_and_limited_to_our_prefixes(synthesized: Synthesized) -> None:
    stack = synthesized.built.stack
    role_id = stack.get_logical_id(stack.processing.execution_role.node.default_child)
    trust = synthesized.resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [st["Principal"] for st in trust] == [{"Service": "emr-serverless.amazonaws.com"}]
    statements = _role_statements(synthesized, role_id)
    resources = " ".join(str(res) for st in statements for res in _as_list(st["Resource"]))
    for prefix in (r.IMAGES_PREFIX, r.MANIFESTS_PREFIX, r.LAKE_PREFIX, r.LOGS_PREFIX, r.CODE_PREFIX):
        assert f"/{prefix}*" in resources
    writes = [
        st for st in statements if any(a.startswith(("s3:Put", "s3:DeleteObject")) for a in _as_list(st["Action"]))
    ]
    # object-level resources of write statements (the bare bucket ARN matches no object action)
    written = {str(res) for st in writes for res in _as_list(st["Resource"]) if "/" in str(res)}
    assert written and all(("/lake/*" in w) or ("/logs/*" in w) for w in written), written
    assert not any("dynamodb" in a or "emr-serverless" in a for st in statements for a in _as_list(st["Action"]))


def test_no_policy_grants_any_action_on_any_resource(synthesized: Synthesized) -> None:
    documents = [p["Properties"]["PolicyDocument"] for p in synthesized.of_type("AWS::IAM::Policy").values()]
    for role in synthesized.of_type("AWS::IAM::Role").values():
        documents += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
    assert documents
    for document in documents:
        for st in _statements(document):
            actions, resources = _as_list(st["Action"]), _as_list(st.get("Resource", []))
            assert not ("*" in actions and "*" in resources), st
            assert "*" not in actions, st
            if st["Effect"] == "Allow" and "*" in resources:
                assert all(a.startswith(("xray:", "s3:PutBucketNotification")) for a in actions), st


def test_lambdas_are_arm64_python312_with_powertools_layer_and_every_contract_env_var(
    synthesized: Synthesized,
) -> None:
    functions = _functions(synthesized)
    assert set(functions) == {"ingest", "job_state", "flush", "tick", "reconcile"}
    contract_vars = set(re.findall(r"^\| `([A-Z_]+)`(?: / `([A-Z_]+)`)?", CONTRACTS.read_text(), flags=re.M))
    expected_env = {name for pair in contract_vars for name in pair if name}
    assert {"DATA_BUCKET", "MANIFEST_TABLE", "EMR_APPLICATION_ID", "POWERTOOLS_METRICS_NAMESPACE"} <= expected_env
    layer = synthesized.built.config.powertools_layer_arn
    for name, function in functions.items():
        props = function["Properties"]
        assert props["Handler"] == f"lambdas.handlers.{name}.handler"
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["arm64"]
        assert props["Layers"] == [layer]
        assert props["TracingConfig"] == {"Mode": "Active"}
        env = props["Environment"]["Variables"]
        assert expected_env <= set(env), expected_env - set(env)
        assert env["POWERTOOLS_SERVICE_NAME"] == "fruits-ingestion"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Fruits"
        assert env["IMAGES_PREFIX"] == r.IMAGES_PREFIX
        assert env["JOB_WEIGHTS"].endswith("_notop.h5") and env["JOB_PRECISION"] == "float32"
        assert env["JOB_ENGINE"] == "onnxruntime"  # the ARM64 default engine
        assert f"PYSPARK_PYTHON={JOB_PYTHON}" in env["SPARK_SUBMIT_PARAMETERS"]
        log_group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert synthesized.resources[log_group_id]["Properties"]["RetentionInDays"] == 30


def test_lambda_roles_start_job_runs_on_our_application_only_and_pass_only_the_execution_role(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.built.stack
    app_arn = stack.resolve(stack.processing.application_arn)
    execution_role_arn = stack.resolve(stack.processing.execution_role.role_arn)
    for name, function in _functions(synthesized).items():
        statements = _role_statements(synthesized, _role_of(synthesized, function["id"]))
        start = [st for st in statements if "emr-serverless:StartJobRun" in _as_list(st["Action"])]
        assert [_as_list(st["Resource"]) for st in start] == [[app_arn]], name
        passes = [st for st in statements if "iam:PassRole" in _as_list(st["Action"])]
        assert [_as_list(st["Resource"]) for st in passes] == [[execution_role_arn]], name
        s3_statements = [st for st in statements if any(a.startswith("s3:") for a in _as_list(st["Action"]))]
        s3_actions = {a for st in s3_statements for a in _as_list(st["Action"])}
        # S3: write batch manifests only (+ reconcile lists images/); no reads, no deletes
        assert all(a.startswith(("s3:Put", "s3:Abort")) or a == "s3:ListBucket" for a in s3_actions), (name, s3_actions)
        puts = [st for st in s3_statements if "s3:PutObject" in _as_list(st["Action"])]
        assert all(f"/{r.MANIFESTS_PREFIX}*" in str(st["Resource"]) for st in puts), name
        lists = [st for st in s3_statements if "s3:ListBucket" in _as_list(st["Action"])]
        if name == "reconcile":
            assert [st["Condition"] for st in lists] == [{"StringLike": {"s3:prefix": [f"{r.IMAGES_PREFIX}*"]}}]
        else:
            assert lists == [], name


def test_ingest_reads_the_queue_with_partial_batch_responses(synthesized: Synthesized) -> None:
    ingest = _functions(synthesized)["ingest"]
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": ingest["id"]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BatchSize": r.INGEST_BATCH_SIZE,
        },
    )
    # the function timeout leaves room for the queue's visibility timeout (>= 6x, AWS guidance)
    assert ingest["Properties"]["Timeout"] * 6 <= r.INGEST_QUEUE_VISIBILITY_TIMEOUT_S


def test_eventbridge_rule_matches_our_application_job_state_changes(synthesized: Synthesized) -> None:
    stack = synthesized.built.stack
    functions = _functions(synthesized)
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": [r.EMR_EVENT_SOURCE],
                "detail-type": [r.EMR_JOB_STATE_DETAIL_TYPE],
                "detail": {"applicationId": [stack.resolve(stack.processing.application.attr_application_id)]},
            },
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [functions["job_state"]["id"], "Arn"]}})],
        },
    )


def test_tick_runs_every_minute_reconcile_daily_and_flush_only_on_demand(synthesized: Synthesized) -> None:
    functions = _functions(synthesized)
    for name, expression in (("tick", "rate(1 minute)"), ("reconcile", "rate(1 day)")):
        synthesized.template.has_resource_properties(
            "AWS::Events::Rule",
            {
                "ScheduleExpression": expression,
                "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [functions[name]["id"], "Arn"]}})],
            },
        )
    rules = synthesized.template.find_resources("AWS::Events::Rule")
    flush_arn = {"Fn::GetAtt": [functions["flush"]["id"], "Arn"]}
    assert not [rule for rule in rules.values() if any(t["Arn"] == flush_arn for t in rule["Properties"]["Targets"])]
    # the age rule the tick enforces is in every Lambda's environment (default 900 s)
    assert {f["Properties"]["Environment"]["Variables"]["BATCH_MAX_WAIT_SECONDS"] for f in functions.values()} == {
        "900"
    }


def test_alarms_cover_dlq_lambda_errors_and_pipeline_failures(synthesized: Synthesized) -> None:
    alarms = list(synthesized.of_type("AWS::CloudWatch::Alarm").values())
    metric_names = [a["Properties"].get("MetricName") for a in alarms]
    assert metric_names.count("ApproximateNumberOfMessagesVisible") == 2  # ingest DLQ, job_state events' DLQ
    assert metric_names.count("Errors") == 5  # one per Lambda: ingest, job_state, flush, tick, reconcile
    for custom in ("JobRunsFailed", "JobRunStartFailures", "BatchesQuarantined"):
        (alarm,) = [a for a in alarms if a["Properties"].get("MetricName") == custom]
        assert alarm["Properties"]["Namespace"] == "Fruits"
        assert alarm["Properties"]["Dimensions"] == [{"Name": "service", "Value": "fruits-ingestion"}]
    assert all(a["Properties"]["AlarmActions"] for a in alarms)  # alarm e-mail given → every alarm notifies
    synthesized.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": ALARM_EMAIL}
    )


def test_glue_database_holds_the_iceberg_tables_with_least_privilege_grants(synthesized: Synthesized) -> None:
    # GIVEN the synthesized stack
    # THEN the Glue database exists with its location under lake/, and no projected Parquet table is left
    (database,) = synthesized.of_type("AWS::Glue::Database").values()
    assert database["Properties"]["DatabaseInput"]["Name"] == "fruits_lake"
    assert "/lake/" in json.dumps(database["Properties"]["DatabaseInput"]["LocationUri"])
    assert synthesized.of_type("AWS::Glue::Table") == {}
    # AND the Lambdas pass the Glue catalog of that database to the job
    for function in _functions(synthesized).values():
        assert function["Properties"]["Environment"]["Variables"]["JOB_CATALOG"] == "glue:fruits_lake"
    # AND the job role may create/commit only the lake tables (spark_jobs.lakehouse.tables.TABLES, with the erasures
    # ledger and near_duplicates); readers get a read-only managed policy
    policies = json.dumps(list(synthesized.of_type("AWS::IAM::Policy").values()))
    assert "glue:CreateTable" in policies and "glue:UpdateTable" in policies
    assert "glue:DeleteTable" not in policies and "glue:CreateDatabase" not in policies
    for table in ("features", "rejects", "batches", "near_duplicates", "erasures"):
        assert f"table/fruits_lake/{table}" in policies
    assert "table/fruits_lake/*" not in policies
    from cdk.components.query import LAKE_TABLES
    from spark_jobs.lakehouse.tables import TABLES

    assert LAKE_TABLES == TABLES  # every table the job creates is granted, nothing more
    (readers,) = synthesized.of_type("AWS::IAM::ManagedPolicy").values()
    assert "table/fruits_lake/near_duplicates" in json.dumps(readers["Properties"]["PolicyDocument"])
    statements = json.dumps(readers["Properties"]["PolicyDocument"])
    assert "glue:GetTable" in statements and "s3:GetObject" in statements
    assert "glue:UpdateTable" not in statements and "s3:PutObject" not in statements


def test_outputs_name_the_bucket_upload_prefix_application_and_table(synthesized: Synthesized) -> None:
    outputs = synthesized.template.to_json()["Outputs"]
    assert {"BucketName", "UploadPrefix", "ApplicationId", "ManifestTableName", "FeaturesTableName",
            "LakeReadersPolicyArn"} <= set(outputs)
    assert r.IMAGES_PREFIX in str(outputs["UploadPrefix"]["Value"])


def test_every_lambda_setting_is_a_stack_output_the_cli_reads(synthesized: Synthesized) -> None:
    # GIVEN the synthesized stack and the ingest Lambda's environment
    from lambdas.config import REQUIRED_SETTING_NAMES, SETTING_NAMES, stack_output_key

    outputs = synthesized.template.to_json()["Outputs"]
    functions = synthesized.of_type("AWS::Lambda::Function").values()
    environment = next(f["Properties"]["Environment"]["Variables"] for f in functions
                       if "DATA_BUCKET" in f["Properties"].get("Environment", {}).get("Variables", {}))  # fmt: skip
    # WHEN the CLI maps outputs back to settings (fruits --stack)
    keys = {stack_output_key(name): name for name in SETTING_NAMES}
    exported = {keys[key]: output["Value"] for key, output in outputs.items() if key in keys}
    # THEN every required setting is exported, each with exactly the value the Lambdas get
    assert set(REQUIRED_SETTING_NAMES) <= set(exported)
    assert {"JOB_PY_FILES", "LAKE_URI", "JOB_CATALOG", "PCA_K"} <= set(exported)
    assert all(exported[name] == environment[name] for name in exported)
    assert set(exported) == {name for name, value in environment.items() if name in SETTING_NAMES and value != ""}


def test_the_local_provisioner_sets_the_same_lambda_environment_as_the_stack(synthesized: Synthesized) -> None:
    """GIVEN the stack's functions and the local provisioner's environment (both from lambdas.config.lambda_environment)
    THEN they set the same variable names (the local run adds only its Powertools switches) and the local block
    validates with the Lambdas' defaults for what it does not choose (MAX_ATTEMPTS, JOB_TIMEOUT_MINUTES)."""
    from fruits.local.provision import LocalResources, lambda_environment
    from lambdas.config import settings_from_env

    res = LocalResources("b-data", "q", "arn:q", "dlq", "t-manifest", "app", "arn:aws:iam::123456789012:role/r")
    local = lambda_environment(res, lake_uri="/tmp/lake", weights="random", threshold=10, max_images=100, pca_k=5)
    local_only = {"POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_TRACE_DISABLED", "POWERTOOLS_LOG_LEVEL"}
    for function in _functions(synthesized).values():
        assert set(function["Properties"]["Environment"]["Variables"]) == set(local) - local_only
    assert {"MAX_ATTEMPTS", "JOB_TIMEOUT_MINUTES"} <= set(local)
    settings = settings_from_env(local)
    assert (settings.max_attempts, settings.job_timeout_minutes, settings.lake_uri) == (3, 120, "/tmp/lake")


def test_dashboard_shows_backlog_oldest_age_job_runs_failures_dlq_and_errors(synthesized: Synthesized) -> None:
    # GIVEN the synthesized stack  WHEN its one dashboard is read  THEN every row of the flow is on it
    (dashboard,) = synthesized.of_type("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]  # JSON text with tokens (ARNs, names) between
    body = "".join(part for part in parts if isinstance(part, str))
    for metric in ("ImagesRecorded", "PendingImages", "OldestPendingAgeSeconds", "JobRunsStarted", "JobRunsFailed",
                   "JobRunStartFailures", "BatchesQuarantined", "ApproximateNumberOfMessagesVisible", "Errors",
                   "TimeToFeatureSeconds"):
        assert f'"{metric}"' in body, metric
    # AND a backlog older than twice the max wait (900 s by default) for 15 minutes alarms
    (alarm,) = [a for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()
                if a["Properties"].get("MetricName") == "OldestPendingAgeSeconds"]
    assert alarm["Properties"]["Threshold"] == 1800 and alarm["Properties"]["EvaluationPeriods"] == 3


def test_dashboard_graphs_time_to_feature_p50_p95_and_maximum_of_the_pipeline_metric(synthesized: Synthesized) -> None:
    # GIVEN the synthesized dashboard, its tokens (region, queue and function names) replaced by a placeholder
    (dashboard,) = synthesized.of_type("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    body = json.loads("".join(part if isinstance(part, str) else "token" for part in parts))
    # WHEN its "Time to feature" widget is read
    (widget,) = [w for w in body["widgets"] if w["properties"]["title"].startswith("Time to feature")]
    # THEN it graphs TimeToFeatureSeconds p50, p95 and Maximum, in the namespace and service dimension the Lambdas
    # publish with (the same as OldestPendingAgeSeconds)
    metrics = widget["properties"]["metrics"]
    assert [m[:4] for m in metrics] == [["Fruits", "TimeToFeatureSeconds", "service", "fruits-ingestion"]] * 3
    assert [m[4]["stat"] for m in metrics] == ["p50", "p95", "Maximum"]
    (oldest,) = [w for w in body["widgets"] if w["properties"]["title"].startswith("Oldest pending")]
    assert oldest["properties"]["metrics"][0][:4] == ["Fruits", "OldestPendingAgeSeconds", *metrics[0][2:4]]
