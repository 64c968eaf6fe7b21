"""Processing: the EMR Serverless Spark application on a custom image, the job code in S3, and the job
execution role (least privilege: images/ + manifests/ read, lake/ read/write, logs/ write, code/ read)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnRule, CfnRuleAssertion, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_emrserverless as emrs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from cdk import sizing
from cdk.assets import SPARK_ENTRY_POINT, SPARK_ZIP
from cdk.nag import acknowledge_object_prefixes
from lambdas import resources as r
from spark_jobs.release import EMR_RELEASE_LABEL, JOB_PYTHON

IMAGE_DIR = Path(__file__).resolve().parents[1] / "emr_image"
# Where the Dockerfile bakes the ResNet50 ImageNet (no top) weights; passed to the job as --weights.
IMAGE_WEIGHTS_PATH = "/opt/fruits/weights/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
# First CDK bootstrap template version whose container-assets repository policy allows EMR Serverless to pull
# (aws-cdk-cli PR #112, "Add ECR resource policy for emr-serverless containers"; checked: the template of CLI
# 2.1002.0 is version 26 without it, 2.1003.0 is version 27 with it).
MIN_BOOTSTRAP_VERSION = 27
BOOTSTRAP_VERSION_PARAMETER = "BootstrapVersion"  # the SSM-backed parameter DefaultStackSynthesizer adds


class Processing(Construct):
    """EMR Serverless application + custom image + job code + execution role.

    Attributes:
        application: the ``AWS::EMRServerless::Application`` (SPARK, release from ``spark_jobs.release``).
        application_arn: its ARN (``arn:aws:emr-serverless:<region>:<account>:/applications/<id>``).
        execution_role: the job execution role (trusted by emr-serverless.amazonaws.com).
        image: the custom image asset (built and pushed by ``cdk deploy``; synth needs no Docker).
        entry_point_uri / py_files_uri: ``s3://<bucket>/code/main.py`` and ``.../code/spark_jobs.zip``.
        spark_submit_parameters: what the Lambdas add to every job run: the job's Python, its worker sizes and
            Spark dynamic allocation from one executor up to ``max_executors`` (:func:`cdk.sizing.spark_sizing_conf`).
        max_executors: the executors the maximum capacity holds beside the driver(s) (:func:`cdk.sizing.max_executors`).
        weights: the ``--weights`` value of every job run (the weights file baked into the image).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        spark_code_dir: Path,
        architecture: str,
        max_cpu: str,
        max_memory: str,
        max_disk: str,
        idle_stop_minutes: int,
        log_retention: logs.RetentionDays,
        int8_calibration: bool = False,
        warm_pool: sizing.WarmPool | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        self.image = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(IMAGE_DIR),
            build_args={"EMR_RELEASE": EMR_RELEASE_LABEL},
            platform=ecr_assets.Platform.LINUX_ARM64 if architecture == "ARM64" else ecr_assets.Platform.LINUX_AMD64,
        )

        # Spark job code: main.py (entryPoint) + spark_jobs.zip (--py-files) copied under code/.
        code = self._job_code_deployment(bucket, spark_code_dir, log_retention)
        self.code_deployment = code
        self.entry_point_uri = bucket.s3_url_for_object(f"{r.CODE_PREFIX}{SPARK_ENTRY_POINT}")
        self.py_files_uri = bucket.s3_url_for_object(f"{r.CODE_PREFIX}{SPARK_ZIP}")
        self.weights = IMAGE_WEIGHTS_PATH
        self.max_executors = sizing.max_executors(max_cpu, max_memory, max_disk, warm_pool)
        conf = {
            "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": JOB_PYTHON,
            "spark.executorEnv.PYSPARK_PYTHON": JOB_PYTHON,
            **sizing.spark_sizing_conf(self.max_executors, warm_pool),
        }
        self.spark_submit_parameters = " ".join(f"--conf {key}={value}" for key, value in conf.items())

        self.execution_role = iam.Role(
            self,
            "JobExecutionRole",
            assumed_by=iam.ServicePrincipal("emr-serverless.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="Fruits! EMR Serverless job runs: read images/manifests/code, read+write lake, write logs",
        )
        read_prefixes = JOB_READ_PREFIXES + ((r.CALIBRATION_PREFIX,) if int8_calibration else ())
        for statement in job_role_statements(bucket, read_prefixes):  # int8 reads its calibration set (only then)
            self.execution_role.add_to_principal_policy(statement)
        prefixes = (*read_prefixes, r.LOGS_PREFIX)
        acknowledge_object_prefixes(
            self.execution_role,
            bucket.bucket_arn,
            prefixes,
            "the job reads images/manifests/code (int8: its calibration set), reads and writes the lake, writes "
            "its logs.",
        )

        self.application = emrs.CfnApplication(
            self,
            "Application",
            name=f"{stack.stack_name}-featurize",
            type="SPARK",
            release_label=EMR_RELEASE_LABEL,
            architecture=architecture,
            auto_start_configuration=emrs.CfnApplication.AutoStartConfigurationProperty(enabled=True),
            auto_stop_configuration=emrs.CfnApplication.AutoStopConfigurationProperty(
                enabled=True, idle_timeout_minutes=idle_stop_minutes
            ),
            maximum_capacity=emrs.CfnApplication.MaximumAllowedResourcesProperty(
                cpu=max_cpu, memory=max_memory, disk=max_disk
            ),
            image_configuration=emrs.CfnApplication.ImageConfigurationInputProperty(image_uri=self.image.image_uri),
            initial_capacity=_initial_capacity(warm_pool),
            runtime_configuration=[
                emrs.CfnApplication.ConfigurationObjectProperty(
                    classification="spark-defaults",
                    properties={
                        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": JOB_PYTHON,
                        "spark.executorEnv.PYSPARK_PYTHON": JOB_PYTHON,
                    },
                )
            ],
            # One job run at a time: PCA versions are ordered (the Lambdas also enforce it).
            scheduler_configuration=emrs.CfnApplication.SchedulerConfigurationProperty(max_concurrent_runs=1),
        )
        self.application_arn = self.application.attr_arn

        # The image is pushed to the CDK bootstrap container-assets repository. Since bootstrap version 27
        # (aws-cdk CLI >= 2.1003.0) that repository's policy lets emr-serverless.amazonaws.com pull
        # (ecr:BatchGetImage, ecr:DescribeImages, ecr:GetDownloadUrlForLayer) for the applications of this
        # account (aws:SourceArn .../applications/*): refuse to deploy on an older bootstrap.
        CfnRule(
            self,
            "RequireEmrServerlessBootstrap",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_not(
                        Fn.condition_contains(
                            [str(v) for v in range(1, MIN_BOOTSTRAP_VERSION)], Fn.ref(BOOTSTRAP_VERSION_PARAMETER)
                        )
                    ),
                    assert_description=(
                        f"Fruits needs CDK bootstrap version {MIN_BOOTSTRAP_VERSION}+ (its ECR policy lets EMR "
                        "Serverless pull the custom image): run `cdk bootstrap` with the CLI pinned in package.json."
                    ),
                )
            ],
        )

    def _job_code_deployment(
        self, bucket: s3.IBucket, spark_code_dir: Path, log_retention: logs.RetentionDays
    ) -> s3deploy.BucketDeployment:
        """aws-cdk-lib's BucketDeployment of the job code to ``code/``, run by a role of our own.

        The library would grant its provider function read/write on the whole destination bucket (photos and lake
        included) and read on the whole asset bucket; its role here is immutable to the library
        (``without_policy_updates``) and may only read the one asset zip, list/put/delete under ``code/`` and read
        the bucket's tags (the provider's ``bucket_owned`` check before it deletes), and write its own log group.
        """
        asset = s3_assets.Asset(self, "JobCodeAsset", path=str(spark_code_dir))
        log_group = logs.LogGroup(self, "JobCodeLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        role = iam.Role(
            self,
            "JobCodeDeploymentRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Fruits! deploy-time copy of the Spark job code to code/ (aws-cdk-lib BucketDeployment)",
        )
        for statement in code_deployment_statements(bucket, asset, log_group):
            role.add_to_policy(statement)
        acknowledge_object_prefixes(
            role, bucket.bucket_arn, (r.CODE_PREFIX,), "the deployment copies and prunes the job code under code/."
        )
        return s3deploy.BucketDeployment(
            self,
            "JobCode",
            sources=[s3deploy.Source.bucket(asset.bucket, asset.s3_object_key)],
            destination_bucket=bucket,
            destination_key_prefix=r.CODE_PREFIX,
            prune=True,
            retain_on_delete=False,
            role=role.without_policy_updates(),
            log_group=log_group,
        )


