"""Flush and reconcile: seal what waits, repair lost events, crashed seals and unstarted batches."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.dal.manifest_table import BatchStatus
from lambdas.service.base import (
    REPAIR_AFTER_SECONDS,
    TERMINAL_FAILURE,
    TERMINAL_SUCCESS,
    ServiceBase,
    log,
)
from lambdas.service.outcomes import (
    FlushOutcome,
    JobStateOutcome,
    ReconcileOutcome,
    TickOutcome,
)


class Repair(ServiceBase):
    """Flush and reconcile: seal what waits, repair lost events, crashed seals and unstarted batches."""

    # --- flush, reconcile, manual --------------------------------------------------------------------
    def flush(self) -> FlushOutcome:
        """Seal whatever is pending (≥ 1 image, ≤ BATCH_MAX_IMAGES per batch) and start the next batch."""
        outcome = FlushOutcome(sealed=self.seal_pending(reason="flush"))
        self._start_next_quietly(outcome)
        return outcome

    def reconcile(self, *, time_left_ms: Callable[[], int] | None = None) -> ReconcileOutcome:
        """Repair what lost events and crashed invocations left behind.

        1. record images missing from the manifest: one resumable backfill run over IMAGES_PREFIX
           (:meth:`lambdas.service.backfill.Backfill.backfill`; it stops while ``time_left_ms()`` — the Lambda
           context's ``get_remaining_time_in_millis`` — still leaves time for the steps below, and the next
           reconcile resumes from the cursor stored in the table);
        2. resume CLAIMING batches (a sealer crashed mid-claim);
        3. re-drive the batch holding the job run slot without a job run (crash between claim and start:
           same attempt, same ``clientToken``, so AWS cannot start it twice);
        4. apply the terminal state of the RUNNING job run when its event is RECONCILE_LOST_EVENT_MINUTES late;
        5. seal by threshold, then start the next job run (every sealed batch waiting) if the slot is free.
        """
        outcome = ReconcileOutcome()
        listing = self.backfill(time_left_ms=time_left_ms)  # type: ignore[attr-defined]
        outcome.backfill = listing
        outcome.listed, outcome.skipped, outcome.missing_recorded = listing.listed, listing.skipped, listing.recorded
        for batch in self.table.batches_by_status(BatchStatus.CLAIMING):
            outcome.claiming_resumed.append(batch["batch_id"])
            if self.fill_and_seal(batch["batch_id"]):
                outcome.sealed.append(batch["batch_id"])
        redrive = self._redrive_starting(force=True)  # type: ignore[attr-defined]
        if redrive is not None and redrive.run is not None:
            outcome.redriven.append(redrive.run)  # reported as re-driven, not as a new start
        else:
            outcome.add(redrive)  # a failed re-drive counts as a start failure
        outcome.recovered = self._recover_lost_terminal_event()
        if outcome.recovered:  # its own next start may have failed too
            outcome.start_failures += outcome.recovered.start_failures
            outcome.start_quarantined += outcome.recovered.start_quarantined
        outcome.sealed += self.seal_pending(reason="threshold")
        self._start_next_quietly(outcome)
        return outcome

    def repair_stuck(self, outcome: TickOutcome) -> None:
        """The tick's repair (issue 18), so no fault waits for the daily reconcile; what it did goes into
        ``outcome``:

        1. a batch CLAIMING for REPAIR_AFTER_SECONDS (its sealer died, or a claim transaction / the manifest
           PutObject failed) is filled and sealed (:meth:`fill_and_seal`, safe beside a live sealer);
        2. the RUNNING job run holding the slot whose terminal state's event is RECONCILE_LOST_EVENT_MINUTES late
           is ended by that state read with GetJobRun (frees the slot, starts the next batch);
        3. a job run STARTING whose start is due again is re-driven (same batches, attempt and clientToken), or,
           when the slot is free, the next job run (every SEALED batch waiting, seal order) is started.
        A repair step that fails (an AWS error, GSI lag) is logged and left to the next tick.
        """
        now = self.clock()
        for item in self.table.batches_by_status(BatchStatus.CLAIMING, limit=10):
            created = item.get("created_at")
            if not created or (now - dt.datetime.fromisoformat(created)).total_seconds() < REPAIR_AFTER_SECONDS:
                continue
            log.warning("resuming a batch stuck CLAIMING", extra={"batch_id": item["batch_id"], "since": created})
            outcome.resumed.append(item["batch_id"])
            try:
                if self.fill_and_seal(item["batch_id"]):  # type: ignore[attr-defined]
                    outcome.sealed.append(item["batch_id"])
            except (ClientError, BotoCoreError, RuntimeError) as err:
                log.warning("batch still CLAIMING", extra={"batch_id": item["batch_id"], "error": str(err)})
        recovered = self._recover_lost_terminal_event()
        if recovered:
            outcome.recovered = recovered
            for run in recovered.started:
                outcome.started.append(run)
            outcome.start_failures += recovered.start_failures
        self._start_next_quietly(outcome)  # type: ignore[attr-defined]

    def _recover_lost_terminal_event(self) -> JobStateOutcome | None:
        minutes = self.settings.reconcile_lost_event_minutes
        holder = self.table.slot().holder if minutes > 0 else None
        batch = self.table.batch(holder) if holder else None
        if batch is None or batch.status != BatchStatus.RUNNING or not batch.job_run_id:
            return None
        job_run_id = batch.job_run_id
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
        if not isinstance(updated, dt.datetime) or self.clock() - updated < dt.timedelta(minutes=minutes):
            return None  # the EventBridge event may still come
        log.warning("applying a terminal state whose event was lost", extra={"job_run_id": job_run_id, "state": state})
        return self.handle_job_state(
            application_id=self.settings.emr_application_id, job_run_id=job_run_id, state=state
        )
