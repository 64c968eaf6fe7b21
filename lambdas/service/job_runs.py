"""Job runs: start the next sealed batch on the single slot, apply EMR Serverless job state events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.dal.manifest_table import BatchStatus
from lambdas.dal.records import Batch, Slot
from lambdas.logic.batches import time_to_feature_seconds
from lambdas.logic.job_request import build_start_job_run_request, client_token
from lambdas.service.base import (
    REPAIR_AFTER_SECONDS,
    START_RETRY_BASE_SECONDS,
    TERMINAL_FAILURE,
    TERMINAL_SUCCESS,
    ServiceBase,
    log,
)
from lambdas.service.outcomes import (
    JobRunStart,
    JobStarts,
    JobStateAction,
    JobStateOutcome,
    StartedJobRun,
    StartResult,
)


def start_retry_delay(errors: int) -> float:
    """Seconds before the tick retries a StartJobRun that failed ``errors`` times in a row (≥ 1): exponential,
    :data:`START_RETRY_BASE_SECONDS` × 2^(errors − 1), capped at :data:`REPAIR_AFTER_SECONDS` (the repair bound)."""
    return float(min(REPAIR_AFTER_SECONDS, START_RETRY_BASE_SECONDS * 2 ** max(0, errors - 1)))


class JobRuns(ServiceBase):
    """Job runs: start the next sealed batch on the single slot, apply EMR Serverless job state events."""

    # --- job runs ------------------------------------------------------------------------------------
    def start_request(self, batch: Batch | dict[str, Any], attempt: int | None = None) -> dict[str, Any]:
        """The exact ``start_job_run`` kwargs for ``batch`` (next attempt unless ``attempt`` is given)."""
        if isinstance(batch, dict):
            batch = Batch.from_item(batch)
        return build_start_job_run_request(
            self.settings,
            batch_id=batch.batch_id,
            attempt=attempt if attempt is not None else batch.attempts + 1,
            manifest_uri=batch.manifest_uri or "",
        )

    def start_next_batch(self) -> JobRunStart | None:
        """Start the oldest SEALED batch if the job run slot is free; None when busy or nothing is sealed.

        A slot held by a batch STARTING whose start is due again (:meth:`_start_due`: its last StartJobRun failed
        and the backoff passed, or its starter died REPAIR_AFTER_SECONDS ago) is re-driven instead, with the same
        attempt and ``clientToken``. A failed ``start_job_run`` leaves the batch STARTING with the slot, its attempt
        and a retry time (:meth:`_call_start_job_run`), returned as a DEFERRED result.
        """
        slot = self.table.slot()
        if slot.holder:
            return self._redrive_starting(slot)
        for candidate in self.table.batches_by_status(BatchStatus.SEALED, limit=5):
            batch = self.table.batch(candidate["batch_id"])
            if batch is None or batch.status != BatchStatus.SEALED:
                continue  # GSI lag
            if not self.table.acquire_slot(batch.batch_id, attempts=batch.attempts, now=self.clock()):
                return None  # someone else took the slot (or this batch) first
            return self._call_start_job_run(batch, batch.attempts + 1)
        return None

    def _start_due(self, batch: Batch, slot: Slot) -> bool:
        """Whether the STARTING ``batch`` holding ``slot`` may be re-driven now: when a StartJobRun of this attempt
        failed, once its ``start_retry_at`` passed (backoff); else once it has held the slot REPAIR_AFTER_SECONDS
        (its starter died: a Lambda timeout or crash inside the call)."""
        now = self.clock()
        retry_at = batch.start_retry_at if batch.start_retry_attempt == batch.attempts else None
        if retry_at:  # this attempt's last call failed: its backoff decides
            return now >= dt.datetime.fromisoformat(retry_at)
        held = (now - dt.datetime.fromisoformat(slot.since)).total_seconds() if slot.since else 0.0
        return held >= REPAIR_AFTER_SECONDS

    def _redrive_starting(self, slot: Slot | None = None, *, force: bool = False) -> JobRunStart | None:
        """Call ``start_job_run`` again, same attempt, for the batch holding the slot while STARTING, when due
        (:meth:`_start_due`) or ``force`` (reconcile); else None."""
        slot = slot if slot is not None else self.table.slot()
        batch = self.table.batch(slot.holder) if slot.holder else None
        if batch is None or batch.status != BatchStatus.STARTING or not (force or self._start_due(batch, slot)):
            return None
        log.warning("re-driving batch without job run", extra={"batch_id": batch.batch_id, "attempt": batch.attempts})
        return self._call_start_job_run(batch, batch.attempts)

    def _call_start_job_run(self, batch: Batch, attempt: int) -> JobRunStart:
        """Call ``start_job_run`` for attempt ``attempt`` of the STARTING ``batch`` (it holds the slot).

        Throttling, quotas and transient errors are first retried by botocore (standard mode, exponential backoff
        with jitter, :data:`lambdas.aws.RETRY_CONFIG`). An error left after that — a ``ClientError`` such as
        ThrottlingException / ServiceQuotaExceededException / AccessDeniedException, or a botocore error that is not
        one (ReadTimeoutError, ConnectTimeoutError, EndpointConnectionError) — is NOT a failed attempt: the batch
        keeps the slot and the attempt (a retry sends the same clientToken, so a timed-out call that did start a
        job run is not started twice) and the tick retries it after :func:`start_retry_delay`. Returns DEFERRED
        with the error then.
        """
        request = self.start_request(batch, attempt)
        batch_id = batch.batch_id
        try:
            response = self.emr.start_job_run(**request)
        except (ClientError, BotoCoreError) as err:
            now = self.clock()
            errors = (batch.start_errors if batch.start_retry_attempt == attempt else 0) + 1
            retry_at = now + dt.timedelta(seconds=start_retry_delay(errors))
            self.table.defer_start(
                batch_id, attempt=attempt, error=f"{type(err).__name__}: {err}", retry_at=retry_at, now=now
            )
            log.error(
                "start_job_run failed; retried by the tick",
                extra={"batch_id": batch_id, "attempt": attempt, "error": str(err), "retry_at": retry_at.isoformat()},
            )
            return JobRunStart(StartResult.DEFERRED, batch_id, attempt, error=err)
        job_run_id = response["jobRunId"]
        self.table.mark_running(
            batch_id, attempt=attempt, job_run_id=job_run_id, client_token=request["clientToken"], now=self.clock()
        )
        log.info("job run started", extra={"batch_id": batch_id, "attempt": attempt, "job_run_id": job_run_id})
        run = StartedJobRun(batch_id, attempt, job_run_id, request["clientToken"])
        return JobRunStart(StartResult.STARTED, batch_id, attempt, run=run)

    def _start_next_quietly(self, outcome: JobStarts) -> None:
        """``start_next_batch`` for callers whose own work is already done: what it did is added to ``outcome``."""
        outcome.add(self.start_next_batch())

    def handle_job_state(self, *, application_id: str, job_run_id: str, state: str) -> JobStateOutcome:
        """Apply an EMR Serverless job run state change (see docs/contracts.md for the event).

        SUCCESS → images DONE, batch SUCCEEDED, slot freed, next sealed batch started; when this event is the one
        that moved the batch to SUCCEEDED (not a duplicate), the outcome carries each live image's time to feature
        (seconds from its S3 event time to the clock's now). FAILED / CANCELLED → batch SEALED again for a new
        attempt, or QUARANTINED after MAX_ATTEMPTS failures (images stay attached).
        Other applications, non-terminal states, unknown or stale job runs are ignored (with the reason).
        """
        if application_id != self.settings.emr_application_id:
            return JobStateOutcome(JobStateAction.IGNORED, reason="other_application")
        if state != TERMINAL_SUCCESS and state not in TERMINAL_FAILURE:
            return JobStateOutcome(JobStateAction.IGNORED, reason=f"non_terminal_state:{state}")
        run = self.table.get_job_run(job_run_id) or self._adopt_job_run(job_run_id)
        if run is None:
            return JobStateOutcome(JobStateAction.UNKNOWN_JOB_RUN, reason="job run not started by this pipeline")
        batch_id = run["batch_id"]
        batch = self.table.batch(batch_id)
        outcome = JobStateOutcome(JobStateAction.STALE, batch_id=batch_id)
        if batch is None or batch.status != BatchStatus.RUNNING or batch.job_run_id != job_run_id:
            outcome.reason = f"batch is {batch and batch.status} with job run {batch and batch.job_run_id}"
        elif state == TERMINAL_SUCCESS:
            images, now = self.table.batch_images(batch_id), self.clock()
            outcome.images_done = self.table.mark_images_done(batch_id, images, now=now)
            if self.table.finish_job_run(
                batch_id, job_run_id=job_run_id, state=state, new_status=BatchStatus.SUCCEEDED, now=now
            ):
                outcome.action = JobStateAction.SUCCEEDED
                outcome.time_to_feature_seconds = time_to_feature_seconds(images, now)
        else:
            quarantine = batch.failures + 1 >= self.settings.max_attempts
            new_status = BatchStatus.QUARANTINED if quarantine else BatchStatus.SEALED
            if self.table.finish_job_run(
                batch_id, job_run_id=job_run_id, state=state, new_status=new_status, now=self.clock()
            ):
                outcome.action = JobStateAction.QUARANTINED if quarantine else JobStateAction.RETRY
        self._start_next_quietly(outcome)
        return outcome

    def _adopt_job_run(self, job_run_id: str) -> dict[str, Any] | None:
        """A job run we started but crashed before recording: find its batch from the job run's tags."""
        slot = self.table.slot()
        if not slot.holder:
            return None
        try:
            job_run = self.emr.get_job_run(applicationId=self.settings.emr_application_id, jobRunId=job_run_id)
        except ClientError:
            return None
        tags = job_run.get("jobRun", {}).get("tags", {}) or {}
        batch_id, attempt = tags.get("batch_id"), tags.get("attempt", "")
        if batch_id != slot.holder or not attempt.isdigit():
            return None
        token = client_token(batch_id, int(attempt))
        self.table.mark_running(
            batch_id, attempt=int(attempt), job_run_id=job_run_id, client_token=token, now=self.clock()
        )
        return self.table.get_job_run(job_run_id)
