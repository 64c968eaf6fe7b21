"""Offline evaluation of an AWS API call against identity-based IAM policies (the subset our roles use).

Written here because no maintained Python evaluator fits: moto 5.2's ``moto.iam.access_control.IAMPolicy`` ignores
every condition operator but ``StringEquals`` (a ``StringLike`` ``s3:prefix`` condition passes any prefix), matches
actions case-sensitively and lets a non-matching condition of one Allow statement deny outright what another Allow
statement permits (``tests/cdk/test_iam_eval.py`` shows each); policyuniverse and parliament parse and lint
policies but evaluate no request.

Semantics follow the IAM User Guide, "Policy evaluation logic" (identity-based policies, one account): an explicit
Deny wins, else any Allow, else implicit deny. Elements: ``Action``/``NotAction`` (case-insensitive, ``*`` and
``?`` wildcards), ``Resource``/``NotResource`` (case-sensitive wildcards), ``Condition`` with the operators
``String[Not]Equals``, ``String[Not]Like``, ``Arn[Not]Equals``, ``Arn[Not]Like``, ``Bool``, ``Null`` and their
``...IfExists`` forms (IAM User Guide, "IAM JSON policy elements: Condition operators"). Several keys / operators
in one Condition block are ANDed, several values of one key ORed; a key missing from the request context fails
every operator but ``...IfExists`` and ``Null``. An unknown operator raises instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DENY, ALLOW, IMPLICIT_DENY = "explicit_deny", "allow", "implicit_deny"
OPERATORS = frozenset({
    "StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase", "ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike", "Bool", "Null",
})  # each also with the IfExists suffix


@dataclass(frozen=True)
class Call:
    """One AWS request as IAM sees it: ``action`` (``service:Operation``), ``resource`` (an ARN) and the request
    context keys its statements may test (e.g. ``{"s3:prefix": "lake/"}``)."""

    action: str
    resource: str
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The outcome of one call: ``effect`` (:data:`ALLOW`, :data:`DENY` or :data:`IMPLICIT_DENY`) and the ids of
    the statements that allowed (or denied) it (``<policy name>#<index>``)."""

    effect: str
    statements: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.effect == ALLOW


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _matches(patterns: Any, value: str, *, ignore_case: bool) -> bool:
    return any(_wildcard(str(p), ignore_case=ignore_case).match(value) for p in _as_list(patterns))


def _operator_holds(operator: str, expected: list[str], actual: list[str]) -> bool:
    """One operator over one key's values; ``actual`` is non-empty here (missing keys are handled by the caller)."""
    negated = "Not" in operator
    base = operator.replace("Not", "")
    if base in ("StringEquals", "ArnEquals"):
        hit = any(a == e for a in actual for e in expected)
    elif base in ("StringEqualsIgnoreCase",):
        hit = any(a.lower() == e.lower() for a in actual for e in expected)
    elif base in ("StringLike", "ArnLike"):
        hit = any(_matches(expected, a, ignore_case=False) for a in actual)
    elif base == "Bool":
        hit = any(a.lower() == e.lower() for a in actual for e in expected)
    else:
        raise ValueError(f"condition operator {operator!r} is not supported by this evaluator")
    return not hit if negated else hit


def _conditions_hold(block: Mapping[str, Mapping[str, Any]], context: Mapping[str, str | list[str]]) -> bool:
    for raw_operator, keys in block.items():
        if_exists = raw_operator.endswith("IfExists")
        operator = raw_operator.removesuffix("IfExists")
        if operator not in OPERATORS:
            raise ValueError(f"condition operator {raw_operator!r} is not supported by this evaluator")
        for key, expected in keys.items():
            present = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            expected_values = [str(e) for e in _as_list(expected)]
            if operator == "Null":  # "true": the key must be absent
                if (present is None) != (expected_values[0].lower() == "true"):
                    return False
                continue
            if present is None:
                if if_exists:
                    continue
                return False
            if not _operator_holds(operator, expected_values, [str(v) for v in _as_list(present)]):
                return False
    return True


def statement_applies(statement: Mapping[str, Any], call: Call) -> bool:
    """True when ``statement``'s action, resource and condition elements all match ``call`` (effect aside)."""
    if "Action" in statement:
        if not _matches(statement["Action"], call.action, ignore_case=True):
            return False
    elif not ("NotAction" in statement and not _matches(statement["NotAction"], call.action, ignore_case=True)):
        return False
    if "Resource" in statement:
        if not _matches(statement["Resource"], call.resource, ignore_case=False):
            return False
    elif "NotResource" in statement:
        if _matches(statement["NotResource"], call.resource, ignore_case=False):
            return False
    else:
        return False  # identity policies name their resources
    return _conditions_hold(statement.get("Condition", {}), call.context)


def evaluate(policies: Mapping[str, Mapping[str, Any]], call: Call) -> Decision:
    """Evaluate ``call`` against named policy documents (``name -> {"Statement": [...]}``).

    Returns:
        :class:`Decision`: explicit deny if any applying Deny statement, else allow if any applying Allow, else
        implicit deny; with the ids of the statements that decided.

    Raises:
        ValueError: a statement uses a condition operator this evaluator does not implement.
    """
    allows, denies = [], []
    for name, document in policies.items():
        for index, statement in enumerate(_as_list(document.get("Statement", []))):
            if statement_applies(statement, call):
                (denies if statement.get("Effect") == "Deny" else allows).append(f"{name}#{index}")
    if denies:
        return Decision(DENY, tuple(denies))
    if allows:
        return Decision(ALLOW, tuple(allows))
    return Decision(IMPLICIT_DENY)


def statement_ids(policies: Mapping[str, Mapping[str, Any]]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Every ``(<policy name>#<index>, statement)`` of ``policies`` (to report the statements no call used)."""
    for name, document in policies.items():
        for index, statement in enumerate(_as_list(document.get("Statement", []))):
            yield f"{name}#{index}", statement
