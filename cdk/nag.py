"""cdk-nag (3.x) wiring: the AwsSolutions pack on every synth, and acknowledgements with their reasons.

cdk-nag 3 is a CDK policy-validation plugin: ``Validations.of(app).add_plugins(AwsSolutionsChecks(app))``
makes ``app.synth()`` fail on any unacknowledged finding. A finding is acknowledged on a construct with
``Validations.of(construct).acknowledge(Acknowledgment(id=..., reason=...))``; findings that carry a
detail (e.g. IAM wildcards) are acknowledged one by one as ``RuleId[Detail]``.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

# Action groups that aws-cdk-lib's S3 grant_* methods use (e.g. grant_read → s3:GetObject*, s3:GetBucket*,
# s3:List*; grant_put/grant_write → s3:Abort*; grant_read_write/grant_delete → s3:DeleteObject*).
S3_GRANT_ACTION_GROUPS = ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:Abort*", "s3:DeleteObject*")


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``construct`` (and its children).

    Raises:
        ValueError: the rule id is not an AwsSolutions rule or the reason is too short to mean anything.
    """
    if not rule_id.startswith("AwsSolutions-"):
        raise ValueError(f"not an AwsSolutions rule id: {rule_id!r}")
    if len(reason.strip()) < 20:
        raise ValueError(f"acknowledgement of {rule_id} needs a real reason, got {reason!r}")
    Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def add_nag_checks(app: App) -> AwsSolutionsChecks:
    """Register the AWS Solutions rule pack so every ``app.synth()`` is checked; returns the pack."""
    pack = AwsSolutionsChecks(app)
    Validations.of(app).add_plugins(pack)
    return pack


def token_ref(scope: IConstruct, token: str) -> str:
    """The ``<LogicalId.Attr>`` (or ``<LogicalId>``) spelling cdk-nag uses for ``token`` in a finding id.

    Raises:
        ValueError: the token is not a plain ``Ref``/``Fn::GetAtt``.
    """
    resolved = Stack.of(scope).resolve(token)
    if isinstance(resolved, dict) and "Fn::GetAtt" in resolved:
        logical_id, attribute = resolved["Fn::GetAtt"]
        return f"<{logical_id}.{attribute}>"
    if isinstance(resolved, dict) and "Ref" in resolved:
        return f"<{resolved['Ref']}>"
    raise ValueError(f"cannot name token {token!r} for cdk-nag: it resolves to {resolved!r}")


def acknowledge_s3_grant_actions(construct: IConstruct, actions: Iterable[str] = S3_GRANT_ACTION_GROUPS) -> None:
    """Acknowledge the IAM5 action wildcards that aws-cdk-lib's S3 ``grant_*`` methods emit."""
    for action in actions:
        acknowledge(
            construct,
            f"AwsSolutions-IAM5[Action::{action}]",
            f"{action} is the action group of aws-cdk-lib's S3 grant_* methods; the statement's resources are "
            "limited to this project's bucket and key prefixes.",
        )


def acknowledge_object_prefixes(construct: IConstruct, bucket_arn: str, prefixes: Iterable[str], why: str) -> None:
    """Acknowledge IAM5 findings for ``<bucket>/<prefix>*`` object resources (keys are unknown in advance)."""
    for prefix in prefixes:
        acknowledge(
            construct,
            f"AwsSolutions-IAM5[Resource::{token_ref(construct, bucket_arn)}/{prefix}*]",
            f"Object keys under {prefix} are created at run time; access is limited to that prefix: {why}",
        )


# Singleton constructs that aws-cdk-lib adds at stack level (ids are fixed by the library).
_LIBRARY_SINGLETONS = {
    "BucketNotificationsHandler": [
        (
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "aws-cdk-lib's S3 bucket-notifications handler (a deploy-time custom resource) has its role built by the "
            "library with the basic execution managed policy; it only writes its own logs.",
        ),
    ],
    "Custom::CDKBucketDeployment": [
        (
            "AwsSolutions-L1",
            "The BucketDeployment provider's runtime is chosen and maintained by aws-cdk-lib, not by this project.",
        ),
    ],
}


def acknowledge_library_singletons(stack: Stack) -> None:
    """Acknowledge the findings on aws-cdk-lib's own deploy-time helper functions in ``stack``.

    The BucketDeployment provider runs with a role of ours (``Processing``: ``code/`` only, explicit actions), so
    only its runtime is acknowledged here.
    """
    for child in stack.node.children:
        for prefix, findings in _LIBRARY_SINGLETONS.items():
            if child.node.id.startswith(prefix):
                for rule_id, reason in findings:
                    acknowledge(child, rule_id, reason)
