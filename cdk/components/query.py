"""Query: a Glue Data Catalog database and table over ``lake/features/`` so Athena can read the features.

Partitions are found by partition projection (``batch_id`` injected from the query's WHERE clause), so no
crawler and no ``MSCK REPAIR`` are needed when the job appends a partition.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambdas import resources as r

# Parquet schema of lake/features/ (contracts.md, "Lake layout"), as Hive/Glue types.
FEATURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("image_uri", "string"),
    ("label", "string"),
    ("content_sha256", "string"),
    ("width", "int"),
    ("height", "int"),
    ("features", "array<float>"),
    ("pca", "array<float>"),
    ("pca_version", "int"),
    ("model_id", "string"),
    ("ingested_at", "timestamp"),
)
PARTITION_COLUMNS: tuple[tuple[str, str], ...] = (("batch_id", "string"),)
FEATURES_TABLE = "features"


class Query(Construct):
    """Glue database + ``features`` table (Parquet, partition projection on ``batch_id``).

    Attributes:
        database_name: the Glue database.
        table_name: the features table.
        features_location: ``s3://<bucket>/lake/features/``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.IBucket, database_name: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.database_name = database_name
        self.table_name = FEATURES_TABLE
        self.features_location = f"s3://{bucket.bucket_name}/{r.LAKE_PREFIX}features/"
        database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database_name, description="Fruits! feature lake (Parquet under lake/)"
            ),
        )
        self.table = glue.CfnTable(
            self,
            "FeaturesTable",
            catalog_id=stack.account,
            database_name=database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=FEATURES_TABLE,
                description="ResNet50 feature vectors + PCA projections, one partition per batch",
                table_type="EXTERNAL_TABLE",
                parameters={
                    "classification": "parquet",
                    "EXTERNAL": "TRUE",
                    "projection.enabled": "true",
                    "projection.batch_id.type": "injected",
                    "storage.location.template": f"{self.features_location}batch_id=${{batch_id}}/",
                },
                partition_keys=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in PARTITION_COLUMNS],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=self.features_location,
                    input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                        parameters={"serialization.format": "1"},
                    ),
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in FEATURE_COLUMNS],
                ),
            ),
        )
        self.table.node.add_dependency(database)
