"""The ingestion service: the one code path shared by the Lambda handlers, the ``fruits`` CLI and the local runner.

Flow: ``ingest`` records an image (exact pending count) → when pending ≥ BATCH_THRESHOLD a batch is reserved,
filled by exclusive claims, its manifest written to S3 and sealed → ``start_next_batch`` takes the single job
run slot for the oldest SEALED batch and calls EMR Serverless ``start_job_run`` → ``job_state`` events end the
job run (SUCCESS: images DONE, slot freed, next batch started; FAILED/CANCELLED: retry or quarantine).
``flush`` seals whatever is pending; ``reconcile`` repairs lost events and crashed invocations.

Every function returns plain outcome dataclasses; the handlers turn them into logs and metrics.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from lambdas import aws
from lambdas.config import Settings, get_settings
from lambdas.dal.manifest_table import BatchStatus, ManifestTable
from lambdas.logic.batches import flush_claim_size, new_batch_id, threshold_claim_size
from lambdas.logic.job_request import build_start_job_run_request, client_token
from lambdas.logic.keys import ImageRef, image_item_key, label_for_key, normalize_etag, skip_reason
from lambdas.logic.manifest import manifest_key, render_manifest
from lambdas.resources import MANIFESTS_PREFIX

log = logging.getLogger(__name__)

TERMINAL_SUCCESS = "SUCCESS"
TERMINAL_FAILURE = ("FAILED", "CANCELLED")
MANIFEST_GSI_WAIT_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)  # waits for the GSI to show every claimed image
# A batch STARTING for longer than the longest Lambda timeout (15 min, AWS Lambda quota) has no live starter:
# its invocation died between taking the job run slot and recording the job run.
STALE_START_SECONDS = 15 * 60


def utc_now_dt() -> dt.datetime:
    """Current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def utc_now() -> str:
    """Current UTC time, ISO-8601 with microseconds (sortable)."""
    return utc_now_dt().isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class StartedJobRun:
    batch_id: str
    attempt: int
    job_run_id: str
    client_token: str


@dataclass(kw_only=True)
class JobStarts:
    """Job runs an operation started, and its ``start_job_run`` calls that failed.

    ``start_quarantined`` counts the batches such a failure quarantined (their MAX_ATTEMPTS-th failure): the
    handlers report them as ``BatchesQuarantined`` like a quarantine after a failed job run.
    """

    started: list[StartedJobRun] = field(default_factory=list)
    start_failures: int = 0
    start_quarantined: int = 0


@dataclass
class IngestOutcome(JobStarts):
    """Result of one S3 object: ``recorded`` (new image), ``duplicate``, or ``skipped`` with a reason."""

    uri: str
    recorded: bool = False
    duplicate: bool = False
    skipped: str | None = None
    pending: int | None = None
    sealed: list[str] = field(default_factory=list)


@dataclass
class JobStateOutcome(JobStarts):
    """What a job state event did: ``action`` ∈ ignored | unknown_job_run | stale | succeeded | retry | quarantined."""

    action: str
    reason: str = ""
    batch_id: str | None = None
    images_done: int = 0


@dataclass
class FlushOutcome(JobStarts):
    sealed: list[str] = field(default_factory=list)


@dataclass
class ReconcileOutcome(JobStarts):
    listed: int = 0
    skipped: int = 0
    missing_recorded: int = 0
    claiming_resumed: list[str] = field(default_factory=list)
    redriven: list[StartedJobRun] = field(default_factory=list)
    sealed: list[str] = field(default_factory=list)
    recovered: JobStateOutcome | None = None


