"""`fruits demo`: the whole pipeline on one machine — the embedded default.

moto server (S3, SQS, DynamoDB, IAM, EMR Serverless) with the CDK app's resources. Photos are uploaded under the
images prefix on a thread of their own (in waves as fast as S3 takes them, or as a Poisson stream of
``--arrival-rate`` photos/s) while the main thread does what AWS does meanwhile: S3 notifications land in SQS and
the queue is polled into the real ``ingest`` handler as the Lambda event source mapping would; the real ``tick``
handler runs every ``tick_seconds`` (sealing images older than the max wait); sealed batches start job runs
through the real ``start_job_run`` call; :class:`LocalEmrRunner` executes one job run at a time with the real Spark
entry point on ``local[*]`` and delivers the state-change event to the real ``job_state`` handler, so uploads,
ingestion and featurization overlap. In waves mode the real ``flush`` handler seals the remainder once every photo
is recorded. The lake is a local directory."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from fruits.local.arrivals import UploadStream
from fruits.local.emr_runner import JobRunOutcome, LocalEmrRunner, temp_work_dir
from fruits.local.images import list_images
from fruits.local.lambda_runtime import LocalLambdaContext, drain_queue, poll_queue_once
from fruits.local.moto_server import moto_server
from fruits.local.progress import progress_bars
from fruits.local.provision import lambda_environment, provision
from lambdas.resources import REGION

LAKE_MARKER = ".fruits-demo-lake"
UNRECORDED_GRACE_SECONDS = 30.0  # nothing left to do but uploads not recorded yet: give SQS this long


@dataclass(frozen=True)
class DemoConfig:
    """Options of one demo run (see ``fruits demo --help``)."""

    images: Path
    lake: Path
    waves: int = 3
    threshold: int = 500
    max_images: int = 1000
    limit: int | None = None
    weights: str = "imagenet"
    pca_k: int = 150
    precision: str = "float32"
    calibration: str | None = None  # int8: calibration folder/manifest (None: the images folder)
    engine: str = ""  # empty: the job's default engine for this machine (spark_jobs.featurize.engines.default_engine)
    master: str = "local[*]"
    report: bool = True
    arrival_rate: float | None = None  # photos/s of a Poisson stream; None: `waves` bursts as fast as S3 takes them
    max_wait: int = 60  # BATCH_MAX_WAIT_SECONDS of the demo's Lambdas (deployed default 900)
    job_max_images: int | None = None  # JOB_MAX_IMAGES of the demo's Lambdas (None: the deployed default, 20,000)
    tick_seconds: float = 2.0  # period of the local tick schedule (deployed: every minute)
    seed: int = 0  # of the Poisson arrival times


@dataclass
class DemoResult:
    """What the demo did, for the summary table and for tests."""

    uploaded: int = 0
    recorded: int = 0
    job_runs: list[JobRunOutcome] = field(default_factory=list)
    batch_reports: list[dict[str, Any]] = field(default_factory=list)
    manifest_counts: dict[str, int] = field(default_factory=dict)
    seconds_total: float = 0.0
    seconds_processing: float = 0.0
    seconds_upload: float = 0.0
    seconds_setup: float = 0.0
    upload_rate: float = 0.0
    time_to_feature: dict[str, Any] = field(default_factory=dict)
    report_png: Path | None = None

    @property
    def featurized(self) -> int:
        """Images featurized across all batch reports."""
        return sum(int(r["counts"]["featurized"]) for r in self.batch_reports)

    @property
    def rejected(self) -> int:
        """Images rejected across all batch reports."""
        return sum(int(r["counts"]["rejected"]) for r in self.batch_reports)

    @property
    def images_per_second(self) -> float:
        """Images processed (featurized + rejected) per second of job run wall time."""
        return (self.featurized + self.rejected) / self.seconds_processing if self.seconds_processing else 0.0


def prepare_lake(lake: Path) -> Path:
    """Make ``lake`` an empty demo lake: wipe it if an earlier demo made it, refuse if it holds other data.

    Raises ``FileExistsError`` when ``lake`` is a non-empty directory the demo did not create.
    """
    lake = lake.expanduser().resolve()
    if lake.exists() and any(lake.iterdir()):
        if not (lake / LAKE_MARKER).exists():
            raise FileExistsError(f"{lake} is not empty and was not made by `fruits demo`; choose another --lake")
        shutil.rmtree(lake)
    lake.mkdir(parents=True, exist_ok=True)
    (lake / LAKE_MARKER).write_text(datetime.now(UTC).isoformat())
    return lake


def _handler(name: str) -> Any:
    return importlib.import_module(f"lambdas.handlers.{name}").handler


def scheduled_event(rule: str = "flush") -> dict[str, Any]:
    """An EventBridge "Scheduled Event" as the schedule ``rule`` (flush, tick) sends it."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0",
        "id": f"local-{rule}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": now,
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:123456789012:rule/fruits-{rule}"],
        "detail": {},
    }


