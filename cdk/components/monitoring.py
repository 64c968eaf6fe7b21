"""Monitoring: alarms on the DLQ, Lambda errors, the pipeline's own failure metrics, a backlog that waits too long and a
sealed backlog that keeps growing (optionally to e-mail), and one CloudWatch dashboard of the whole flow."""

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
# Issue 19: images waiting in SEALED batches behind the job-run slot (emitted when a run starts and at every tick)
# and the images of a run when it starts (docs/contracts.md, Metrics).
BACKLOG_METRIC = "SealedBacklogImages"
RUN_SIZE_METRIC = "ImagesPerJobRun"
# The backlog alarm: the backlog's floor (its Minimum over a period of at least 15 min and 3 ticks) rose in
# BACKLOG_GROWTH_PERIODS of the last BACKLOG_GROWTH_PERIODS + 1 periods (an hour of growth in 75 min by default; the
# extra period also covers an evaluation range whose first DIFF has no previous datapoint).
BACKLOG_GROWTH_PERIODS = 4
MIN_BACKLOG_PERIOD_MINUTES = 15
# Seconds from an image's S3 event to the job_state Lambda applying its batch's SUCCESS (one value per image).
TIME_TO_FEATURE_STATISTICS = ("p50", "p95", "Maximum")


class Monitoring(Construct):
    """CloudWatch alarms (and an SNS topic when an e-mail is given) and the pipeline dashboard.

    Attributes:
        alarms: alarm name suffix → alarm.
        topic: the alarm topic, or ``None`` without ``alarm_email``.
        dashboard: backlog, oldest pending age, job runs, failures, DLQ depth, time to feature, Lambda errors, the
            sealed backlog behind the slot and the images per job run.
        backlog_growth: the metric-math expression the ``SealedBacklogGrowing`` alarm watches.
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
        job_max_images: int,
        tick_rate_minutes: int = 1,
    ) -> None:
        super().__init__(scope, construct_id)

        def pipeline_metric(
            name: str, statistic: str = "Sum", label: str | None = None, period: Duration | None = None
        ) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map={"service": service},
                period=period or Duration.minutes(5),
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
        backlog_period = Duration.minutes(max(MIN_BACKLOG_PERIOD_MINUTES, 3 * tick_rate_minutes))
        backlog_floor = pipeline_metric(BACKLOG_METRIC, "Minimum", label="floor (Minimum)", period=backlog_period)
        self.backlog_growth = cloudwatch.MathExpression(
            expression="DIFF(floor)",
            using_metrics={"floor": backlog_floor},
            period=backlog_period,
            label="growth of the floor since the previous period",
        )
        self.alarms["SealedBacklogGrowing"] = self.backlog_growth.create_alarm(
            self,
            "SealedBacklogGrowing",
            alarm_description=(
                f"The floor of {BACKLOG_METRIC} (images in SEALED batches behind the job-run slot, its Minimum per "
                f"{backlog_period.to_minutes()} min) rose in {BACKLOG_GROWTH_PERIODS} of the last "
                f"{BACKLOG_GROWTH_PERIODS + 1} periods: photos arrive faster than job runs featurize them (each run "
                "leaves images behind). See ImagesPerJobRun (runs at JOB_MAX_IMAGES?) and the job runs' logs (slow "
                "or failing runs); raise emrMaxCpu/emrMaxMemory (jobMaxImages follows). README 'Scale'."
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=BACKLOG_GROWTH_PERIODS + 1,
            datapoints_to_alarm=BACKLOG_GROWTH_PERIODS,
            # No datapoint = no tick and no run start published the backlog: no evidence of growth (a stalled tick
            # alarms on its own: TickErrors, BacklogTooOld); a gap also breaks a run of growing periods.
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
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"Sealed backlog, images waiting behind the job-run slot ({BACKLOG_METRIC})",
                width=12,
                left=[
                    pipeline_metric(BACKLOG_METRIC, "Maximum", label="Maximum", period=backlog_period),
                    backlog_floor,
                ],
                right=[self.backlog_growth],
                right_y_axis=cloudwatch.YAxisProps(label="growth / period", show_units=False),
            ),
            cloudwatch.GraphWidget(
                title=f"Images per job run when it starts ({RUN_SIZE_METRIC})",
                width=12,
                left=[pipeline_metric(RUN_SIZE_METRIC, stat, label=stat) for stat in ("Average", "Maximum")],
                right=[pipeline_metric(RUN_SIZE_METRIC, "SampleCount", label="job runs started")],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=job_max_images, label="JOB_MAX_IMAGES")],
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