def _initial_capacity(
    warm_pool: sizing.WarmPool | None,
) -> list[emrs.CfnApplication.InitialCapacityConfigKeyValuePairProperty] | None:
    """The application's pre-initialized capacity: the warm pool's drivers and executors, workers of the job's size
    (a job uses pre-initialized workers only when it asks for that size); ``None`` without a warm pool."""
    if warm_pool is None:
        return None
    worker = emrs.CfnApplication.WorkerConfigurationProperty(
        cpu=f"{sizing.WORKER_VCPU} vCPU", memory=f"{sizing.WORKER_MEMORY_GB} GB", disk=f"{sizing.WORKER_DISK_GB} GB"
    )
    return [
        emrs.CfnApplication.InitialCapacityConfigKeyValuePairProperty(
            key=kind,
            value=emrs.CfnApplication.InitialCapacityConfigProperty(worker_count=count, worker_configuration=worker),
        )
        for kind, count in (("Driver", warm_pool.drivers), ("Executor", warm_pool.executors))
        if count > 0
    ]


def code_deployment_statements(
    bucket: s3.IBucket, asset: s3_assets.Asset, log_group: logs.ILogGroup
) -> list[iam.PolicyStatement]:
    """The BucketDeployment provider's permissions: the calls of its handler (aws-cdk-lib
    ``custom-resource-handlers/.../bucket-deployment-handler/index.py``: ``aws s3 cp`` of the source zip,
    ``aws s3 sync --delete`` / ``aws s3 rm --recursive`` under the prefix, ``get_bucket_tagging``)."""
    return [
        iam.PolicyStatement(
            sid="ReadTheJobCodeAsset",
            actions=["s3:GetObject"],
            resources=[asset.bucket.arn_for_objects(asset.s3_object_key)],
        ),
        iam.PolicyStatement(
            sid="ListJobCode",
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{r.CODE_PREFIX}*"]}},
        ),
        iam.PolicyStatement(
            sid="WriteAndPruneJobCode",  # AbortMultipartUpload: the CLI aborts a failed multipart upload
            actions=["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            resources=[bucket.arn_for_objects(f"{r.CODE_PREFIX}*")],
        ),
        iam.PolicyStatement(
            sid="ReadOwnerTagsBeforeDelete", actions=["s3:GetBucketTagging"], resources=[bucket.bucket_arn]
        ),
        iam.PolicyStatement(
            sid="WriteOwnLogs",
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        ),
    ]


# Key prefixes the job reads (``s3:GetObject``/``GetObjectVersion``; manifests name image versions) and lists.
JOB_READ_PREFIXES = (r.IMAGES_PREFIX, r.MANIFESTS_PREFIX, r.CODE_PREFIX, r.LAKE_PREFIX)


def job_role_statements(bucket: s3.IBucket, read_prefixes: tuple[str, ...] = JOB_READ_PREFIXES
                        ) -> list[iam.PolicyStatement]:
    """The job execution role's S3 permissions: explicit actions (no ``s3:List*``/``GetBucket*`` group, no object
    lock actions), reading and listing only under ``read_prefixes`` (default :data:`JOB_READ_PREFIXES`; int8 adds
    ``calibration/``). The Glue grants are added by :class:`Query`.

    Calls covered: ``spark_jobs.storage`` (boto3 get/put/list/delete/head), PyIceberg's PyArrow S3 file system
    (HEAD/GET/PUT, multipart uploads, prefix listings of ``lake/``) and EMR Serverless log upload to ``logs/``;
    checked against recorded calls by ``tests/cdk/test_calls_against_policies.py``.
    """
    return [
        iam.PolicyStatement(
            sid="ReadInputsCodeAndLake",
            actions=["s3:GetObject", "s3:GetObjectVersion"],
            resources=[bucket.arn_for_objects(f"{prefix}*") for prefix in read_prefixes],
        ),
        iam.PolicyStatement(
            sid="ListOnlyWhatItReads",
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in read_prefixes]}},
        ),
        iam.PolicyStatement(
            sid="WriteTheLake",  # Iceberg data/metadata files, erasure requests (deleted once applied)
            actions=["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            resources=[bucket.arn_for_objects(f"{r.LAKE_PREFIX}*")],
        ),
        iam.PolicyStatement(
            sid="WriteJobLogs",  # EMR Serverless uploads driver/executor logs with the execution role
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[bucket.arn_for_objects(f"{r.LOGS_PREFIX}*")],
        ),
    ]
