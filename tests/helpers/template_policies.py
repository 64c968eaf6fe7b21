"""The IAM policies of a synthesized role with the template's intrinsics resolved for a test account in eu-west-3.

``Ref`` / ``Fn::GetAtt .Arn`` of a resource resolve to the physical name / ARN the local run gives it (``names`` /
``arns``, e.g. the moto bucket ``fruits-data``), pseudo parameters to :data:`ACCOUNT`, ``aws`` and eu-west-3;
``Fn::Join`` and ``Fn::Sub`` are evaluated. A reference the maps do not name resolves to a placeholder that no
call matches, so a policy can never pass by accident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-west-3"
PSEUDO = {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::URLSuffix": "amazonaws.com"}


@dataclass(frozen=True)
class Resolver:
    """Logical id → physical name (``Ref``) and → ARN (``Fn::GetAtt [id, "Arn"]``)."""

    names: Mapping[str, str] = field(default_factory=dict)
    arns: Mapping[str, str] = field(default_factory=dict)

    def ref(self, logical_id: str) -> str:
        return PSEUDO.get(logical_id) or self.names.get(logical_id) or f"unresolved-ref-{logical_id}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn" and logical_id in self.arns:
            return self.arns[logical_id]
        return f"unresolved-{logical_id}.{attribute}"

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function evaluated (lists and dicts recursively)."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            return self.ref(value["Ref"])
        if "Fn::GetAtt" in value:
            return self.get_att(*value["Fn::GetAtt"])
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(self.resolve(p)) for p in parts)
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if "." in name:
                    return self.get_att(*name.split(".", 1))
                return self.ref(name)

            return re.sub(r"\$\{([^}]+)\}", substitute, text)
        return {k: self.resolve(v) for k, v in value.items()}


def role_policies(resources: Mapping[str, Any], role_id: str, resolver: Resolver) -> dict[str, dict[str, Any]]:
    """Every identity policy of role ``role_id``: inline ``Policies``, ``AWS::IAM::Policy`` and customer managed
    ``AWS::IAM::ManagedPolicy`` resources attached to it, resolved; name → document.

    Raises:
        ValueError: the role has an AWS managed policy (its statements are not in the template).
    """
    role = resources[role_id]["Properties"]
    if role.get("ManagedPolicyArns"):
        raise ValueError(f"{role_id} has AWS managed policies {role['ManagedPolicyArns']}: not evaluable offline")
    policies: dict[str, dict[str, Any]] = {}
    for policy in role.get("Policies", []):
        policies[f"{role_id}/{policy['PolicyName']}"] = resolver.resolve(policy["PolicyDocument"])
    for logical_id, resource in resources.items():
        attached = {"Ref": role_id} in resource.get("Properties", {}).get("Roles", [])
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and attached:
            policies[logical_id] = resolver.resolve(resource["Properties"]["PolicyDocument"])
    return policies


def function_roles(resources: Mapping[str, Any]) -> dict[str, str]:
    """Our handlers' role logical ids by handler module name (``ingest`` → ``IngestionIngestRole…``)."""
    roles = {}
    for function in resources.values():
        handler = function["Properties"].get("Handler", "") if function["Type"] == "AWS::Lambda::Function" else ""
        if handler.startswith("lambdas.handlers."):
            roles[handler.split(".")[2]] = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return roles
