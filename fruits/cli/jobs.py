"""``fruits start-job | status | reconcile``: the manual side of the ingestion pipeline.

    fruits start-job [--batch-id ID] [--dry-run]   flush pending images and start the next batch, or re-run ID;
                                                   --dry-run prints the exact start_job_run request as JSON
    fruits status [--json]                         pending images, batches, the running job run, quarantine, lake
    fruits reconcile                               record images missing from the manifest, re-drive batches

Settings come from the deployed stack's outputs (``--stack NAME``, default ``$FRUITS_STACK`` or ``Fruits``),
overridden by the same env vars as the Lambdas (docs/contracts.md); ``--endpoint-url URL`` sets
AWS_ENDPOINT_URL (the local moto server) and ``--region`` the AWS region. Every command calls
:mod:`lambdas.pipeline`, the code path the Lambdas run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from fruits.cli.errors import CliError
from fruits.cli.stack import add_stack_argument, resolve_environment
from fruits.cli.types import valid_batch_id

REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


def _endpoint(text: str) -> str:
    if not re.match(r"^https?://[^\s/]+", text):
        raise argparse.ArgumentTypeError(f"expected http(s)://host[:port], got {text!r}")
    return text


def _region(text: str) -> str:
    if not REGION.match(text):
        raise argparse.ArgumentTypeError(f"expected an AWS region such as eu-west-3, got {text!r}")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``start-job``, ``status`` and ``reconcile`` commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint-url", type=_endpoint, help="AWS endpoint (e.g. the local moto server)")
    common.add_argument("--region", type=_region, help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    add_stack_argument(common)

    start = subparsers.add_parser(
        "start-job", parents=[common], help="flush pending images and start the next job run, or re-run a batch",
        description="Flush pending images into a batch and start the next EMR Serverless job run.",
    )  # fmt: skip
    start.add_argument("--batch-id", type=valid_batch_id, help="re-run this batch (SEALED, SUCCEEDED or QUARANTINED)")
    start.add_argument("--dry-run", action="store_true", help="print the start_job_run request, change nothing")
    start.set_defaults(func=run_start_job)

    status = subparsers.add_parser(
        "status", parents=[common], help="pending images, batches by state, the running job run, quarantine, lake rows",
        description="What an operator asks first: pending images and the oldest one's age, batches by state with "
        "their job run ids and attempts, job runs with their batches and images, the running job run and its age, "
        "quarantined batches, and the lake's row "
        "counts (Iceberg snapshot summaries).",
    )  # fmt: skip
    status.add_argument("--json", action="store_true", help="print the status as JSON instead of tables")
    status.add_argument("--no-lake", action="store_true", help="skip the lake's row counts (no catalog access)")
    status.set_defaults(func=run_status)

    reconcile = subparsers.add_parser(
        "reconcile", parents=[common], help="record images missing from the manifest and re-drive stuck batches"
    )
    reconcile.set_defaults(func=run_reconcile)


def _pipeline(args: argparse.Namespace) -> Any:
    """The service on env settings, after applying --endpoint-url / --region; config errors → CliError."""
    from lambdas import aws
    from lambdas.config import SettingsError, get_settings, settings_from_env
    from lambdas.pipeline import get_pipeline

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    if args.region:
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = args.region
    if args.endpoint_url or args.region:  # clients cached for another endpoint / region must go
        get_settings.cache_clear()
        aws.reset_clients()
    environ, note = resolve_environment(args, os.environ, lambda: aws.client("cloudformation"))
    try:
        return get_pipeline(settings_from_env(environ))
    except SettingsError as err:
        raise CliError(f"{err} ({note})" if note else str(err)) from None


def _aws_errors(func: Any) -> Any:
    """Turn AWS / service errors into one-line :class:`CliError` messages."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ClientError as err:
            error = err.response.get("Error", {})
            raise CliError(f"{err.operation_name}: {error.get('Code')}: {error.get('Message')}") from None
        except BotoCoreError as err:
            raise CliError(str(err).splitlines()[0]) from None
        except (ValueError, RuntimeError) as err:
            raise CliError(str(err)) from None

    wrapper.__doc__ = func.__doc__
    return wrapper


@_aws_errors
def run_start_job(args: argparse.Namespace) -> int:
    """``start-job``: dry-run prints the request JSON; otherwise flush / re-run and report what started."""
    pipeline = _pipeline(args)
    if args.dry_run:
        print(json.dumps(pipeline.dry_run_request(args.batch_id), indent=2, sort_keys=True))
        return 0
    outcome = pipeline.start_job(args.batch_id)
    console = Console()
    for batch_id in outcome.sealed:
        console.print(f"sealed batch {batch_id}")
    for run in outcome.started:
        more = f": {len(run.batch_ids)} batches ({' '.join(run.batch_ids)}), {run.images} images"
        console.print(f"started job run {run.job_run_id} for batch {run.batch_id} (attempt {run.attempt})"
                      + (more if len(run.batch_ids) > 1 else ""), soft_wrap=True)  # fmt: skip
    if not outcome.started:
        holder = pipeline.table.get_slot().get("holder")
        console.print(f"no job run started ({'slot busy with batch ' + holder if holder else 'nothing sealed'})")
    return 0


@_aws_errors
def run_status(args: argparse.Namespace) -> int:
    """``status``: pending and the oldest pending age, batches by state, the running job run, quarantine, lake rows."""
    from fruits.cli.status import operator_status, render

    snapshot = operator_status(_pipeline(args), lake=not args.no_lake)
    if args.json:
        print(json.dumps(snapshot, indent=2, sort_keys=True, default=str))
        return 0
    render(snapshot, Console(width=max(100, Console().width)))
    return 0


@_aws_errors
def run_reconcile(args: argparse.Namespace) -> int:
    """``reconcile``: one summary line of what was repaired."""
    outcome = _pipeline(args).reconcile()
    print(
        f"listed {outcome.listed} objects, recorded {outcome.missing_recorded} missing images, "
        f"resumed {len(outcome.claiming_resumed)} claiming batches, sealed {len(outcome.sealed)} batches, "
        f"re-drove {len(outcome.redriven)} and started {len(outcome.started)} job runs"
        + (f", applied a lost {outcome.recovered.action} job run state" if outcome.recovered else "")
        + ("" if outcome.backfill is None or outcome.backfill.complete else "; listing paused, next run resumes"),
        file=sys.stdout,
    )
    return 0
