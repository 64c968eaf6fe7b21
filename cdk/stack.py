"""The one Fruits! stack: composes the constructs, wires their attributes, declares the outputs."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from cdk.components.ingestion import Ingestion, JobSettings, retention_days
from cdk.components.manifest_table import ManifestTable
from cdk.components.monitoring import Monitoring
from cdk.components.processing import Processing
from cdk.components.query import Query
from cdk.components.storage import Storage
from cdk.config import DeployConfig
from cdk.library_logs import retain_library_function_logs
from cdk.nag import acknowledge_library_singletons
from lambdas import resources as r
from lambdas.config import SETTING_NAMES, stack_output_key
from lambdas.contracts import METRICS_NAMESPACE, SERVICE_NAME


class FruitsStack(Stack):
    """Storage → ingestion Lambdas → EMR Serverless processing → Parquet lake queried by Athena.

    Attributes:
        storage, manifest, processing, ingestion, monitoring, query: the constructs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        lambda_code_dir: Path,
        spark_code_dir: Path,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=config.account, region=config.region),
            description="Fruits! image ingestion: S3 -> SQS -> Lambda manifest -> EMR Serverless ResNet50 + PCA",
        )
        self.storage = Storage(self, "Storage")
        self.manifest = ManifestTable(self, "Manifest")
        self.processing = Processing(
            self,
            "Processing",
            bucket=self.storage.bucket,
            spark_code_dir=spark_code_dir,
            architecture=config.emr_architecture,
            max_cpu=config.emr_max_cpu,
            max_memory=config.emr_max_memory,
            max_disk=config.emr_max_disk,
            idle_stop_minutes=config.emr_idle_stop_minutes,
            log_retention=retention_days(config.log_retention_days),
            int8_calibration=config.job_precision == "int8",
            warm_pool=config.warm_pool,
        )
        lake_database = f"{config.stack_name.lower()}_lake"
        self.ingestion = Ingestion(
            self,
            "Ingestion",
            lambda_code_dir=lambda_code_dir,
            powertools_layer_arn=config.powertools_layer_arn,
            bucket=self.storage.bucket,
            queue=self.storage.queue,
            table=self.manifest.table,
            job=JobSettings(
                application_id=self.processing.application.attr_application_id,
                application_arn=self.processing.application_arn,
                execution_role=self.processing.execution_role,
                entry_point_uri=self.processing.entry_point_uri,
                py_files_uri=self.processing.py_files_uri,
                weights=self.processing.weights,
                precision=config.job_precision,
                engine=config.job_engine,
                catalog=f"glue:{lake_database}",
                spark_submit_parameters=self.processing.spark_submit_parameters,
                pca_k=config.pca_k,
                job_timeout_minutes=config.job_timeout_minutes,
                batch_threshold=config.batch_threshold,
                batch_max_images=config.batch_max_images,
                batch_max_wait_seconds=config.batch_max_wait_seconds,
                max_attempts=config.max_attempts,
                calibration=config.job_calibration,
                job_max_images=config.job_max_images,
            ),
            tick_rate_minutes=config.tick_rate_minutes,
            reconcile_rate_hours=config.reconcile_rate_hours,
            log_retention_days=config.log_retention_days,
            ingest_max_concurrency=config.ingest_max_concurrency,
            reserved_concurrency=config.reserved_concurrency,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            dead_letter_queue=self.storage.dead_letter_queue,
            job_state_dead_letter_queue=self.ingestion.job_state_dead_letter_queue,
            functions=self.ingestion.functions,
            namespace=METRICS_NAMESPACE,
            service=SERVICE_NAME,
            alarm_email=config.alarm_email,
            max_wait_seconds=config.batch_max_wait_seconds,
            job_max_images=config.job_max_images,
            tick_rate_minutes=config.tick_rate_minutes,
        )
        self.query = Query(
            self, "Query", bucket=self.storage.bucket, database_name=lake_database,
            writer_role=self.processing.execution_role,
        )

        acknowledge_library_singletons(self)
        retain_library_function_logs(self, retention_days(config.log_retention_days))

        # Every setting of the Lambdas' environment, so `fruits ... --stack NAME` needs no environment variable.
        for name, value in self.ingestion.environment.items():
            if name in SETTING_NAMES and value != "":  # CloudFormation rejects empty output values
                CfnOutput(self, stack_output_key(name), value=value, description=f"{name} (read by fruits --stack)")
        CfnOutput(self, "BucketName", value=self.storage.bucket.bucket_name, description="Data bucket")
        CfnOutput(
            self,
            "UploadPrefix",
            value=f"s3://{self.storage.bucket.bucket_name}/{r.IMAGES_PREFIX}",
            description="Upload images here (one folder per label)",
        )
        CfnOutput(self, "ApplicationId", value=self.processing.application.attr_application_id)
        CfnOutput(self, "ManifestTableName", value=self.manifest.table.table_name)
        CfnOutput(self, "GlueDatabase", value=self.query.database_name)
        CfnOutput(
            self,
            "FlushFunctionName",
            value=self.ingestion.functions["flush"].function_name,
            description="Invoke to seal and process whatever is pending now",
        )
        CfnOutput(self, "JobLogUri", value=f"s3://{self.storage.bucket.bucket_name}/{r.LOGS_PREFIX}")
        CfnOutput(self, "FeaturesTableName", value=self.query.table_name, description="Athena table (Iceberg, Glue)")
        CfnOutput(self, "LakeReadersPolicyArn", value=self.query.readers_policy.managed_policy_arn,
                  description="Attach to Athena users: read the lake's Iceberg tables")