def run_demo(config: DemoConfig, console: Console | None = None) -> DemoResult:
    """Run the whole loop; returns counts and timings. Raises ``FileNotFoundError`` for a bad ``images`` dir.

    Photos arrive on a thread (:class:`fruits.local.arrivals.UploadStream`) while this thread does what AWS does
    meanwhile: SQS → ingest Lambda, the tick schedule every ``tick_seconds``, and one job run at a time
    (:meth:`LocalEmrRunner.poll`). In waves mode the flush handler seals the remainder once every photo is
    recorded; with ``arrival_rate`` the remainder waits for ``max_wait`` like on AWS.
    """
    console = console or Console()
    started = time.perf_counter()
    photos = list_images(config.images, config.limit)
    lake = prepare_lake(config.lake)
    result = DemoResult()
    saved_env = dict(os.environ)
    with moto_server() as endpoint:
        console.print(f"[bold]moto server[/] {endpoint.url} stands in for S3, SQS, DynamoDB, EMR Serverless")
        res = provision()
        os.environ.update(
            lambda_environment(
                res,
                lake_uri=str(lake),
                weights=config.weights,
                threshold=config.threshold,
                max_images=config.max_images,
                pca_k=config.pca_k,
                precision=config.precision,
                calibration=str(config.calibration or config.images) if config.precision == "int8" else "",
                engine=config.engine,
                max_wait=config.max_wait,
                job_max_images=config.job_max_images,
            )
        )
        _reset_cached_settings()
        handlers = {name: _handler(name) for name in ("ingest", "job_state", "flush", "tick")}
        runner = LocalEmrRunner(res.application_id, handlers["job_state"], temp_work_dir(), master=config.master)
        drain_queue(res.queue_url, res.queue_arn, handlers["ingest"])  # the s3:TestEvent S3 sends on configuration
        result.seconds_setup = time.perf_counter() - started
        try:
            with _progress(console) as progress:
                _process(config, res, photos, runner, handlers, lake, result, progress, console)
            result.manifest_counts = _manifest_counts()
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            _reset_cached_settings()
    result.time_to_feature = lake_time_to_feature(lake)
    result.seconds_total = time.perf_counter() - started
    if config.report and result.featurized:
        from fruits.local.report import write_report_png

        result.report_png = write_report_png(lake)
    return result


