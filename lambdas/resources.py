"""Names and layouts shared by the CDK app, the Lambdas, the CLI and the local (moto) runner.

Everything that must agree between what CDK deploys and what the local run creates lives here, once.
"""

from __future__ import annotations

from lambdas import contracts

# --- S3 layout (one data bucket) -------------------------------------------------------------------
IMAGES_PREFIX = "images/"  # uploads land here; the bucket notifies SQS for these keys only
MANIFESTS_PREFIX = "manifests/"  # batch manifests written by the Lambdas, read by the Spark job
LAKE_PREFIX = "lake/"  # Iceberg tables (features, rejects, batches) + PCA state (pca/)
CODE_PREFIX = "code/"  # Spark job code (entry point + zipped package)
LOGS_PREFIX = "logs/"  # EMR Serverless job run logs
# --precision int8: the calibration manifest (JSON lines: image_uri[, label]) the job reads by default, and the
# prefix its photos may live under besides IMAGES_PREFIX (spark_jobs/featurize/quantization.py)
CALIBRATION_PREFIX = "calibration/"
CALIBRATION_MANIFEST_KEY = f"{CALIBRATION_PREFIX}manifest.jsonl"

# Suffixes the ingest Lambda accepts, compared in lower case (.Jpg, .JPEG, .PnG are images). The bucket notifies
# for every object under IMAGES_PREFIX with no suffix filter (S3 filters are case-sensitive): the Lambda decides.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# --- DynamoDB manifest table -----------------------------------------------------------------------
TABLE_PARTITION_KEY = "pk"
TABLE_SORT_KEY = "sk"
GSI1_NAME = "gsi1"
GSI1_PARTITION_KEY = "gsi1pk"
GSI1_SORT_KEY = "gsi1sk"

# --- EventBridge ------------------------------------------------------------------------------------
EMR_EVENT_SOURCE = "aws.emr-serverless"
EMR_JOB_STATE_DETAIL_TYPE = "EMR Serverless Job Run State Change"

# --- Spark job ---------------------------------------------------------------------------------------
JOB_PRECISIONS = contracts.JOB_PRECISIONS  # the job's --precision (spark_jobs/featurize/models.py PRECISIONS)
# The job's --engine (spark_jobs/featurize/engines.py ENGINES) and the default per EMR architecture
# (engines.DEFAULT_ENGINE): the fastest exact engine whose wheel installs in the custom image (OpenVINO aarch64 needs
# glibc 2.35 > AL2023's).
JOB_ENGINES = ("tensorflow", "openvino", "onnxruntime")
DEFAULT_JOB_ENGINE = {"X86_64": "openvino", "ARM64": "onnxruntime"}
ENGINES_BY_ARCHITECTURE = {"X86_64": JOB_ENGINES, "ARM64": ("tensorflow", "onnxruntime")}

# --- Region -----------------------------------------------------------------------------------------
REGION = "eu-west-3"  # Paris, for GDPR; the CDK app refuses any other

# --- SQS ingest queue -------------------------------------------------------------------------------
INGEST_QUEUE_VISIBILITY_TIMEOUT_S = 180  # >= 6x the ingest Lambda timeout (AWS guidance for SQS triggers)
INGEST_MAX_RECEIVE_COUNT = 5  # deliveries before a message moves to the DLQ
INGEST_BATCH_SIZE = 10  # SQS records per ingest Lambda invocation
