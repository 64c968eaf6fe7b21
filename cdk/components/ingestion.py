"""Ingestion: the five Lambdas (ingest, job_state, flush, tick, reconcile), their triggers and least-privilege
permissions. Handler code: ``lambdas/handlers/<name>.py``, ``handler(event, context)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.nag import acknowledge, acknowledge_object_prefixes, token_ref
from lambdas import resources as r
from lambdas.config import lambda_environment

HANDLERS = ("ingest", "job_state", "flush", "tick", "reconcile")
# The ingest queue's visibility timeout must be >= 6x the function timeout (AWS Lambda SQS guidance).
INGEST_TIMEOUT_S = r.INGEST_QUEUE_VISIBILITY_TIMEOUT_S // 6


@dataclass(frozen=True)
class JobSettings:
    """What a job run needs, as the Lambdas' environment (contracts.md, "Lambda environment")."""

    application_id: str
    application_arn: str
    execution_role: iam.IRole
    entry_point_uri: str
    py_files_uri: str
    weights: str
    precision: str
    engine: str
    catalog: str
    spark_submit_parameters: str
    pca_k: int
    job_timeout_minutes: int
    batch_threshold: int
    batch_max_images: int
    batch_max_wait_seconds: int
    max_attempts: int
    calibration: str = ""  # int8 calibration manifest URI (empty: the Lambdas' default under calibration/)
    job_max_images: int = 20_000  # JOB_MAX_IMAGES: images per job run (context jobMaxImages, cdk.sizing)


