"""``--stack NAME``: the settings of a deployed stack, read from its CloudFormation outputs.

The stack exports every setting of the Lambdas' environment as an output named by
:func:`lambdas.config.stack_output_key` (``DATA_BUCKET`` → ``SettingDataBucket``; docs/contracts.md, "Stack
outputs"). AWS-facing commands merge them under the environment: an explicit, non-empty environment variable wins.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping

from botocore.exceptions import ClientError

from fruits.cli.errors import CliError
from lambdas.config import REQUIRED_SETTING_NAMES, SETTING_NAMES, stack_output_key

DEFAULT_STACK = "Fruits"
STACK_ENV = "FRUITS_STACK"


def add_stack_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--stack NAME`` (default: ``$FRUITS_STACK``, else ``Fruits``)."""
    parser.add_argument(
        "--stack",
        metavar="NAME",
        help=f"CloudFormation stack whose outputs give the settings (default: ${STACK_ENV} or {DEFAULT_STACK}); "
        "environment variables that are set win",
    )


def stack_name(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> tuple[str, bool]:
    """``(name, explicit)``: ``--stack``, else ``$FRUITS_STACK``, else ``Fruits`` (``explicit`` False)."""
    if getattr(args, "stack", None):
        return args.stack, True
    if environ.get(STACK_ENV):
        return environ[STACK_ENV], True
    return DEFAULT_STACK, False


def stack_settings(name: str, cloudformation: object) -> dict[str, str]:
    """Settings env vars → values from stack ``name``'s outputs (only outputs that map to a setting).

    Raises ``LookupError`` when the stack does not exist, ``botocore`` ``ClientError`` for other AWS errors.
    """
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]  # type: ignore[attr-defined]
    except ClientError as err:
        if "does not exist" in str(err.response.get("Error", {}).get("Message", "")):
            raise LookupError(f"stack {name!r} does not exist") from None
        raise
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
    return {env: outputs[stack_output_key(env)] for env in SETTING_NAMES if stack_output_key(env) in outputs}


def resolve_environment(
    args: argparse.Namespace, environ: Mapping[str, str], cloudformation_factory: Callable[[], object]
) -> tuple[dict[str, str], str | None]:
    """``(environment, note)``: the stack's outputs overridden by the variables that are set, and a one-line note
    when the default stack was looked for and not found (for the "missing setting" error).

    The stack is read when named (``--stack`` / ``$FRUITS_STACK``), or when the environment lacks a required
    setting (then the default stack ``Fruits``). Raises :class:`CliError` (one line) when a named stack is missing.
    """
    name, explicit = stack_name(args, environ)
    present = {key: value for key, value in environ.items() if value != ""}
    if not explicit and all(key in present for key in REQUIRED_SETTING_NAMES):
        return dict(environ), None
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "the default region"
    try:
        from_stack = stack_settings(name, cloudformation_factory())
    except LookupError:
        hint = f"stack {name!r} not found in {region}: deploy it (cdk deploy), pass --stack NAME or set {STACK_ENV}"
        if explicit:
            raise CliError(hint) from None
        return dict(environ), hint
    return {**from_stack, **present}, None
