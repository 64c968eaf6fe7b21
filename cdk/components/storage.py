"""Storage: the data bucket (images/, manifests/, lake/, code/, logs/), its access-log bucket, and the
ingest queue (+ DLQ) that the bucket notifies for every new image."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lambdas import resources as r


class Storage(Construct):
    """Data bucket + ingest queue.

    Attributes:
        bucket: the one data bucket (SSE-S3, TLS only, versioned, public access blocked).
        access_logs_bucket: receives the data bucket's server access logs.
        queue: ObjectCreated and ObjectRemoved notifications for every key under ``images/`` (the Lambda filters
            suffixes).
        dead_letter_queue: messages the ingest Lambda failed ``INGEST_MAX_RECEIVE_COUNT`` times.
    """

    def __init__(self, scope: Construct, construct_id: str, *, noncurrent_version_days: int = 30) -> None:
        super().__init__(scope, construct_id)
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # server access logging requires SSE-S3
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "Data",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="data-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-job-logs", prefix=r.LOGS_PREFIX, expiration=Duration.days(90)),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(noncurrent_version_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,  # photos and the lake outlive the stack
        )

        self.dead_letter_queue = sqs.Queue(
            self,
            "IngestDlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "IngestQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(r.INGEST_QUEUE_VISIBILITY_TIMEOUT_S),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=r.INGEST_MAX_RECEIVE_COUNT
            ),
        )
        # Every object under images/: S3 suffix filters are case-sensitive (".Jpg" would match none), so the
        # ingest Lambda filters suffixes in lower case and counts the rest as skipped (not_an_image_suffix).
        # Deletes (and delete markers) too: the ingest Lambda marks the image removed and queues its erasure.
        for event in (s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_REMOVED):
            self.bucket.add_event_notification(
                event, s3n.SqsDestination(self.queue), s3.NotificationKeyFilter(prefix=r.IMAGES_PREFIX)
            )
