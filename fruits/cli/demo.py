"""`fruits demo` — run the whole loop locally on real photos (moto + local Spark + a lake on disk)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from fruits.local.demo import DemoConfig, DemoResult

from fruits.cli.errors import CliError
from fruits.cli.types import (
    add_engine_argument,
    add_precision_argument,
    existing_dir,
    non_negative_int,
    positive_float,
    positive_int,
    weights_source,
)

DEFAULT_IMAGES = Path("../shared/data/fruits-360-sample/Training")
REPO_ROOT = Path(__file__).resolve().parents[2]
FRUITS_360_HINT = (
    "Fruits-360 (MIT licence) is at https://github.com/Horea94/Fruit-Images-Dataset and on Kaggle "
    "(https://www.kaggle.com/datasets/moltean/fruits); pass its Training folder with --images DIR"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline locally on real photos (moto + local Spark)",
        description="Upload photos in waves to a local moto S3; SQS → ingest Lambda → DynamoDB manifest → "
        "threshold batches → EMR Serverless job runs executed by local Spark → Iceberg tables on disk.",
    )
    parser.add_argument("--images", type=existing_dir, default=None, help=f"photo folder (default {DEFAULT_IMAGES})")
    parser.add_argument("--lake", type=Path, default=Path("lake"), help="lake directory")
    parser.add_argument("--waves", type=positive_int, default=3, help="upload waves (back to back)")
    parser.add_argument("--arrival-rate", type=positive_float, default=None, metavar="R",
                        help="upload a Poisson stream of R photos/s instead of waves")
    parser.add_argument("--max-wait", type=non_negative_int, default=60, metavar="SECONDS",
                        help="seal pending photos older than this even below the threshold (BATCH_MAX_WAIT_SECONDS; "
                        "deployed default 900; 0 = off); default 60")
    parser.add_argument("--threshold", type=positive_int, default=500, help="pending images that seal a batch")
    parser.add_argument("--max-images", type=positive_int, default=1000, help="images per batch at most")
    parser.add_argument("--limit", type=positive_int, default=None, help="use only N photos (spread over classes)")
    parser.add_argument(
        "--weights",
        type=weights_source,
        default="imagenet",
        help="imagenet (falls back to random, loudly, when offline) | random[:SEED] | PATH | s3://…",
    )
    parser.add_argument("--pca-k", type=positive_int, default=150, help="PCA components kept")
    add_precision_argument(parser)
    add_engine_argument(parser)
    parser.add_argument("--master", default="local[*]", help="Spark master for job runs")
    parser.add_argument("--no-report", action="store_true", help="skip report.png")
    parser.set_defaults(func=run)


def default_images() -> Path:
    """The shared Fruits-360 Training folder, relative to the current directory or the repo root."""
    for base in (Path.cwd(), REPO_ROOT):
        candidate = (base / DEFAULT_IMAGES).resolve()
        if candidate.is_dir():
            return candidate
    raise CliError(f"no --images given and {DEFAULT_IMAGES} not found. {FRUITS_360_HINT}", exit_code=2)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the summary table; exit 0 when every photo was processed."""
    from fruits.local.demo import DemoConfig, run_demo  # heavy imports only when the command runs

    console = Console()
    config = DemoConfig(
        images=(args.images or default_images()).resolve(),
        lake=args.lake,
        waves=args.waves,
        threshold=args.threshold,
        max_images=args.max_images,
        limit=args.limit,
        weights=args.weights,
        pca_k=args.pca_k,
        precision=args.precision,
        calibration=args.calibration,
        engine=args.engine,
        master=args.master,
        report=not args.no_report,
        arrival_rate=args.arrival_rate,
        max_wait=args.max_wait,
    )
    try:
        result = run_demo(config, console)
    except (FileNotFoundError, FileExistsError) as err:
        raise CliError(str(err), exit_code=2) from err
    console.print(summary_table(result, config))
    processed = result.featurized + result.rejected
    if processed != result.uploaded:
        console.print(f"[red]only {processed} of {result.uploaded} photos were processed[/]")
        return 1
    return 0


def summary_table(result: DemoResult, config: DemoConfig) -> Table:
    """The end-of-demo summary (counts, PCA version, explained variance, throughput)."""
    last = result.batch_reports[-1] if result.batch_reports else {}
    models = sorted({r.get("model_id", "?") for r in result.batch_reports})
    succeeded = sum(1 for run in result.job_runs if run.state == "SUCCESS")
    table = Table(title="fruits demo — summary", show_header=False)
    rows = [
        ("photos uploaded", f"{result.uploaded}"),
        ("recorded in the manifest", f"{result.recorded}"),
        ("manifest by status", ", ".join(f"{k}={v}" for k, v in sorted(result.manifest_counts.items())) or "-"),
        ("batches (job runs ok / all)", f"{len(result.batch_reports)} ({succeeded} / {len(result.job_runs)})"),
        ("featurized", f"{result.featurized}"),
        ("rejected", f"{result.rejected}"),
        ("model_id", ", ".join(models) or "-"),
        ("PCA version", f"{last.get('pca_version', '-')}"),
        (
            f"variance explained by k={last.get('pca_k', config.pca_k)}",
            f"{last['explained_variance_k']:.1%}" if "explained_variance_k" in last else "-",
        ),
        ("images/s (job runs)", f"{result.images_per_second:.1f}"),
        ("job run seconds (mean / longest)", _run_seconds(result)),
        ("time to feature p50 / p95 / max", _time_to_feature(result.time_to_feature)),
        ("arrivals", _arrivals(result, config)),
        ("wall time", f"{result.seconds_total:.0f} s: setup {result.seconds_setup:.0f} s, uploads "
                      f"{result.seconds_upload:.0f} s, job runs {result.seconds_processing:.0f} s (overlapping)"),
        ("lake", f"{config.lake.resolve()}"),
        ("report", f"{result.report_png or '-'}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _time_to_feature(stats: dict) -> str:
    """``p50 / p95 / max`` seconds from upload event to committed feature row (rows with an event time)."""
    if not stats.get("images"):
        return "-"
    return f"{stats['p50']:.0f} / {stats['p95']:.0f} / {stats['max']:.0f} s over {stats['images']} photos"


def _arrivals(result: DemoResult, config: DemoConfig) -> str:
    if config.arrival_rate is None:
        return f"{config.waves} waves, {result.upload_rate:.0f} photos/s; max wait {config.max_wait} s"
    return (f"Poisson {config.arrival_rate:g} photos/s (achieved {result.upload_rate:.2f}); "
            f"max wait {config.max_wait} s")


def _run_seconds(result: DemoResult) -> str:
    seconds = [run.seconds for run in result.job_runs]
    return f"{sum(seconds) / len(seconds):.0f} / {max(seconds):.0f} s" if seconds else "-"