class Ingestion(Construct):
    """The Lambdas and their event sources.

    Attributes:
        functions: handler name → function (``ingest``, ``job_state``, ``flush``, ``tick``, ``reconcile``).
        job_state_rule: EventBridge rule for our application's job run state changes.
        job_state_dead_letter_queue: job run state-change events that EventBridge could not deliver after its
            retries, or that the job_state Lambda failed on after its asynchronous retries (alarmed by Monitoring).
        tick_schedule / reconcile_schedule: EventBridge schedules (``flush`` has none: it is on demand).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        lambda_code_dir: Path,
        powertools_layer_arn: str,
        bucket: s3.IBucket,
        queue: sqs.IQueue,
        table: dynamodb.ITable,
        job: JobSettings,
        tick_rate_minutes: int,
        reconcile_rate_hours: int,
        log_retention_days: int,
        ingest_max_concurrency: int,
        reserved_concurrency: Mapping[str, int | None],
    ) -> None:
        super().__init__(scope, construct_id)
        code = lambda_.Code.from_asset(str(lambda_code_dir))
        layer = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", powertools_layer_arn)
        environment = lambda_environment(
            data_bucket=bucket.bucket_name,
            manifest_table=table.table_name,
            emr_application_id=job.application_id,
            emr_execution_role_arn=job.execution_role.role_arn,
            job_entry_point=job.entry_point_uri,
            job_py_files=job.py_files_uri,
            job_weights=job.weights,
            job_precision=job.precision,
            job_calibration=job.calibration,
            job_engine=job.engine,
            job_catalog=job.catalog,
            pca_k=job.pca_k,
            job_timeout_minutes=job.job_timeout_minutes,
            spark_submit_parameters=job.spark_submit_parameters,
            batch_threshold=job.batch_threshold,
            batch_max_images=job.batch_max_images,
            batch_max_wait_seconds=job.batch_max_wait_seconds,
            max_attempts=job.max_attempts,
        )
        # The cap of images per job run, read by the Lambdas that start job runs (every handler may: see below).
        environment["JOB_MAX_IMAGES"] = str(job.job_max_images)
        self.environment: dict[str, str] = environment  # the stack exports its settings (fruits --stack)
        timeouts = {"ingest": INGEST_TIMEOUT_S, "job_state": 60, "flush": 120, "tick": 120, "reconcile": 600}
        # An EMR state-change event lost would leave its batch RUNNING until reconcile: keep what fails in a queue.
        self.job_state_dead_letter_queue = sqs.Queue(
            self,
            "JobStateDlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.functions: dict[str, lambda_.Function] = {}
        for name in HANDLERS:
            self.functions[name] = self._function(
                name,
                code=code,
                layer=layer,
                environment=environment,
                timeout_s=timeouts[name],
                log_retention_days=log_retention_days,
                reserved_concurrency=reserved_concurrency.get(name),
                dead_letter_queue=self.job_state_dead_letter_queue if name == "job_state" else None,
            )

        # Every handler may seal a batch and start (or retry) its job run: same data-plane permissions.
        for function in self.functions.values():
            table.grant_read_write_data(function)
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="WriteBatchManifests",  # write only; no object lock or tagging action
                    actions=["s3:PutObject"],
                    resources=[bucket.arn_for_objects(f"{r.MANIFESTS_PREFIX}*")],
                )
            )
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="StartJobRunsOnOurApplication",
                    actions=["emr-serverless:StartJobRun"],
                    resources=[job.application_arn],
                )
            )
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="ReadAndTagOurJobRuns",  # StartJobRun with tags needs TagResource on the new job run
                    actions=["emr-serverless:GetJobRun", "emr-serverless:TagResource"],
                    resources=[f"{job.application_arn}/jobruns/*"],
                )
            )
            job.execution_role.grant_pass_role(function.role)
            acknowledge(
                function.role,
                f"AwsSolutions-IAM5[Resource::{token_ref(self, job.application_arn)}/jobruns/*]",
                "Job run ids are created at run time; the wildcard stays inside our own application's job runs.",
            )
            acknowledge(
                function.role,
                f"AwsSolutions-IAM5[Resource::{token_ref(self, table.table_arn)}/index/*]",
                "grant_read_write_data covers the table's indexes (the handlers query GSI gsi1).",
            )
            acknowledge_object_prefixes(
                function.role, bucket.bucket_arn, (r.MANIFESTS_PREFIX,), "the Lambdas write batch manifests."
            )

        # reconcile lists images/ to find images whose S3 event was lost (keys and ETags only, no reads).
        self.functions["reconcile"].add_to_role_policy(
            iam.PolicyStatement(
                sid="ListUploadedImages",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{r.IMAGES_PREFIX}*"]}},
            )
        )

        self.functions["ingest"].add_event_source(
            sources.SqsEventSource(
                queue,
                batch_size=r.INGEST_BATCH_SIZE,
                report_batch_item_failures=True,
                enabled=True,
                max_concurrency=ingest_max_concurrency,
            )
        )
        self.job_state_rule = events.Rule(
            self,
            "JobStateRule",
            description="EMR Serverless job run state changes of the Fruits! application",
            event_pattern=events.EventPattern(
                source=[r.EMR_EVENT_SOURCE],
                detail_type=[r.EMR_JOB_STATE_DETAIL_TYPE],
                detail={"applicationId": [job.application_id]},
            ),
            targets=[
                targets.LambdaFunction(
                    self.functions["job_state"], retry_attempts=8, dead_letter_queue=self.job_state_dead_letter_queue
                )
            ],
        )
        self.tick_schedule = events.Rule(
            self,
            "TickSchedule",
            description="Seal pending images that waited BATCH_MAX_WAIT_SECONDS (count or age, whichever first)",
            schedule=events.Schedule.rate(Duration.minutes(tick_rate_minutes)),
            targets=[targets.LambdaFunction(self.functions["tick"])],
        )
        self.reconcile_schedule = events.Rule(
            self,
            "ReconcileSchedule",
            description="Record images whose S3 event was lost; re-drive sealed batches without a job run",
            schedule=events.Schedule.rate(Duration.hours(reconcile_rate_hours)),
            targets=[targets.LambdaFunction(self.functions["reconcile"])],
        )

    def _function(
        self,
        name: str,
        *,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        environment: dict[str, str],
        timeout_s: int,
        log_retention_days: int,
        reserved_concurrency: int | None,
        dead_letter_queue: sqs.IQueue | None,
    ) -> lambda_.Function:
        """One arm64 Python 3.12 function with its own log group (retention), its own role, its reserved
        concurrency (``None``: none) and, for asynchronous invocations that fail every retry, a dead-letter queue."""
        construct_id = "".join(part.capitalize() for part in name.split("_"))
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=retention_days(log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Fruits! {name} Lambda",
        )
        # Instead of the AWSLambdaBasicExecutionRole managed policy: write to this function's log group only.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        function = lambda_.Function(
            self,
            construct_id,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=f"lambdas.handlers.{name}.handler",
            code=code,
            layers=[layer],
            environment=environment,
            timeout=Duration.seconds(timeout_s),
            memory_size=256,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=reserved_concurrency,
            dead_letter_queue=dead_letter_queue,
            description=f"Fruits! {name} (lambdas/handlers/{name}.py)",
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "Python 3.12 is pinned on purpose: it is the runtime of the Powertools v3 layer we use "
            "(AWSLambdaPowertoolsPythonV3-python312-arm64) and the one the handlers are tested on.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions (Tracing.ACTIVE).",
        )
        return function


_RETENTIONS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def retention_days(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs retention of ``days`` days.

    Raises:
        ValueError: not one of the retentions offered here (1, 3, 5, 7, 14, 30, 60, 90, 180, 365 days).
    """
    if days not in _RETENTIONS:
        raise ValueError(f"log retention of {days} days not supported; use one of {sorted(_RETENTIONS)}")
    return _RETENTIONS[days]
