"""The DynamoDB manifest table: one item per image and per batch (shapes owned by ``lambdas/dal/``)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from lambdas import resources as r


class ManifestTable(Construct):
    """On-demand table ``pk``/``sk`` with GSI ``gsi1`` (``gsi1pk``/``gsi1sk``), PITR, KMS encryption.

    Attributes:
        table: the manifest table.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        string = dynamodb.AttributeType.STRING
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=r.TABLE_PARTITION_KEY, type=string),
            sort_key=dynamodb.Attribute(name=r.TABLE_SORT_KEY, type=string),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,  # the manifest is the record of what was processed
        )
        self.table.add_global_secondary_index(
            index_name=r.GSI1_NAME,
            partition_key=dynamodb.Attribute(name=r.GSI1_PARTITION_KEY, type=string),
            sort_key=dynamodb.Attribute(name=r.GSI1_SORT_KEY, type=string),
            projection_type=dynamodb.ProjectionType.ALL,
        )
