"""Job runs: start the next sealed batch on the single slot, apply EMR Serverless job state events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from lambdas.dal.manifest_table import BatchStatus
from lambdas.logic.job_request import build_start_job_run_request, client_token
from lambdas.service.base import (
    STALE_START_SECONDS,
    TERMINAL_FAILURE,
    TERMINAL_SUCCESS,
    ServiceBase,
    log,
)
from lambdas.service.outcomes import (
    JobStarts,
    JobStateOutcome,
    StartedJobRun,
)


class JobRuns(ServiceBase):
    """Job runs: start the next sealed batch on the single slot, apply EMR Serverless job state events."""

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
