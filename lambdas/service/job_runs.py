"""Job runs: start the next job run (every sealed batch waiting, up to JOB_MAX_IMAGES) on the single slot, apply
EMR Serverless job state events to all of its batches."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.dal.job_run_items import Acquire
from lambdas.dal.manifest_table import BatchStatus
from lambdas.dal.records import Batch, RunBatch, Slot
from lambdas.logic.batches import time_to_feature_seconds
from lambdas.logic.job_request import MAX_RUN_BATCHES, build_start_job_run_request, client_token, plan_run
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

# Tries to take the slot when the batches read changed under us (another starter took one of them first).
ACQUIRE_TRIES = 5


def start_retry_delay(errors: int) -> float:
    """Seconds before the tick retries a StartJobRun that failed ``errors`` times in a row (≥ 1): exponential,
    :data:`START_RETRY_BASE_SECONDS` × 2^(errors − 1), capped at :data:`REPAIR_AFTER_SECONDS` (the repair bound)."""
    return float(min(REPAIR_AFTER_SECONDS, START_RETRY_BASE_SECONDS * 2 ** max(0, errors - 1)))


class JobRuns(ServiceBase):
    """Job runs: start the next job run on the single slot, apply EMR Serverless job state events.

    A job run takes every SEALED batch waiting, in seal order (batch id order), up to JOB_MAX_IMAGES images and
    :data:`MAX_RUN_BATCHES` batches (the oldest batch always goes). Its first batch leads it: the lead holds the
    slot, records the run's batches (``run_batches``) and counts the run's attempts (clientToken
    ``<lead>-a<attempt>``); every batch of the run goes SEALED → STARTING → RUNNING → SUCCEEDED (or back to SEALED
    / QUARANTINED on its own MAX_ATTEMPTS-th failure) together, in single transactions.
    """

    # --- job runs ------------------------------------------------------------------------------------
    def run_request(self, run: Sequence[RunBatch], attempt: int) -> dict[str, Any]:
        """The exact ``start_job_run`` kwargs of attempt ``attempt`` of the job run of ``run`` (lead first)."""
        lead, *more = run
        return build_start_job_run_request(
            self.settings,
            batch_id=lead.batch_id,
            attempt=attempt,
            manifest_uri=lead.manifest_uri,
            more=[(batch.batch_id, batch.manifest_uri) for batch in more],
        )

    def start_request(self, batch: Batch | dict[str, Any], attempt: int | None = None) -> dict[str, Any]:
        """The exact ``start_job_run`` kwargs of a job run of ``batch`` alone (next attempt unless ``attempt``)."""
        if isinstance(batch, dict):
            batch = Batch.from_item(batch)
        attempt = attempt if attempt is not None else batch.attempts + 1
        return self.run_request([RunBatch(batch.batch_id, batch.manifest_uri or "", batch.image_count)], attempt)

    def next_run(self) -> tuple[list[Batch], int]:
        """The batches the next job run would take (SEALED, seal order, :func:`plan_run` under JOB_MAX_IMAGES and
        :data:`MAX_RUN_BATCHES`; ``[]`` when none), and the images of the SEALED batches it leaves behind.

        All SEALED batches are read from the GSI (paginated: the backlog behind the slot), the chosen ones again
        with strong consistency (BatchGetItem): one that is no longer SEALED (GSI lag) is left out.
        """
        sealed = [
            (item["batch_id"], int(item.get("image_count", 0)))
            for item in self.table.batches_by_status(BatchStatus.SEALED)
        ]
        limits = {"max_images": self.settings.job_max_images, "max_batches": MAX_RUN_BATCHES}
        chosen = plan_run(sealed, **limits)
        fresh = [batch for batch in self.table.batches(chosen) if batch.status == BatchStatus.SEALED]
        run = fresh[: len(plan_run([(batch.batch_id, batch.image_count) for batch in fresh], **limits))]
        taken = {batch.batch_id for batch in run}
        return run, sum(images for batch_id, images in sealed if batch_id not in taken)

    def sealed_backlog_images(self) -> int:
        """Images waiting in SEALED batches (GSI, eventually consistent): the backlog behind the job run slot."""
        return sum(int(item.get("image_count", 0)) for item in self.table.batches_by_status(BatchStatus.SEALED))

    def start_next_batch(self, report: JobStarts | None = None) -> JobRunStart | None:
        """Start the next job run if the job run slot is free: every SEALED batch waiting (:meth:`next_run`);
        None when the slot is busy or nothing is sealed.

        A slot held by a run STARTING whose start is due again (:meth:`_start_due`: its last StartJobRun failed
        and the backoff passed, or its starter died REPAIR_AFTER_SECONDS ago) is re-driven instead, with the same
        batches, attempt and ``clientToken``. A failed ``start_job_run`` leaves the run STARTING with the slot, its
        attempt and a retry time (:meth:`_call_start_job_run`), returned as a DEFERRED result. When nothing is
        sealed, ``report.sealed_backlog_images`` (if given) is set to 0: the backlog was measured.
        """
        slot = self.table.slot()
        if slot.holder:
            return self._redrive_starting(slot)
        for _ in range(ACQUIRE_TRIES):
            run, backlog = self.next_run()
            if not run:
                if report is not None:
                    report.sealed_backlog_images = backlog
                return None
            start = self._start_run(run, backlog)
            if start is Acquire.SLOT_BUSY:
                return None  # someone else took the slot first
            if isinstance(start, JobRunStart):
                return start
        return None  # the sealed batches kept changing under concurrent starters: the next event or tick starts

    def _start_run(self, run: Sequence[Batch], backlog: int | None) -> JobRunStart | Acquire:
        """Take the free slot for the SEALED batches ``run`` (lead first) and call ``start_job_run``; the
        :class:`Acquire` result when the slot could not be taken."""
        lead = run[0]
        attempt = lead.attempts + 1
        taken = self.table.acquire_run(run, token=client_token(lead.batch_id, attempt), now=self.clock())
        if taken is not Acquire.TAKEN:
            return taken
        members = [RunBatch(b.batch_id, b.manifest_uri or "", b.image_count, b.attempts + 1) for b in run]
        return self._call_start_job_run(lead, attempt, members, backlog=backlog)

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
        """Call ``start_job_run`` again, same batches and attempt, for the run whose lead holds the slot while
        STARTING, when due (:meth:`_start_due`) or ``force`` (reconcile); else None."""
        slot = slot if slot is not None else self.table.slot()
        batch = self.table.batch(slot.holder) if slot.holder else None
        if batch is None or batch.status != BatchStatus.STARTING or not (force or self._start_due(batch, slot)):
            return None
        log.warning(
            "re-driving job run without job run id",
            extra={"batch_id": batch.batch_id, "attempt": batch.attempts, "batches": len(batch.run())},
        )
        return self._call_start_job_run(batch, batch.attempts, batch.run())

    def _call_start_job_run(
        self, lead: Batch, attempt: int, run: Sequence[RunBatch], *, backlog: int | None = None
    ) -> JobRunStart:
        """Call ``start_job_run`` for attempt ``attempt`` of the STARTING job run of ``run`` led by ``lead`` (it
        holds the slot); ``backlog``: the SEALED images left behind (reported with the start).

        Throttling, quotas and transient errors are first retried by botocore (standard mode, exponential backoff
        with jitter, :data:`lambdas.aws.RETRY_CONFIG`). An error left after that — a ``ClientError`` such as
        ThrottlingException / ServiceQuotaExceededException / AccessDeniedException, or a botocore error that is not
        one (ReadTimeoutError, ConnectTimeoutError, EndpointConnectionError) — is NOT a failed attempt: the run
        keeps the slot and the attempt (a retry sends the same batches and clientToken, so a timed-out call that
        did start a job run is not started twice) and the tick retries it after :func:`start_retry_delay`.
        Returns DEFERRED with the error then.
        """
        request = self.run_request(run, attempt)
        batch_id = lead.batch_id
        try:
            response = self.emr.start_job_run(**request)
        except (ClientError, BotoCoreError) as err:
            now = self.clock()
            errors = (lead.start_errors if lead.start_retry_attempt == attempt else 0) + 1
            retry_at = now + dt.timedelta(seconds=start_retry_delay(errors))
            self.table.defer_start(
                batch_id, attempt=attempt, error=f"{type(err).__name__}: {err}", retry_at=retry_at, now=now
            )
            log.error(
                "start_job_run failed; retried by the tick",
                extra={"batch_id": batch_id, "attempt": attempt, "error": str(err), "retry_at": retry_at.isoformat()},
            )
            return JobRunStart(StartResult.DEFERRED, batch_id, attempt, error=err, sealed_backlog_images=backlog)
        job_run_id = response["jobRunId"]
        self.table.mark_running(
            batch_id,
            attempt=attempt,
            job_run_id=job_run_id,
            client_token=request["clientToken"],
            now=self.clock(),
            members=run[1:],
        )
        batch_ids, images = [batch.batch_id for batch in run], sum(batch.images for batch in run)
        log.info(
            "job run started",
            extra={
                "batch_id": batch_id,
                "attempt": attempt,
                "job_run_id": job_run_id,
                "batch_ids": batch_ids,
                "images": images,
            },
        )
        started = StartedJobRun(batch_id, attempt, job_run_id, request["clientToken"], batch_ids, images)
        return JobRunStart(StartResult.STARTED, batch_id, attempt, run=started, sealed_backlog_images=backlog)

    def _start_next_quietly(self, outcome: JobStarts) -> None:
        """``start_next_batch`` for callers whose own work is already done: what it did is added to ``outcome``."""
        outcome.add(self.start_next_batch(outcome))

    def handle_job_state(self, *, application_id: str, job_run_id: str, state: str) -> JobStateOutcome:
        """Apply an EMR Serverless job run state change (see docs/contracts.md for the event) to every batch of
        the job run.

        SUCCESS → the images of all its batches DONE, the batches SUCCEEDED, slot freed, next job run started;
        when this event is the one that moved them to SUCCEEDED (not a duplicate), the outcome carries each live
        image's time to feature (seconds from its S3 event time to the clock's now). FAILED / CANCELLED → each
        batch SEALED again for a new attempt, or QUARANTINED on its own MAX_ATTEMPTS-th failure (images stay
        attached). Other applications, non-terminal states, unknown or stale job runs (duplicate, out-of-order or
        late events: the batches are not RUNNING that job run) are ignored (with the reason).
        """
        if application_id != self.settings.emr_application_id:
            return JobStateOutcome(JobStateAction.IGNORED, reason="other_application")
        if state != TERMINAL_SUCCESS and state not in TERMINAL_FAILURE:
            return JobStateOutcome(JobStateAction.IGNORED, reason=f"non_terminal_state:{state}")
        found = self.table.get_job_run(job_run_id) or self._adopt_job_run(job_run_id)
        if found is None:
            return JobStateOutcome(JobStateAction.UNKNOWN_JOB_RUN, reason="job run not started by this pipeline")
        batch_id = found["batch_id"]
        lead = self.table.batch(batch_id)
        outcome = JobStateOutcome(JobStateAction.STALE, batch_id=batch_id)
        batches = self._running_batches(lead, job_run_id)
        if lead is None or not batches:
            outcome.reason = f"batch is {lead and lead.status} with job run {lead and lead.job_run_id}"
        elif state == TERMINAL_SUCCESS:
            now, images = self.clock(), []
            for batch in batches:
                own = self.table.batch_images(batch.batch_id)
                outcome.images_done += self.table.mark_images_done(batch.batch_id, own, now=now)
                images += own
            succeeded = [(batch.batch_id, BatchStatus.SUCCEEDED) for batch in batches]
            if self.table.finish_run(batch_id, job_run_id=job_run_id, state=state, outcomes=succeeded, now=now):
                outcome.action = JobStateAction.SUCCEEDED
                outcome.time_to_feature_seconds = time_to_feature_seconds(images, now)
        else:
            quarantined = [b.batch_id for b in batches if b.failures + 1 >= self.settings.max_attempts]
            ends = [
                (b.batch_id, BatchStatus.QUARANTINED if b.batch_id in quarantined else BatchStatus.SEALED)
                for b in batches
            ]
            if self.table.finish_run(batch_id, job_run_id=job_run_id, state=state, outcomes=ends, now=self.clock()):
                outcome.action = JobStateAction.QUARANTINED if quarantined else JobStateAction.RETRY
                outcome.quarantined = quarantined
        if outcome.action is not JobStateAction.STALE:
            outcome.batch_ids = [batch.batch_id for batch in batches]
        self._start_next_quietly(outcome)
        return outcome

    def _running_batches(self, lead: Batch | None, job_run_id: str) -> list[Batch]:
        """The batches of the job run ``job_run_id`` led by ``lead`` (read strongly), when all of them are RUNNING
        it; ``[]`` otherwise (a duplicate, out-of-order or late event)."""
        if lead is None or lead.status != BatchStatus.RUNNING or lead.job_run_id != job_run_id:
            return []
        ids = [member.batch_id for member in lead.run()]
        batches = self.table.batches(ids) if len(ids) > 1 else [lead]
        running = [b for b in batches if b.status == BatchStatus.RUNNING and b.job_run_id == job_run_id]
        return running if len(running) == len(ids) else []

    def _adopt_job_run(self, job_run_id: str) -> dict[str, Any] | None:
        """A job run we started but crashed before recording: find its run from the job run's tags (the lead's
        batch id and the attempt) and record every batch of the run RUNNING it."""
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
        lead = self.table.batch(batch_id)
        if lead is None:
            return None
        token = client_token(batch_id, int(attempt))
        self.table.mark_running(
            batch_id,
            attempt=int(attempt),
            job_run_id=job_run_id,
            client_token=token,
            now=self.clock(),
            members=lead.run()[1:],
        )
        return self.table.get_job_run(job_run_id)
