"""``fruits backfill [--prefix P]``: record every object of the data bucket missing from the manifest, resumably.

    fruits backfill [--prefix images/Apple/] [--page-size 1000] [--max-pages N] [--restart] [--stack NAME]

Pages through ListObjectsV2 with the cursor ``reconcile`` uses (one per prefix, stored in the manifest table):
an interrupted run (Ctrl-C, ``--max-pages``, a lost connection) resumes where it stopped; a completed pass
deletes the cursor. Settings and ``--stack`` / ``--endpoint-url`` / ``--region`` as for ``fruits status``.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from fruits.cli.jobs import _aws_errors, _endpoint, _pipeline, _region
from fruits.cli.stack import add_stack_argument
from fruits.cli.types import bounded_int, positive_int
from lambdas.service.backfill import MAX_KEYS, BackfillOutcome


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``backfill`` command."""
    parser = subparsers.add_parser(
        "backfill",
        help="record the bucket's objects missing from the manifest, page by page, resuming a stopped pass",
        description="Record every image under the prefix (default IMAGES_PREFIX) that the manifest lacks. The "
        "position is stored after each page in the manifest table, so an interrupted run resumes where it "
        "stopped; the pass that reaches the end deletes it. Recording is idempotent: nothing is recorded twice.",
    )
    parser.add_argument("--prefix", help="key prefix to list, inside IMAGES_PREFIX (e.g. images/Apple/)")
    parser.add_argument("--page-size", type=bounded_int(1, MAX_KEYS), default=MAX_KEYS,
                        help="ListObjectsV2 MaxKeys per page")
    parser.add_argument("--max-pages", type=positive_int, help="stop after this many pages (resume with a next run)")
    parser.add_argument("--restart", action="store_true", help="drop the prefix's stored position: start a new pass")
    parser.add_argument("--endpoint-url", type=_endpoint, help="AWS endpoint (e.g. the local moto server)")
    parser.add_argument("--region", type=_region, help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    add_stack_argument(parser)
    parser.set_defaults(func=run_backfill)


@_aws_errors
def run_backfill(args: argparse.Namespace) -> int:
    """``backfill``: a progress line per page, then one summary line; exit 0 (also when stopped by --max-pages)."""
    pipeline = _pipeline(args)
    prefix = pipeline.backfill_prefix(args.prefix)  # ValueError → one-line error before any listing
    if args.restart:
        pipeline.table.clear_cursor(prefix)
    stored = pipeline.table.cursor(prefix)
    console = Console(stderr=True)
    if stored is not None:
        console.print(f"resuming the pass over {prefix} started {stored.pass_started_at:%Y-%m-%d %H:%M:%S} UTC "
                      f"after {stored.listed} objects ({stored.pages} pages)")  # fmt: skip
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"listing {prefix}", total=None)

        def on_page(outcome: BackfillOutcome) -> None:
            progress.update(task, description=f"{prefix}: {outcome.pages} pages, {outcome.listed} objects listed, "
                                              f"{outcome.recorded} recorded")  # fmt: skip

        outcome = pipeline.backfill(prefix, max_pages=args.max_pages, page_size=args.page_size, on_page=on_page)
    state = "pass complete" if outcome.complete else "stopped at the page limit: run again to resume"
    print(
        f"{prefix}: listed {outcome.listed} objects in {outcome.pages} pages, recorded {outcome.recorded} missing "
        f"images, skipped {outcome.skipped} non-images; {state}"
    )
    return 0