def _process(config: DemoConfig, res: Any, photos: list[Path], runner: LocalEmrRunner, handlers: dict[str, Any],
             lake: Path, result: DemoResult, progress: Progress, console: Console) -> None:
    """The event loop of :func:`run_demo`: until every photo is uploaded, recorded and processed."""
    up = progress.add_task("upload", total=len(photos))
    rec = progress.add_task("record (ingest Lambda)", total=len(photos))
    proc = progress.add_task("featurize (job runs)", total=len(photos))
    featurized = {"done": 0, "stage": (None, -1, 0, 0)}  # images of finished runs; widest stage seen
    sizes: dict[str, int] = {}

    def on_task_progress(batch_ids: tuple[str, ...], stage: int, done: int, total: int) -> None:
        # the widest stage of a job run is its featurize pass: its task fraction times the run's images
        seen_batches, seen_stage, _, seen_total = featurized["stage"]
        if seen_batches != batch_ids or stage == seen_stage or total > seen_total:
            featurized["stage"] = (batch_ids, stage, done, total)
        _, _, widest_done, widest_total = featurized["stage"]
        size = sum(_batch_size(batch_id, sizes) for batch_id in batch_ids)
        if size and widest_total:
            progress.update(proc, completed=featurized["done"] + size * widest_done // widest_total)

    def on_job_run(outcome: JobRunOutcome) -> None:
        for report in _read_reports(lake, outcome):  # one per batch of the run
            result.batch_reports.append(report)
            featurized["done"] += int(report["counts"]["listed"])
        progress.update(proc, completed=featurized["done"])
        featurized["stage"] = (None, -1, 0, 0)
        result.job_runs.append(outcome)
        result.seconds_processing += outcome.seconds
        if outcome.state != "SUCCESS":
            console.print(f"[red]job run {outcome.job_run_id} FAILED[/] — log: {outcome.log_path}")

    runner.on_progress = on_task_progress
    stream = UploadStream(res.bucket, config.images, photos, waves=config.waves, rate=config.arrival_rate,
                          seed=config.seed, on_upload=lambda: progress.advance(up)).start()
    next_tick, flushed, idle_since = 0.0, False, None
    while True:
        stream.check()
        # one SQS receive (≤ 10 messages) per turn, so a finished job run is noticed and the next one started
        # while a backlog of notifications is still being ingested (as Lambda and EMR run side by side on AWS)
        polled = poll_queue_once(res.queue_url, res.queue_arn, handlers["ingest"])
        result.recorded += polled.deleted
        progress.advance(rec, polled.deleted)
        if time.monotonic() >= next_tick:
            handlers["tick"](scheduled_event("tick"), LocalLambdaContext("tick"))
            next_tick = time.monotonic() + config.tick_seconds
        if config.arrival_rate is None and not flushed and stream.done and result.recorded >= stream.uploaded:
            # waves: seal the remainder as soon as every photo is recorded, while a job run may still be running
            # (the flush schedule does not wait for job runs on AWS either), so the next run takes it along
            handlers["flush"](scheduled_event("flush"), LocalLambdaContext("flush"))
            flushed = True
        if runner.poll(on_job_run) or not stream.done or polled.received:
            if not polled.received:
                time.sleep(0.2)
            continue
        if not _manifest_waiting():
            if result.recorded >= stream.uploaded:
                break
            if idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > UNRECORDED_GRACE_SECONDS:  # e.g. an ingest failure: see the DLQ
                console.print(f"[red]{stream.uploaded - result.recorded} uploads were never recorded[/]")
                break
        time.sleep(0.2)
    stream.check()
    result.uploaded, result.seconds_upload, result.upload_rate = stream.uploaded, stream.seconds, stream.achieved_rate


def lake_time_to_feature(lake: Path) -> dict[str, Any]:
    """Time-to-feature over every current ``features`` row of the lake with an event time: ``ingested_at``
    (the batch's commit) − ``event_time`` (the S3 upload event), as ``{"images", "p50", "p95", "max"}`` seconds."""
    from spark_jobs.lakehouse import tables
    from spark_jobs.lakehouse.time_to_feature import summarize_seconds

    handle = tables.Lake.at(str(lake))
    rows = tables.scan(handle, tables.FEATURES, columns=("event_time", "ingested_at")).to_pylist()
    return summarize_seconds(
        (r["ingested_at"] - r["event_time"]).total_seconds() for r in rows if r["event_time"] and r["ingested_at"]
    )


def _progress(console: Console) -> Progress:
    return progress_bars(console)


def _batch_size(batch_id: str | None, cache: dict[str, int]) -> int:
    """Images sealed into ``batch_id`` (its manifest item), 0 when unknown; remembered in ``cache``."""
    if not batch_id:
        return 0
    if batch_id not in cache:
        from lambdas.pipeline import get_pipeline

        batch = get_pipeline().table.get_batch(batch_id) or {}
        cache[batch_id] = int(batch.get("image_count") or 0)
    return cache[batch_id]


def _read_reports(lake: Path, outcome: JobRunOutcome) -> list[dict[str, Any]]:
    """The batch reports a successful job run wrote (``batches/<batch_id>.json``, one per batch of the run, in
    order); none for a failed run."""
    if outcome.state != "SUCCESS":
        return []
    paths = [lake / "batches" / f"{batch_id}.json" for batch_id in outcome.batch_ids or [outcome.batch_id] if batch_id]
    return [json.loads(path.read_text()) for path in paths if path.exists()]


def _manifest_waiting() -> int:
    """Images recorded but not processed yet (PENDING + CLAIMED in the manifest)."""
    counts = _manifest_counts()
    return counts.get("PENDING", 0) + counts.get("CLAIMED", 0)


def _manifest_counts() -> dict[str, int]:
    """Images in the manifest by status (PENDING, CLAIMED, DONE), from the same service the CLI uses."""
    from lambdas.pipeline import get_pipeline

    return {status: int(count) for status, count in get_pipeline().status()["images"].items()}


def _reset_cached_settings() -> None:
    """Forget settings and boto3 clients cached for another environment (endpoint, table, bucket)."""
    from lambdas import aws, config

    config.get_settings.cache_clear()
    aws.reset_clients()
