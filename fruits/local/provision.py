"""Create, in the local moto server, the same resources the CDK app deploys.

Bucket (images/, manifests/, lake/, code/, logs/) with ObjectCreated/ObjectRemoved notifications under the images
prefix → SQS queue with a DLQ; the DynamoDB manifest table (pk/sk + gsi1); the job execution role; the
EMR Serverless application (release label from ``spark_jobs.release``); the Spark job code uploaded
under code/. Returns the Lambda environment the handlers read, exactly as CDK would set it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import boto3

from lambdas import resources as r
from lambdas.config import lambda_environment as settings_environment
from spark_jobs.packaging import spark_package_zip
from spark_jobs.release import EMR_RELEASE_LABEL

SPARK_JOBS_DIR = Path(__file__).resolve().parents[2] / "spark_jobs"


@dataclass(frozen=True)
class LocalResources:
    """Names and ids of the provisioned local resources."""

    bucket: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    table: str
    application_id: str
    execution_role_arn: str


def provision(name: str = "fruits-local") -> LocalResources:
    """Create every resource in the current ``AWS_ENDPOINT_URL`` (moto). Idempotent names, fresh server."""
    s3, sqs, ddb = boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb")
    iam, emr = boto3.client("iam"), boto3.client("emr-serverless")
    bucket = f"{name}-data"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": r.REGION})

    dlq_url = sqs.create_queue(QueueName=f"{name}-ingest-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(r.INGEST_MAX_RECEIVE_COUNT)}
    queue_url = sqs.create_queue(
        QueueName=f"{name}-ingest",
        Attributes={
            "VisibilityTimeout": str(r.INGEST_QUEUE_VISIBILITY_TIMEOUT_S),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {  # every object under images/, as the stack: the ingest Lambda filters suffixes in any case
                    "Id": f"images-{kind.lower()}",
                    "QueueArn": queue_arn,
                    "Events": [f"s3:{kind}:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": r.IMAGES_PREFIX}]}},
                }
                for kind in ("ObjectCreated", "ObjectRemoved")  # uploads and deletes (erasure), as the stack
            ]
        },
    )

    table = f"{name}-manifest"
    string_attrs = [r.TABLE_PARTITION_KEY, r.TABLE_SORT_KEY, r.GSI1_PARTITION_KEY, r.GSI1_SORT_KEY]
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in string_attrs],
        KeySchema=[
            {"AttributeName": r.TABLE_PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": r.TABLE_SORT_KEY, "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": r.GSI1_NAME,
                "KeySchema": [
                    {"AttributeName": r.GSI1_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": r.GSI1_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )

    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "emr-serverless.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role_arn = iam.create_role(RoleName=f"{name}-job-execution", AssumeRolePolicyDocument=json.dumps(trust))["Role"][
        "Arn"
    ]
    application_id = emr.create_application(name=f"{name}-featurize", releaseLabel=EMR_RELEASE_LABEL, type="SPARK")[
        "applicationId"
    ]

    s3.put_object(Bucket=bucket, Key=f"{r.CODE_PREFIX}main.py", Body=(SPARK_JOBS_DIR / "main.py").read_bytes())
    s3.put_object(Bucket=bucket, Key=f"{r.CODE_PREFIX}spark_jobs.zip", Body=spark_package_zip(SPARK_JOBS_DIR.parent))
    return LocalResources(
        bucket=bucket,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        table=table,
        application_id=application_id,
        execution_role_arn=role_arn,
    )


def lambda_environment(
    res: LocalResources,
    *,
    lake_uri: str,
    weights: str,
    threshold: int,
    max_images: int,
    pca_k: int,
    precision: str = "float32",
    calibration: str = "",
    catalog: str = "",
    engine: str = "",
    max_wait: int | None = None,
    job_max_images: int | None = None,
) -> dict[str, str]:
    """The env vars the Lambdas get on AWS (:func:`lambdas.config.lambda_environment`, the block CDK sets), filled
    with the local resources, plus local-only Powertools switches (no metrics, no tracing, warnings only).
    ``max_wait``: BATCH_MAX_WAIT_SECONDS, ``job_max_images``: JOB_MAX_IMAGES (None: the deployed defaults)."""
    return {
        **settings_environment(
            data_bucket=res.bucket,
            manifest_table=res.table,
            emr_application_id=res.application_id,
            emr_execution_role_arn=res.execution_role_arn,
            job_entry_point=f"s3://{res.bucket}/{r.CODE_PREFIX}main.py",
            job_py_files=f"s3://{res.bucket}/{r.CODE_PREFIX}spark_jobs.zip",
            lake_uri=lake_uri,
            job_weights=weights,
            job_precision=precision,
            job_calibration=calibration,
            job_engine=engine,
            job_catalog=catalog,
            pca_k=pca_k,
            batch_threshold=threshold,
            batch_max_images=max_images,
            reconcile_lost_event_minutes=0,  # moto's job runs say SUCCESS at once: only the runner's events count
            **({} if max_wait is None else {"batch_max_wait_seconds": max_wait}),
            **({} if job_max_images is None else {"job_max_images": job_max_images}),
        ),
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
