"""Processing: the EMR Serverless Spark application on a custom image, the job code in S3, and the job
execution role (least privilege: images/ + manifests/ read, lake/ read/write, logs/ write, code/ read)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnRule, CfnRuleAssertion, Fn, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_emrserverless as emrs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from cdk.assets import SPARK_ENTRY_POINT, SPARK_ZIP
from cdk.nag import acknowledge_object_prefixes, acknowledge_s3_grant_actions
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
        spark_submit_parameters: what the Lambdas add to every job run.
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
        int8_calibration: bool = False,
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
        code = s3deploy.BucketDeployment(
            self,
            "JobCode",
            sources=[s3deploy.Source.asset(str(spark_code_dir))],
            destination_bucket=bucket,
            destination_key_prefix=r.CODE_PREFIX,
            prune=True,
            retain_on_delete=False,
        )
        self.code_deployment = code
        self.entry_point_uri = bucket.s3_url_for_object(f"{r.CODE_PREFIX}{SPARK_ENTRY_POINT}")
        self.py_files_uri = bucket.s3_url_for_object(f"{r.CODE_PREFIX}{SPARK_ZIP}")
        self.weights = IMAGE_WEIGHTS_PATH
        self.spark_submit_parameters = (
            f"--conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON={JOB_PYTHON} "
            f"--conf spark.executorEnv.PYSPARK_PYTHON={JOB_PYTHON}"
        )

        self.execution_role = iam.Role(
            self,
            "JobExecutionRole",
            assumed_by=iam.ServicePrincipal("emr-serverless.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="Fruits! EMR Serverless job runs: read images/manifests/code, read+write lake, write logs",
        )
        bucket.grant_read(self.execution_role, f"{r.IMAGES_PREFIX}*")
        bucket.grant_read(self.execution_role, f"{r.MANIFESTS_PREFIX}*")
        bucket.grant_read(self.execution_role, f"{r.CODE_PREFIX}*")
        bucket.grant_read_write(self.execution_role, f"{r.LAKE_PREFIX}*")
        bucket.grant_put(self.execution_role, f"{r.LOGS_PREFIX}*")
        prefixes = (r.IMAGES_PREFIX, r.MANIFESTS_PREFIX, r.CODE_PREFIX, r.LAKE_PREFIX, r.LOGS_PREFIX)
        if int8_calibration:  # --precision int8 reads its calibration manifest and photos (only then)
            bucket.grant_read(self.execution_role, f"{r.CALIBRATION_PREFIX}*")
            prefixes += (r.CALIBRATION_PREFIX,)
        acknowledge_s3_grant_actions(self.execution_role)
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
