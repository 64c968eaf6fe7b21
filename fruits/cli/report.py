"""``fruits report --lake L [--model-id ID] [-o FILE]``: the report PNG of any lake (demo, featurize or AWS)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fruits.cli.errors import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    parser = subparsers.add_parser(
        "report", help="draw the lake's report PNG: explained variance, 2-D projection, per-batch stages and images/s",
        description="One PNG for any lake: explained variance of the latest PCA version (zoomed where it moves, with "
        "the cumulative curve), the feature vectors on its first two components by label, seconds per stage and "
        "images/s per batch, and time-to-feature when the rows carry event times.",
    )  # fmt: skip
    parser.add_argument("--lake", default="lake", help="lake root: a local directory or s3://bucket/lake")
    parser.add_argument("--catalog", default=None,
                        help="Iceberg catalog: sql:PATH | glue[:DATABASE] (default: sql:<lake>/catalog.db)")
    parser.add_argument("--model-id", help="model_id to draw (default: the one with the most feature rows)")
    parser.add_argument("-o", "--output", type=Path, help="PNG to write (default: <lake>/report.png)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw the report and print where it is; a lake with nothing to draw is a one-line error."""
    from fruits.local.report import write_report_png

    try:
        path = write_report_png(args.lake, args.model_id, args.output, args.catalog)
    except (FileNotFoundError, ValueError) as err:
        raise CliError(str(err)) from None
    print(f"wrote {path}")
    return 0
