"""boto3 requests → the IAM authorizations AWS checks for them: ``(action, resource ARN, request context)``.

Sources: the Service Authorization Reference "Actions, resources, and condition keys" pages of Amazon S3, DynamoDB,
EMR Serverless, AWS Glue and SQS. Notable mappings: S3 ``ListObjectsV2``/``HeadBucket`` are ``s3:ListBucket`` (with
the request's ``s3:prefix``), ``HeadObject`` is ``s3:GetObject``, a ``VersionId`` makes ``…Version`` actions,
multipart parts are ``s3:PutObject``; DynamoDB ``TransactWriteItems`` checks each item's own action
(``PutItem``/``UpdateItem``/``DeleteItem``/``ConditionCheckItem``) on its table; EMR Serverless ``StartJobRun``
also needs ``iam:PassRole`` on the execution role and, with tags, ``TagResource`` on the new job run; Glue checks
the catalog, the database and the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdk.iam_eval import Call
from tests.helpers.template_policies import ACCOUNT, REGION


def _s3(operation: str, params: Mapping[str, Any]) -> list[Call]:
    bucket = f"arn:aws:s3:::{params.get('Bucket', '')}"
    obj = f"{bucket}/{params.get('Key', '')}"
    versioned = bool(params.get("VersionId"))
    prefix = {"s3:prefix": params["Prefix"]} if "Prefix" in params else {}
    if operation in ("ListObjectsV2", "ListObjects"):
        return [Call("s3:ListBucket", bucket, prefix)]
    if operation == "ListObjectVersions":
        return [Call("s3:ListBucketVersions", bucket, prefix)]
    if operation == "HeadBucket":
        return [Call("s3:ListBucket", bucket)]
    if operation in ("GetObject", "HeadObject"):
        return [Call("s3:GetObjectVersion" if versioned else "s3:GetObject", obj)]
    if operation in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        return [Call("s3:PutObject", obj)]
    if operation == "AbortMultipartUpload":
        return [Call("s3:AbortMultipartUpload", obj)]
    if operation == "DeleteObject":
        return [Call("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject", obj)]
    if operation == "DeleteObjects":
        return [
            Call("s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject", f"{bucket}/{o['Key']}")
            for o in params.get("Delete", {}).get("Objects", [])
        ]
    if operation == "CopyObject":
        source = params["CopySource"]
        source = f"{source['Bucket']}/{source['Key']}" if isinstance(source, dict) else source.lstrip("/")
        return [Call("s3:PutObject", obj), Call("s3:GetObject", f"arn:aws:s3:::{source}")]
    return [Call(f"s3:{operation}", bucket)]


def _dynamodb(operation: str, params: Mapping[str, Any]) -> list[Call]:
    def table(name: str, index: str | None = None) -> str:
        arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    if operation == "TransactWriteItems":
        kinds = {
            "Put": "PutItem",
            "Update": "UpdateItem",
            "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem",
        }
        return [
            Call(f"dynamodb:{kinds[kind]}", table(body["TableName"]))
            for item in params["TransactItems"]
            for kind, body in item.items()
        ]
    if operation == "TransactGetItems":
        return [Call("dynamodb:GetItem", table(item["Get"]["TableName"])) for item in params["TransactItems"]]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [Call(f"dynamodb:{operation}", table(name)) for name in params["RequestItems"]]
    return [Call(f"dynamodb:{operation}", table(params["TableName"], params.get("IndexName")))]


def _emr_serverless(operation: str, params: Mapping[str, Any]) -> list[Call]:
    application = f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/{params.get('applicationId', '')}"
    if operation == "StartJobRun":
        calls = [
            Call("emr-serverless:StartJobRun", application),
            Call("iam:PassRole", params["executionRoleArn"], {"iam:PassedToService": "emr-serverless.amazonaws.com"}),
        ]
        if params.get("tags"):
            calls.append(Call("emr-serverless:TagResource", f"{application}/jobruns/new-job-run-id"))
        return calls
    if "jobRunId" in params:
        return [Call(f"emr-serverless:{operation}", f"{application}/jobruns/{params['jobRunId']}")]
    return [Call(f"emr-serverless:{operation}", application)]


def _glue(operation: str, params: Mapping[str, Any]) -> list[Call]:
    arn = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    resources = [f"{arn}:catalog"]
    database = params.get("DatabaseName") or params.get("Name") if operation.endswith("Database") else None
    database = database or params.get("DatabaseName")
    if database:
        resources.append(f"{arn}:database/{database}")
    table = params.get("TableInput", {}).get("Name") or (params.get("Name") if "Table" in operation else None)
    if operation == "GetTables":
        table = "*"
    if database and table:
        resources.append(f"{arn}:table/{database}/{table}")
    return [Call(f"glue:{operation}", resource) for resource in resources]


def _sqs(operation: str, params: Mapping[str, Any]) -> list[Call]:
    name = str(params.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
    return [Call(f"sqs:{operation}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")]


MAPPERS = {"s3": _s3, "dynamodb": _dynamodb, "emr-serverless": _emr_serverless, "glue": _glue, "sqs": _sqs}


def iam_calls(service: str, operation: str, params: Mapping[str, Any]) -> list[Call]:
    """The authorizations of one boto3 request (``service`` as in ``client.meta.service_model.service_name``).

    Raises:
        KeyError: a service this mapping does not know (add it rather than guess).
    """
    return MAPPERS[service](operation, params)


def http_iam_calls(method: str, path: str, query: str, target: str, body: bytes) -> list[Call]:
    """The authorizations of one HTTP request to a path-style S3 endpoint or a JSON-protocol Glue endpoint (as the
    recording endpoint saw it). STS ``GetCallerIdentity`` needs none.

    Raises:
        KeyError: a JSON-protocol service other than Glue (add its mapping rather than guess).
    """
    import json
    import re
    from urllib.parse import parse_qs, unquote

    if target:
        service, operation = target.split(".", 1)
        if service != "AWSGlue":
            raise KeyError(f"no IAM mapping for {target}")
        return _glue(operation, json.loads(body or b"{}"))
    q = parse_qs(query, keep_blank_values=True)
    if "Action=GetCallerIdentity" in query or "GetCallerIdentity" in body.decode("utf-8", "replace"):
        return []
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if "versionId" in q:
        params["VersionId"] = q["versionId"][0]
    if not key:
        if method == "POST" and "delete" in q:
            keys = re.findall(rb"<Key>(.*?)</Key>", body)
            return _s3("DeleteObjects", {"Bucket": bucket, "Delete": {"Objects": [{"Key": k.decode()} for k in keys]}})
        if method in ("GET", "HEAD") and not ({"location", "versions", "uploads"} & set(q)):
            prefix = {"Prefix": q["prefix"][0]} if "prefix" in q else {}
            return _s3("ListObjectsV2" if method == "GET" else "HeadBucket", {"Bucket": bucket, **prefix})
        name = {"location": "GetBucketLocation", "versions": "ListObjectVersions", "uploads": "ListMultipartUploads"}
        return [Call(f"s3:{next((v for k, v in name.items() if k in q), method + 'Bucket')}", f"arn:aws:s3:::{bucket}")]
    if method in ("GET", "HEAD"):
        if "uploadId" in q:
            return [Call("s3:ListMultipartUploadParts", f"arn:aws:s3:::{bucket}/{key}")]
        return _s3("GetObject", params)
    if method in ("PUT", "POST"):
        return _s3("PutObject", params)
    if method == "DELETE":
        return _s3("AbortMultipartUpload" if "uploadId" in q else "DeleteObject", params)
    raise KeyError(f"no IAM mapping for S3 {method} {path}?{query}")
