"""Query: the Glue Data Catalog database that holds the lake's Iceberg tables, and who may use it.

The tables themselves (``features``, ``rejects``, ``batches``, ``near_duplicates``; schemas in
``spark_jobs/lakehouse/tables.py``) are created by the first job run through PyIceberg's Glue catalog, with their data
and metadata under ``lake/<table>/``: Athena reads them as Iceberg tables (every query sees the latest commit; no
partitions to register, no projection).
The EMR job execution role may create and commit tables in this database only; Athena users get read access
through the managed policy :attr:`Query.readers_policy`.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.nag import acknowledge_object_prefixes
from lambdas import resources as r

FEATURES_TABLE = "features"
LAKE_TABLES = ("features", "rejects", "batches", "near_duplicates", "erasures")  # spark_jobs.lakehouse.tables.TABLES
# Glue calls of PyIceberg's GlueCatalog (pyiceberg/catalog/glue.py): load, create and commit tables.
GLUE_READ_ACTIONS = ("glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables")
GLUE_WRITE_ACTIONS = ("glue:CreateTable", "glue:UpdateTable")


class Query(Construct):
    """Glue database for the Iceberg tables + least-privilege grants for the job and for Athena readers.

    Attributes:
        database_name: the Glue database (``fruits_lake``).
        table_name: the features table.
        lake_location: ``s3://<bucket>/lake/``.
        readers_policy: managed policy to attach to Athena users (Glue read + S3 read of ``lake/``).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, bucket: s3.IBucket, database_name: str, writer_role: iam.IRole
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.database_name = database_name
        self.table_name = FEATURES_TABLE
        self.lake_location = f"s3://{bucket.bucket_name}/{r.LAKE_PREFIX}"
        glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database_name,
                description="Fruits! feature lake: Iceberg tables features, rejects, batches, erasures "
                "(data under lake/)",
                location_uri=self.lake_location,
            ),
        )
        arn = f"arn:{stack.partition}:glue:{stack.region}:{stack.account}"
        catalog_resources = [f"{arn}:catalog", f"{arn}:database/{database_name}"]
        table_resources = [f"{arn}:table/{database_name}/{name}" for name in LAKE_TABLES]
        writer_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[*GLUE_READ_ACTIONS, *GLUE_WRITE_ACTIONS],
                resources=[*catalog_resources, *table_resources],
            )
        )
        self.readers_policy = iam.ManagedPolicy(
            self,
            "LakeReaders",
            description="Read the Fruits! lake's Iceberg tables (Glue catalog + S3 lake/) from Athena",
            statements=[
                iam.PolicyStatement(
                    actions=[*GLUE_READ_ACTIONS, "glue:GetPartitions"],
                    resources=[*catalog_resources, *table_resources],
                ),
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{r.LAKE_PREFIX}*")]),
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{r.LAKE_PREFIX}*"]}},
                ),
            ],
        )
        acknowledge_object_prefixes(
            self.readers_policy, bucket.bucket_arn, [r.LAKE_PREFIX],
            "Iceberg data and metadata files have generated names; Athena readers get read-only access to lake/",
        )
