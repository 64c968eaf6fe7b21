"""Monitoring: alarms on the DLQ, Lambda errors, the pipeline's own failure metrics and a backlog that waits too long
(optionally to e-mail), and one CloudWatch dashboard of the whole flow."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# Metrics the Lambdas publish with Powertools Metrics (namespace, service dimension: contracts.md).
PIPELINE_FAILURE_METRICS = {
    "JobRunsFailed": "a featurization job run failed (FAILED or CANCELLED; it is retried up to maxAttempts)",
    "JobRunStartFailures": "EMR Serverless refused StartJobRun (role, application state, quota): see job_state logs",
    "BatchesQuarantined": "a batch reached maxAttempts failures: its images wait for `fruits start-job --batch-id`",
}


# The dashboard's rows: (title, [(metric name, statistic)]) of the Lambdas' metrics (docs/contracts.md, Metrics).
DASHBOARD_ROWS = (
    ("Images recorded / batches sealed", (("ImagesRecorded", "Sum"), ("BatchesSealed", "Sum"))),
    ("Backlog: pending images (tick)", (("PendingImages", "Maximum"),)),
    ("Oldest pending image, seconds (tick)", (("OldestPendingAgeSeconds", "Maximum"),)),
    ("Job runs", (("JobRunsStarted", "Sum"), ("JobRunsFailed", "Sum"))),
    ("Failures", (("JobRunStartFailures", "Sum"), ("BatchesQuarantined", "Sum"), ("ObjectsSkipped", "Sum"))),
)
# Seconds from an image's S3 event to the job_state Lambda applying its batch's SUCCESS (one value per image).
TIME_TO_FEATURE_STATISTICS = ("p50", "p95", "Maximum")


class Monitoring(Construct):
    """CloudWatch alarms (and an SNS topic when an e-mail is given) and the pipeline dashboard.

    Attributes:
        alarms: alarm name suffix → alarm.
        topic: the alarm topic, or ``None`` without ``alarm_email``.
        dashboard: backlog, oldest pending age, job runs, failures, DLQ depth, time to feature and Lambda errors.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dead_letter_queue: sqs.IQueue,
        job_state_dead_letter_queue: sqs.IQueue,
        functions: Mapping[str, lambda_.IFunction],
        namespace: str,
        service: str,
        alarm_email: str | None,
        max_wait_seconds: int,
    ) -> None:
        super().__init__(scope, construct_id)

        def pipeline_metric(name: str, statistic: str = "Sum", label: str | None = None) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map={"service": service},
                period=Duration.minutes(5),
                statistic=statistic,
                label=label,
            )

        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.alarms["DlqNotEmpty"] = dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic="Maximum"
        ).create_alarm(
            self,
            "DlqNotEmpty",
            alarm_description="S3 events the ingest Lambda could not record (see the ingest logs, then redrive)",
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarms["JobStateDlqNotEmpty"] = job_state_dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic="Maximum"
        ).create_alarm(
            self,
            "JobStateDlqNotEmpty",
            alarm_description="EMR job run state changes that EventBridge or the job_state Lambda could not deliver "
            "or apply after every retry (see the job_state logs; lambdas/README.md 'job_state dead-letter queue')",
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        for name, function in functions.items():
            alarm_id = "".join(part.capitalize() for part in name.split("_")) + "Errors"
            self.alarms[alarm_id] = function.metric_errors(period=Duration.minutes(5), statistic="Sum").create_alarm(
                self,
                alarm_id,
                alarm_description=f"The {name} Lambda raised errors",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        for metric_name, meaning in PIPELINE_FAILURE_METRICS.items():
            self.alarms[metric_name] = pipeline_metric(metric_name).create_alarm(
                self,
                metric_name,
                alarm_description=f"{metric_name} > 0: {meaning}",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        if max_wait_seconds > 0:  # the age rule is on: a photo should never wait much longer than it
            self.alarms["BacklogTooOld"] = pipeline_metric("OldestPendingAgeSeconds", "Maximum").create_alarm(
                self,
                "BacklogTooOld",
                alarm_description=f"A pending image waited over 2 x BATCH_MAX_WAIT_SECONDS ({max_wait_seconds} s) for "
                "15 min: the tick Lambda is not sealing (see its logs and errors)",
                threshold=2 * max_wait_seconds,
                evaluation_periods=3,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )

        rows = [
            cloudwatch.GraphWidget(
                title=title, width=8, left=[pipeline_metric(name, statistic) for name, statistic in metrics]
            )
            for title, metrics in DASHBOARD_ROWS
        ]
        rows.append(
            cloudwatch.GraphWidget(
                title="Dead-letter queue depth (S3 events not recorded)",
                width=8,
                left=[dead_letter_queue.metric_approximate_number_of_messages_visible(statistic="Maximum")],
            )
        )
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", widgets=[rows[i : i + 3] for i in range(0, len(rows), 3)]
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Time to feature, seconds (S3 event → batch SUCCESS, per image)",
                width=12,
                left=[pipeline_metric("TimeToFeatureSeconds", stat, label=stat) for stat in TIME_TO_FEATURE_STATISTICS],
            ),
            cloudwatch.GraphWidget(
                title="Lambda errors",
                width=12,
                left=[function.metric_errors(statistic="Sum", label=name) for name, function in functions.items()],
            ),
        )

        self.topic: sns.Topic | None = None
        if alarm_email:
            # CloudWatch can only publish to an encrypted topic whose key it may use: a customer managed key.
            key = kms.Key(self, "AlarmTopicKey", enable_key_rotation=True, description="Fruits! alarm topic")
            key.grant_encrypt_decrypt(iam.ServicePrincipal("cloudwatch.amazonaws.com"))
            self.topic = sns.Topic(self, "AlarmTopic", master_key=key, enforce_ssl=True)
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
            for alarm in self.alarms.values():
                alarm.add_alarm_action(actions.SnsAction(self.topic))
