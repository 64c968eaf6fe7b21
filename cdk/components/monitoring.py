"""Monitoring: alarms on the DLQ, Lambda errors and the pipeline's own failure metrics, optionally to e-mail."""

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


class Monitoring(Construct):
    """CloudWatch alarms (and an SNS topic when an e-mail is given).

    Attributes:
        alarms: alarm name suffix → alarm.
        topic: the alarm topic, or ``None`` without ``alarm_email``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dead_letter_queue: sqs.IQueue,
        functions: Mapping[str, lambda_.IFunction],
        namespace: str,
        service: str,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
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
            self.alarms[metric_name] = cloudwatch.Metric(
                namespace=namespace,
                metric_name=metric_name,
                dimensions_map={"service": service},
                period=Duration.minutes(5),
                statistic="Sum",
            ).create_alarm(
                self,
                metric_name,
                alarm_description=f"{metric_name} > 0: {meaning}",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
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