class Pipeline:
    """The service object. Build it with :func:`get_pipeline` (env settings, lazy boto3 clients)."""

    def __init__(
        self,
        settings: Settings,
        table: ManifestTable,
        s3: Any,
        emr: Any,
        *,
        clock: Callable[[], str] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.table = table
        self.s3 = s3
        self.emr = emr
        self.clock = clock
        self.sleep = sleep
        self.start_failures = 0  # start_job_run errors during this object's life (for metrics)
        self.start_quarantines = 0  # batches those errors quarantined

    # --- ingest --------------------------------------------------------------------------------------
    def ingest(self, ref: ImageRef, *, seal: bool = True) -> IngestOutcome:
        """Record one S3 object (decoded key) and seal/start batches when the threshold is reached.

        Skips keys outside IMAGES_PREFIX / non-image suffixes (``skipped`` holds the reason). A duplicate
        delivery records nothing (``duplicate=True``) but still seals if pending ≥ threshold, so the SQS retry of
        an invocation that crashed after recording completes its work. Raises ``ClientError`` on AWS errors.
        """
        outcome = IngestOutcome(uri=ref.uri)
        reason = skip_reason(ref.key, self.settings.images_prefix)
        if reason is not None:
            outcome.skipped = reason
            return outcome
        ref = ImageRef(ref.bucket, ref.key, normalize_etag(ref.etag), int(ref.size), ref.version_id or None)
        if not ref.etag:
            outcome.skipped = "missing_etag"
            return outcome
        label = label_for_key(ref.key, self.settings.images_prefix)
        if not self.table.record_image(ref, label=label, now=self.clock()):
            outcome.duplicate = True  # still check the threshold: an SQS retry finishes a crashed seal
        outcome.recorded = not outcome.duplicate
        outcome.pending, _ = self.table.counter()
        if seal and outcome.pending >= self.settings.batch_threshold:
            outcome.sealed = self.seal_pending(reason="threshold")
            self._start_next_quietly(outcome)
        return outcome

    # --- sealing -------------------------------------------------------------------------------------
    def seal_pending(self, *, reason: str = "threshold") -> list[str]:
        """Reserve, claim, write manifests and seal batches while enough images are pending.

        ``reason="threshold"`` seals multiples of BATCH_THRESHOLD (capped at BATCH_MAX_IMAGES) while pending ≥
        threshold; ``reason="flush"`` seals everything pending (≥ 1) in batches of ≤ BATCH_MAX_IMAGES.
        Returns the sealed batch ids in sealing order. Safe under any concurrency (see :mod:`lambdas.dal`).
        """
        sealed: list[str] = []
        while True:
            pending, seq = self.table.counter()
            if reason == "flush":
                size = flush_claim_size(pending, self.settings.batch_max_images)
            else:
                size = threshold_claim_size(pending, self.settings.batch_threshold, self.settings.batch_max_images)
            if size == 0:
                return sealed
            batch_id = new_batch_id(seq + 1)
            if not self.table.reserve_batch(
                batch_id=batch_id, seq=seq + 1, expected_seq=seq, size=size, reason=reason, now=self.clock()
            ):
                continue  # another invocation reserved first: re-read the counter
            log.info("batch reserved", extra={"batch_id": batch_id, "size": size, "reason": reason})
            if self.fill_and_seal(batch_id):
                sealed.append(batch_id)

    def fill_and_seal(self, batch_id: str) -> bool:
        """Claim pending images until the CLAIMING batch is full, then write its manifest and seal it.

        Idempotent and safe to run concurrently for the same batch (a crashed sealer's batch is resumed by
        ``reconcile``). Reservations that cannot be filled (no pending image visible) go back to the counter.
        Returns True when the batch is SEALED by this call.
        """
        empty_rounds = 0
        while True:
            batch = self.table.get_batch(batch_id)
            if batch is None or batch["status"] != BatchStatus.CLAIMING:
                return False
            remaining = int(batch["remaining"])
            if remaining == 0:
                break
            candidates = self.table.pending_images(limit=min(remaining, 99))
            if not candidates:
                empty_rounds += 1
                if empty_rounds > len(MANIFEST_GSI_WAIT_SECONDS):
                    self.table.release_shortfall(batch_id, remaining, now=self.clock())
                    continue
                self.sleep(MANIFEST_GSI_WAIT_SECONDS[empty_rounds - 1])  # GSI lag after a recent record
                continue
            empty_rounds = 0
            self.table.claim_images(batch_id, candidates)
        return self._write_manifest_and_seal(batch)

    def _write_manifest_and_seal(self, batch: dict[str, Any]) -> bool:
        batch_id, claimed = batch["batch_id"], int(batch["claimed"])
        if claimed == 0:
            self.table.drop_empty_batch(batch_id)  # every reservation went back to the counter: nothing to run
            return False
        images = self.table.batch_images(batch_id)
        for wait in MANIFEST_GSI_WAIT_SECONDS:
            if len(images) >= claimed:
                break
            self.sleep(wait)
            images = self.table.batch_images(batch_id)
        if len(images) != claimed:
            raise RuntimeError(f"batch {batch_id}: GSI shows {len(images)} images, {claimed} claimed; retry later")
        key = manifest_key(MANIFESTS_PREFIX, batch_id)
        self.s3.put_object(
            Bucket=self.settings.data_bucket,
            Key=key,
            Body=render_manifest(images).encode("utf-8"),
            ContentType="application/x-ndjson",
        )
        manifest_uri = f"s3://{self.settings.data_bucket}/{key}"
        sealed = self.table.seal_batch(batch_id, image_count=claimed, manifest_uri=manifest_uri, now=self.clock())
        if sealed:
            log.info("batch sealed", extra={"batch_id": batch_id, "images": claimed, "manifest_uri": manifest_uri})
        return sealed

    # --- job runs ------------------------------------------------------------------------------------
    def start_request(self, batch: dict[str, Any], attempt: int | None = None) -> dict[str, Any]:
        """The exact ``start_job_run`` kwargs for ``batch`` (next attempt unless ``attempt`` is given)."""
        return build_start_job_run_request(
            self.settings,
            batch_id=batch["batch_id"],
            attempt=attempt if attempt is not None else int(batch.get("attempts", 0)) + 1,
            manifest_uri=batch["manifest_uri"],
        )

    def start_next_batch(self) -> StartedJobRun | None:
        """Start the oldest SEALED batch if the job run slot is free; None when busy or nothing is sealed.

        A slot held by a batch STARTING for more than STALE_START_SECONDS (its starter died) is re-driven
        instead, with the same attempt and ``clientToken``, so the next event or flush repairs it without waiting
        for ``reconcile``. Raises ``ClientError`` if ``start_job_run`` fails (the attempt is recorded as failed
        and the slot freed).
        """
        slot = self.table.get_slot()
        if slot.get("holder"):
            return self._redrive_starting(slot) if self._held_longer_than(slot, STALE_START_SECONDS) else None
        for candidate in self.table.batches_by_status(BatchStatus.SEALED, limit=5):
            batch = self.table.get_batch(candidate["batch_id"])
            if batch is None or batch["status"] != BatchStatus.SEALED:
                continue  # GSI lag
            if not self.table.acquire_slot(batch["batch_id"], attempts=int(batch["attempts"]), now=self.clock()):
                return None  # someone else took the slot (or this batch) first
            return self._call_start_job_run(batch, int(batch["attempts"]) + 1)
        return None

    def _call_start_job_run(self, batch: dict[str, Any], attempt: int) -> StartedJobRun | None:
        request = self.start_request(batch, attempt)
        batch_id = batch["batch_id"]
        try:
            response = self.emr.start_job_run(**request)
        except ClientError as err:
            failures = int(batch.get("failures", 0)) + 1
            quarantine = failures >= self.settings.max_attempts
            if (
                self.table.fail_start(
                    batch_id, attempt=attempt, error=str(err), quarantine=quarantine, now=self.clock()
                )
                and quarantine
            ):
                self.start_quarantines += 1
            self.start_failures += 1
            log.error("start_job_run failed", extra={"batch_id": batch_id, "attempt": attempt, "error": str(err)})
            raise
        job_run_id = response["jobRunId"]
        self.table.mark_running(
            batch_id, attempt=attempt, job_run_id=job_run_id, client_token=request["clientToken"], now=self.clock()
        )
        log.info("job run started", extra={"batch_id": batch_id, "attempt": attempt, "job_run_id": job_run_id})
        return StartedJobRun(batch_id, attempt, job_run_id, request["clientToken"])

    def _start_next_quietly(self, outcome: JobStarts) -> None:
        """``start_next_batch`` for callers whose own work is already done: the job run started, or the start
        error (logged, not raised), is added to ``outcome``."""
        with self._counting_start_failures(outcome):
            try:
                started = self.start_next_batch()
            except ClientError:
                started = None
        if started:
            outcome.started.append(started)

    @contextmanager
    def _counting_start_failures(self, outcome: JobStarts) -> Iterator[None]:
        failures, quarantines = self.start_failures, self.start_quarantines
        try:
            yield
        finally:
            outcome.start_failures += self.start_failures - failures
            outcome.start_quarantined += self.start_quarantines - quarantines

    def handle_job_state(self, *, application_id: str, job_run_id: str, state: str) -> JobStateOutcome:
        """Apply an EMR Serverless job run state change (see docs/contracts.md for the event).

        SUCCESS → images DONE, batch SUCCEEDED, slot freed, next sealed batch started. FAILED / CANCELLED →
        batch SEALED again for a new attempt, or QUARANTINED after MAX_ATTEMPTS failures (images stay attached).
        Other applications, non-terminal states, unknown or stale job runs are ignored (with the reason).
        """
        if application_id != self.settings.emr_application_id:
            return JobStateOutcome("ignored", reason="other_application")
        if state != TERMINAL_SUCCESS and state not in TERMINAL_FAILURE:
            return JobStateOutcome("ignored", reason=f"non_terminal_state:{state}")
        run = self.table.get_job_run(job_run_id) or self._adopt_job_run(job_run_id)
        if run is None:
            return JobStateOutcome("unknown_job_run", reason="job run not started by this pipeline")
        batch_id = run["batch_id"]
        batch = self.table.get_batch(batch_id)
        outcome = JobStateOutcome("stale", batch_id=batch_id)
        if batch is None or batch["status"] != BatchStatus.RUNNING or batch.get("job_run_id") != job_run_id:
            outcome.reason = f"batch is {batch and batch['status']} with job run {batch and batch.get('job_run_id')}"
        elif state == TERMINAL_SUCCESS:
            outcome.images_done = self.table.mark_images_done(
                batch_id, self.table.batch_images(batch_id), now=self.clock()
            )
            if self.table.finish_job_run(
                batch_id, job_run_id=job_run_id, state=state, new_status=BatchStatus.SUCCEEDED, now=self.clock()
            ):
                outcome.action = "succeeded"
        else:
            quarantine = int(batch.get("failures", 0)) + 1 >= self.settings.max_attempts
            new_status = BatchStatus.QUARANTINED if quarantine else BatchStatus.SEALED
            if self.table.finish_job_run(
                batch_id, job_run_id=job_run_id, state=state, new_status=new_status, now=self.clock()
            ):
                outcome.action = "quarantined" if quarantine else "retry"
        self._start_next_quietly(outcome)
        return outcome

    def _adopt_job_run(self, job_run_id: str) -> dict[str, Any] | None:
        """A job run we started but crashed before recording: find its batch from the job run's tags."""
        slot = self.table.get_slot()
        if not slot.get("holder"):
            return None
        try:
            job_run = self.emr.get_job_run(applicationId=self.settings.emr_application_id, jobRunId=job_run_id)
        except ClientError:
            return None
        tags = job_run.get("jobRun", {}).get("tags", {}) or {}
        batch_id, attempt = tags.get("batch_id"), tags.get("attempt", "")
        if batch_id != slot["holder"] or not attempt.isdigit():
            return None
        token = client_token(batch_id, int(attempt))
        self.table.mark_running(
            batch_id, attempt=int(attempt), job_run_id=job_run_id, client_token=token, now=self.clock()
        )
        return self.table.get_job_run(job_run_id)

    # --- flush, reconcile, manual --------------------------------------------------------------------
    def flush(self) -> FlushOutcome:
        """Seal whatever is pending (≥ 1 image, ≤ BATCH_MAX_IMAGES per batch) and start the next batch."""
        outcome = FlushOutcome(sealed=self.seal_pending(reason="flush"))
        self._start_next_quietly(outcome)
        return outcome

    def reconcile(self) -> ReconcileOutcome:
        """Repair what lost events and crashed invocations left behind.

        1. list IMAGES_PREFIX and record images missing from the manifest (BatchGetItem per 100 keys first);
        2. resume CLAIMING batches (a sealer crashed mid-claim);
        3. re-drive the batch holding the job run slot without a job run (crash between claim and start:
           same attempt, same ``clientToken``, so AWS cannot start it twice);
        4. apply the terminal state of the RUNNING job run when its event is RECONCILE_LOST_EVENT_MINUTES late;
        5. seal by threshold, then start the next sealed batch if the slot is free.
        """
        outcome = ReconcileOutcome()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.settings.data_bucket, Prefix=self.settings.images_prefix):
            refs = []
            for obj in page.get("Contents", []):
                outcome.listed += 1
                if skip_reason(obj["Key"], self.settings.images_prefix) is not None:
                    outcome.skipped += 1
                    continue
                refs.append(ImageRef(self.settings.data_bucket, obj["Key"], normalize_etag(obj["ETag"]), obj["Size"]))
            keys = {image_item_key(r.bucket, r.key, r.etag): r for r in refs}
            existing = self.table.existing_images(list(keys))
            for item_key, ref in keys.items():
                if item_key not in existing and self.ingest(ref, seal=False).recorded:
                    outcome.missing_recorded += 1
        for batch in self.table.batches_by_status(BatchStatus.CLAIMING):
            outcome.claiming_resumed.append(batch["batch_id"])
            if self.fill_and_seal(batch["batch_id"]):
                outcome.sealed.append(batch["batch_id"])
        with self._counting_start_failures(outcome):
            redriven = self._redrive_starting()
        if redriven:
            outcome.redriven.append(redriven)
        with self._counting_start_failures(outcome):  # its own next start may fail too
            outcome.recovered = self._recover_lost_terminal_event()
        outcome.sealed += self.seal_pending(reason="threshold")
        self._start_next_quietly(outcome)
        return outcome

    def _held_longer_than(self, slot: dict[str, Any], seconds: float) -> bool:
        since = slot.get("since")
        if not since:
            return False
        held = dt.datetime.fromisoformat(self.clock()) - dt.datetime.fromisoformat(since)
        return held.total_seconds() > seconds

    def _redrive_starting(self, slot: dict[str, Any] | None = None) -> StartedJobRun | None:
        holder = (slot if slot is not None else self.table.get_slot()).get("holder")
        batch = self.table.get_batch(holder) if holder else None
        if batch is None or batch["status"] != BatchStatus.STARTING:
            return None
        log.warning("re-driving batch without job run", extra={"batch_id": holder, "attempt": batch["attempts"]})
        try:
            return self._call_start_job_run(batch, int(batch["attempts"]))
        except ClientError:
            return None

    def _recover_lost_terminal_event(self) -> JobStateOutcome | None:
        minutes = self.settings.reconcile_lost_event_minutes
        holder = self.table.get_slot().get("holder")
        batch = self.table.get_batch(holder) if holder and minutes > 0 else None
        if batch is None or batch["status"] != BatchStatus.RUNNING:
            return None
        job_run_id = batch["job_run_id"]
        try:
            job_run = self.emr.get_job_run(applicationId=self.settings.emr_application_id, jobRunId=job_run_id)[
                "jobRun"
            ]
        except ClientError as err:
            log.warning("cannot read job run", extra={"job_run_id": job_run_id, "error": str(err)})
            return None
        state, updated = job_run.get("state", ""), job_run.get("updatedAt")
        if state != TERMINAL_SUCCESS and state not in TERMINAL_FAILURE:
            return None
        if not isinstance(updated, dt.datetime) or utc_now_dt() - updated < dt.timedelta(minutes=minutes):
            return None  # the EventBridge event may still come
        log.warning("applying a terminal state whose event was lost", extra={"job_run_id": job_run_id, "state": state})
        return self.handle_job_state(
            application_id=self.settings.emr_application_id, job_run_id=job_run_id, state=state
        )

    def start_job(self, batch_id: str | None = None) -> FlushOutcome:
        """Manual start (``fruits start-job``): flush and start the next batch, or re-run ``batch_id``.

        Re-running requeues a SUCCEEDED / QUARANTINED / SEALED batch (``failures`` reset, next attempt number)
        and starts it if the job run slot is free. Raises ValueError for an unknown batch or one in another state,
        RuntimeError if the slot is held by another batch.
        """
        if batch_id is None:
            return self.flush()
        batch = self.table.get_batch(batch_id)
        if batch is None:
            raise ValueError(f"unknown batch {batch_id!r}")
        if not self.table.requeue_batch(batch_id, now=self.clock()):
            raise ValueError(f"batch {batch_id} is {batch['status']}; only SEALED, SUCCEEDED or QUARANTINED re-run")
        holder = self.table.get_slot().get("holder")
        if holder:
            raise RuntimeError(f"batch {batch_id} queued; job run slot busy with batch {holder}")
        batch = self.table.get_batch(batch_id) or batch
        if not self.table.acquire_slot(batch_id, attempts=int(batch["attempts"]), now=self.clock()):
            raise RuntimeError(f"batch {batch_id} queued; job run slot was taken concurrently")
        started = self._call_start_job_run(batch, int(batch["attempts"]) + 1)
        return FlushOutcome(started=[started] if started else [])

    def dry_run_request(self, batch_id: str | None = None) -> dict[str, Any]:
        """The ``start_job_run`` request the next start would send (``batch_id`` or the oldest SEALED batch).

        Changes nothing. Raises ValueError when there is no such batch or it has no manifest yet.
        """
        if batch_id is None:
            sealed = self.table.batches_by_status(BatchStatus.SEALED, limit=1)
            if not sealed:
                pending, _ = self.table.counter()
                raise ValueError(f"no sealed batch to start ({pending} pending images; run without --dry-run to flush)")
            batch_id = sealed[0]["batch_id"]
        batch = self.table.get_batch(batch_id)
        if batch is None:
            raise ValueError(f"unknown batch {batch_id!r}")
        if not batch.get("manifest_uri"):
            raise ValueError(f"batch {batch_id} is {batch['status']} and has no manifest yet")
        return self.start_request(batch)

    def status(self) -> dict[str, Any]:
        """Snapshot for ``fruits status``: pending count, batches (sorted), images by status, the job run slot."""
        pending, seq = self.table.counter()
        batches = self.table.all_batches()
        images = {"PENDING": pending, "CLAIMED": 0, "DONE": 0}
        for batch in batches:
            count = int(batch.get("image_count") or batch.get("claimed") or 0)
            images["DONE" if batch["status"] == BatchStatus.SUCCEEDED else "CLAIMED"] += count
        return {
            "pending": pending,
            "batches_created": seq,
            "images": images,
            "batches": batches,
            "slot": self.table.get_slot(),
        }


def get_pipeline(settings: Settings | None = None) -> Pipeline:
    """A :class:`Pipeline` on the env settings and the lazily created boto3 clients (honours AWS_ENDPOINT_URL)."""
    settings = settings or get_settings()
    return Pipeline(
        settings,
        ManifestTable(settings.manifest_table, aws.client("dynamodb")),
        aws.client("s3"),
        aws.client("emr-serverless"),
    )
