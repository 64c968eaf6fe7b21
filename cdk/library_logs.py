"""Log retention for aws-cdk-lib's own deploy-time functions that take no log group (the S3 bucket-notifications
handler): a log group of ours with the stack's retention, named in the function's ``LoggingConfig``."""

from __future__ import annotations

from aws_cdk import CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs

# Stack-level singletons aws-cdk-lib creates as plain AWS::Lambda::Function resources (ids fixed by the library).
LIBRARY_FUNCTION_PREFIXES = ("BucketNotificationsHandler",)


def retain_library_function_logs(stack: Stack, retention: logs.RetentionDays) -> list[logs.LogGroup]:
    """Give each library singleton function of ``stack`` a log group with ``retention``.

    Without it Lambda creates ``/aws/lambda/<name>`` on first invocation, kept forever. The function's
    ``LoggingConfig.LogGroup`` (Lambda advanced logging controls) names our group; its role (the library's basic
    execution policy) may already write to any group.

    Returns:
        The log groups created (one per singleton found).
    """
    created = []
    for child in list(stack.node.children):
        if not child.node.id.startswith(LIBRARY_FUNCTION_PREFIXES):
            continue
        function = child.node.try_find_child("Resource")
        if not isinstance(function, CfnResource) or function.cfn_resource_type != "AWS::Lambda::Function":
            continue
        log_group = logs.LogGroup(
            stack, f"{child.node.id}Logs", retention=retention, removal_policy=RemovalPolicy.DESTROY
        )
        function.add_property_override("LoggingConfig.LogGroup", log_group.log_group_name)
        created.append(log_group)
    return created
