"""The Spark job's AWS calls on its deployed path (lake on s3:// with the Glue catalog), recorded at the endpoint
from the driver and every worker (boto3 and PyArrow's own S3 client alike), are allowed by the job execution
role's synthesized policy, and every granted action no call used is justified.

GIVEN a recording moto server (tests/helpers/recording_endpoint.py) holding the data bucket, the Glue database CDK
creates, 6 real photos + 1 corrupt file and the batch manifest the Lambdas write, WHEN the job runs through
``spark-submit`` as the local EMR runner starts it (entry point + spark_jobs.zip staged as CDK ships them,
``--weights projection:0``: the cheap model; ``--catalog glue``), twice (a first batch creates the tables, a second
appends and reads the previous PCA state), THEN every request signed with the job's credentials maps to IAM
authorizations the role allows. Not covered here: EMR Serverless's own log upload to ``logs/`` (justified below)
and the ECR image pull (the image repository's policy, not the role).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import boto3
import pytest

from cdk.assets import REPO_ROOT, SPARK_ENTRY_POINT, SPARK_ZIP, stage_spark_code
from cdk.iam_eval import Call, evaluate, statement_ids
from fruits.local.images import list_images
from lambdas.logic.manifest import render_manifest
from tests.helpers.iam_calls import http_iam_calls
from tests.helpers.recording_endpoint import recording_moto_server
from tests.helpers.template_policies import ACCOUNT, REGION, Resolver, role_policies

from .conftest import Synthesized

pytestmark = pytest.mark.slow

BUCKET = "fruits-data"
JOB_KEY_ID = "JOBEXECUTIONROLE"  # the job's calls are signed with this access key id; setup uses another
# Granted to the job role, used by no recorded call: why each stays.
JUSTIFIED_UNUSED = {
    "s3:AbortMultipartUpload": "PyArrow aborts a failed multipart upload of a large Iceberg data file (lake/, logs/)",
    "s3:GetObjectVersion": "manifests name image versions on a versioned bucket (moto here is unversioned)",
    "s3:PutObject@logs": "EMR Serverless uploads the job's driver/executor logs to logs/ with the execution role",
    "glue:GetDatabases": "PyIceberg GlueCatalog list_namespaces (fruits status/report through the job role)",
    "glue:GetTables": "PyIceberg GlueCatalog list_tables; read-only, limited to our database",
}


def _upload_inputs(endpoint: str, sample_dir: Path) -> str:
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="SETUP", aws_secret_access_key="x", region_name=REGION
    )
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    boto3.client(
        "glue", endpoint_url=endpoint, aws_access_key_id="SETUP", aws_secret_access_key="x", region_name=REGION
    ).create_database(DatabaseInput={"Name": "fruits_lake"})
    images = []
    for index, photo in enumerate(list_images(sample_dir / "Training", limit=6)):
        key = f"images/Training/{photo.parent.name}/{photo.name}"
        etag = s3.put_object(Bucket=BUCKET, Key=key, Body=photo.read_bytes())["ETag"].strip('"')
        images.append(
            {
                "bucket": BUCKET,
                "key": key,
                "etag": etag,
                "size": photo.stat().st_size,
                "label": photo.parent.name,
                "version_id": None,
                "batch": index % 2,
            }
        )
    etag = s3.put_object(Bucket=BUCKET, Key="images/Training/Kiwi/corrupt.jpg", Body=b"not a jpeg")["ETag"]
    images.append(
        {
            "bucket": BUCKET,
            "key": "images/Training/Kiwi/corrupt.jpg",
            "etag": etag.strip('"'),
            "size": 10,
            "label": "Kiwi",
            "version_id": None,
            "batch": 1,
        }
    )
    for batch in (0, 1):
        body = render_manifest([i for i in images if i["batch"] == batch])
        s3.put_object(Bucket=BUCKET, Key=f"manifests/b{batch}.jsonl", Body=body.encode())
    return endpoint


def _run_job(endpoint: str, code_dir: Path, batch: int, log: Path) -> None:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": JOB_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_PROFILE", None)
    command = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master",
        "local[2]",
        "--conf",
        "spark.ui.enabled=false",
        "--py-files",
        str(code_dir / SPARK_ZIP),
        str(code_dir / SPARK_ENTRY_POINT),
        "--manifest",
        f"s3://{BUCKET}/manifests/b{batch}.jsonl",
        "--lake",
        f"s3://{BUCKET}/lake",
        "--batch-id",
        f"b{batch}",
        "--weights",
        "projection:0",
        "--pca-k",
        "2",
        "--catalog",
        "glue",
        "--image-size",
        "32",
    ]
    with log.open("w") as out:
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600).returncode
    text = log.read_text()
    assert code == 0, text[text.find("Traceback") :][:6000] if "Traceback" in text else text[-4000:]


def test_every_job_call_is_allowed_by_the_execution_roles_synthesized_policy(
    synthesized: Synthesized, sample_dir: Path, tmp_path: Path
) -> None:
    stack = synthesized.built.stack
    bucket_id = stack.get_logical_id(stack.storage.bucket.node.default_child)
    role_id = stack.get_logical_id(stack.processing.execution_role.node.default_child)
    resolver = Resolver(names={bucket_id: BUCKET}, arns={bucket_id: f"arn:aws:s3:::{BUCKET}"})
    policies = role_policies(synthesized.resources, role_id, resolver)
    code_dir = stage_spark_code(REPO_ROOT)
    with recording_moto_server() as (endpoint, recorder):
        _upload_inputs(endpoint, sample_dir)
        recorder.requests.clear()
        for batch in (0, 1):
            _run_job(endpoint, code_dir, batch, tmp_path / f"job-b{batch}.log")
        recorded = [r for r in recorder.requests if r.access_key_id == JOB_KEY_ID]
        unsigned = [r for r in recorder.requests if r.access_key_id not in (JOB_KEY_ID, "SETUP")]
    calls: list[Call] = [c for r in recorded for c in http_iam_calls(r.method, r.path, r.query, r.target, r.body)]
    # THEN the job made S3 and Glue calls, all signed with its credentials, and none is denied
    assert unsigned == [] and calls
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "glue:CreateTable", "glue:UpdateTable"} <= {
        c.action for c in calls
    }
    decisions = [(call, evaluate(policies, call)) for call in calls]
    denied = sorted({(c.action, c.resource, json.dumps(dict(c.context))) for c, d in decisions if not d.allowed})
    assert denied == []
    # AND every granted action no call used is justified (s3:PutObject counts per prefix: lake/ vs logs/)
    used = defaultdict(set)
    for call, decision in decisions:
        for statement_id in decision.statements:
            used[statement_id].add(call.action.lower())
    unused = set()
    for statement_id, statement in statement_ids(policies):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = " ".join(
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for action in actions:
            if action.lower() not in used[statement_id]:
                unused.add(f"{action}@logs" if "/logs/" in resources and action == "s3:PutObject" else action)
    assert unused == set(JUSTIFIED_UNUSED), sorted(unused)
    assert ACCOUNT in json.dumps(policies)  # the Glue ARNs were resolved for the test account
