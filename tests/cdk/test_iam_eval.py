"""cdk.iam_eval decides like IAM on allow / deny / condition cases, where moto's IAMPolicy does not."""

from __future__ import annotations

import json

import pytest

from cdk.iam_eval import ALLOW, DENY, IMPLICIT_DENY, Call, evaluate

BUCKET = "arn:aws:s3:::fruits-data"
LIST_IMAGES = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": BUCKET,
               "Condition": {"StringLike": {"s3:prefix": ["images/*"]}}}
LIST_LAKE = {**LIST_IMAGES, "Condition": {"StringLike": {"s3:prefix": ["lake/*"]}}}
READ_LAKE = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"], "Resource": f"{BUCKET}/lake/*"}
POLICIES = {"job": {"Statement": [LIST_IMAGES, LIST_LAKE, READ_LAKE]}}


@pytest.mark.parametrize(
    ("call", "effect"),
    [
        (Call("s3:GetObject", f"{BUCKET}/lake/features/data/1.parquet"), ALLOW),
        (Call("S3:getobject", f"{BUCKET}/lake/x"), ALLOW),  # actions are case-insensitive
        (Call("s3:GetObject", f"{BUCKET}/images/x.jpg"), IMPLICIT_DENY),  # resource outside the prefix
        (Call("s3:GetObject", f"{BUCKET}/Lake/x"), IMPLICIT_DENY),  # resources are case-sensitive
        (Call("s3:PutObject", f"{BUCKET}/lake/x"), IMPLICIT_DENY),  # action not granted
        (Call("s3:ListBucket", BUCKET, {"s3:prefix": "lake/features/"}), ALLOW),  # second statement allows
        (Call("s3:ListBucket", BUCKET, {"s3:prefix": "images/"}), ALLOW),
        (Call("s3:ListBucket", BUCKET, {"s3:prefix": "logs/"}), IMPLICIT_DENY),  # condition fails everywhere
        (Call("s3:ListBucket", BUCKET), IMPLICIT_DENY),  # no prefix in the request: StringLike fails
    ],
)
def test_allow_and_implicit_deny(call: Call, effect: str) -> None:
    assert evaluate(POLICIES, call).effect == effect


def test_explicit_deny_wins_and_the_deciding_statements_are_named() -> None:
    deny_tls = {"Effect": "Deny", "Action": "s3:*", "Resource": [BUCKET, f"{BUCKET}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    policies = {**POLICIES, "tls": {"Statement": [deny_tls]}}
    plain_http = Call("s3:GetObject", f"{BUCKET}/lake/x", {"aws:SecureTransport": "false"})
    assert evaluate(policies, plain_http).effect == DENY
    assert evaluate(policies, plain_http).statements == ("tls#0",)
    tls = Call("s3:GetObject", f"{BUCKET}/lake/x", {"aws:SecureTransport": "true"})
    assert evaluate(policies, tls).statements == ("job#2",)


def test_condition_operators_if_exists_null_not_and_arn() -> None:
    st = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:eu-west-3:1:q",
          "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:events:eu-west-3:1:rule/r"}}}
    policies = {"p": {"Statement": [st]}}
    ok = Call("sqs:SendMessage", "arn:aws:sqs:eu-west-3:1:q", {"aws:SourceArn": "arn:aws:events:eu-west-3:1:rule/r"})
    assert evaluate(policies, ok).effect == ALLOW
    other = Call(ok.action, ok.resource, {"aws:SourceArn": "arn:aws:events:eu-west-3:1:rule/other"})
    assert evaluate(policies, other).effect == IMPLICIT_DENY
    if_exists = {**st, "Condition": {"StringEqualsIfExists": {"aws:SourceAccount": "1"}}}
    assert evaluate({"p": {"Statement": [if_exists]}}, Call(ok.action, ok.resource)).effect == ALLOW
    null = {**st, "Condition": {"Null": {"aws:SourceArn": "true"}}}
    assert evaluate({"p": {"Statement": [null]}}, Call(ok.action, ok.resource)).effect == ALLOW
    assert evaluate({"p": {"Statement": [null]}}, ok).effect == IMPLICIT_DENY
    not_like = {**st, "Condition": {"StringNotLike": {"s3:prefix": "logs/*"}}}
    assert evaluate({"p": {"Statement": [not_like]}}, Call(ok.action, ok.resource, {"s3:prefix": "a/"})).allowed
    with pytest.raises(ValueError, match="NumericLessThan"):
        evaluate({"p": {"Statement": [{**st, "Condition": {"NumericLessThan": {"k": "1"}}}]}}, ok)


def test_not_action_and_wildcards() -> None:
    st = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:dynamodb:eu-west-3:1:table/t*"}
    policies = {"p": {"Statement": [st]}}
    assert evaluate(policies, Call("dynamodb:Query", "arn:aws:dynamodb:eu-west-3:1:table/t/index/gsi1")).allowed
    assert not evaluate(policies, Call("iam:PassRole", "arn:aws:dynamodb:eu-west-3:1:table/t")).allowed
    single = {"Effect": "Allow", "Action": "s3:Get?bject", "Resource": "*"}
    assert evaluate({"p": {"Statement": [single]}}, Call("s3:GetObject", "arn:aws:s3:::b/k")).allowed


def test_moto_iam_policy_would_have_allowed_a_listing_outside_the_prefix() -> None:
    # GIVEN moto's own evaluator (why cdk.iam_eval exists): it ignores StringLike and matches actions by case
    from moto.iam.access_control import IAMPolicy, PermissionResult

    moto_policy = IAMPolicy(json.dumps({"Version": "2012-10-17", "Statement": [LIST_IMAGES]}))
    # THEN it permits a logs/ listing that IAM denies, and misses a differently-cased action that IAM allows
    assert moto_policy.is_action_permitted("s3:ListBucket", BUCKET, None, {"s3:prefix": "logs/"}) == (
        PermissionResult.PERMITTED
    )
    logs = Call("s3:ListBucket", BUCKET, {"s3:prefix": "logs/"})
    assert evaluate({"p": {"Statement": [LIST_IMAGES]}}, logs).effect == IMPLICIT_DENY
