"""Manifest table: the job run slot and job run items (acquire, running, finish, deferred start)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from lambdas.dal.codec import to_item, values
from lambdas.dal.records import Slot
from lambdas.dal.table_core import (
    PK,
    SLOT_KEY,
    BatchStatus,
    TableCore,
    _free_slot,
    _key,
    job_run_key,
)


class JobRunItems(TableCore):
    """Job run slot and job run operations (see :mod:`lambdas.dal.manifest_table` for item shapes)."""

    # --- job run slot and job runs -------------------------------------------------------------------
    def get_slot(self) -> dict[str, Any]:
        """The job run slot item (``{}`` when never used; free when it has no ``holder``)."""
        return self._get(SLOT_KEY) or {}

    def slot(self) -> Slot:
        """The job run slot as a typed record (strongly consistent)."""
        return Slot.from_item(self._get(SLOT_KEY))

    def acquire_slot(self, batch_id: str, *, attempts: int, now: dt.datetime) -> bool:
        """Take the free job run slot for SEALED ``batch_id`` and move it to STARTING with attempt ``attempts+1``."""
        attempt = attempts + 1
        take_slot = {
            "Update": {
                "Key": _key(SLOT_KEY),
                "UpdateExpression": "SET holder = :b, attempt = :a, since = :now",
                "ConditionExpression": "attribute_not_exists(holder)",
                "ExpressionAttributeValues": values(b=batch_id, a=attempt, now=now),
            }
        }
        return self._transition(
            batch_id,
            BatchStatus.STARTING,
            expect="#s = :sealed AND attempts = :prev",
            now=now,
            set_clause="attempts = :a, start_errors = :zero",
            also=[take_slot],
            a=attempt,
            zero=0,
            sealed=BatchStatus.SEALED.value,
            prev=attempts,
        )

    def mark_running(
        self, batch_id: str, *, attempt: int, job_run_id: str, client_token: str, now: dt.datetime
    ) -> bool:
        """STARTING → RUNNING with ``job_run_id`` and the job run lookup item; False if already recorded."""
        job_run = {
            "attempt": attempt,
            "client_token": client_token,
            "state": "SUBMITTED",
            "started_at": now,
            "updated_at": now,
        }
        lookup = {
            **job_run_key(job_run_id),
            "type": "job_run",
            "batch_id": batch_id,
            "attempt": attempt,
            "client_token": client_token,
            "started_at": now,
        }
        put_lookup = {
            "Put": {
                "Item": to_item(lookup),
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": PK},
            }
        }
        return self._transition(
            batch_id,
            BatchStatus.RUNNING,
            expect="#s = :starting AND attempts = :a",
            now=now,
            set_clause="job_run_id = :j, job_runs.#j = :jr",
            names={"#j": job_run_id},
            also=[put_lookup],
            j=job_run_id,
            jr=job_run,
            starting=BatchStatus.STARTING.value,
            a=attempt,
        )

    def get_job_run(self, job_run_id: str) -> dict[str, Any] | None:
        """The job run lookup item (``batch_id``, ``attempt``, ``client_token``) or None if unknown."""
        return self._get(job_run_key(job_run_id))

    def finish_job_run(
        self, batch_id: str, *, job_run_id: str, state: str, new_status: BatchStatus, now: dt.datetime
    ) -> bool:
        """End the batch's RUNNING job run ``job_run_id`` and free the slot, atomically.

        ``new_status`` is SUCCEEDED, SEALED (retry: ``failures += 1``) or QUARANTINED (``failures += 1``). False if
        the batch is not RUNNING that job run any more (duplicate or stale event).
        """
        failed = new_status is not BatchStatus.SUCCEEDED
        extra = {"one": 1} if failed else {}
        return self._transition(
            batch_id,
            new_status,
            expect="#s = :running AND job_run_id = :j",
            now=now,
            set_clause="job_runs.#j.#st = :state, job_runs.#j.updated_at = :now"
            + (", failures = failures + :one" if failed else ", finished_at = :now"),
            names={"#j": job_run_id, "#st": "state"},
            also=[_free_slot(batch_id, now)],
            state=state,
            running=BatchStatus.RUNNING.value,
            j=job_run_id,
            **extra,
        )

    def defer_start(self, batch_id: str, *, attempt: int, error: str, retry_at: dt.datetime, now: dt.datetime) -> bool:
        """A ``start_job_run`` call of attempt ``attempt`` failed: the batch stays STARTING with the job run slot and
        the same attempt (so the retry sends the same clientToken), ``start_errors += 1``, ``last_error``, and
        ``start_retry_at`` = when the tick may retry. Not a failed attempt (``failures`` unchanged). False if the
        batch is no longer STARTING that attempt."""
        return self._transition(
            batch_id,
            BatchStatus.STARTING,
            expect="#s = :starting AND attempts = :a",
            now=now,
            set_clause="start_errors = if_not_exists(start_errors, :zero) + :one, last_error = :err, "
            "start_retry_at = :retry, start_retry_attempt = :a",
            one=1,
            zero=0,
            err=error[:1000],
            retry=retry_at,
            starting=BatchStatus.STARTING.value,
            a=attempt,
        )
