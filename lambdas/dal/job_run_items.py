"""Manifest table: the job run slot and job run items (take the slot for a run, running, finish, deferred start).

A job run takes one or more SEALED batches (issue 19), led by the first: the lead holds the slot and lists the
run's batches (``run_batches``); every batch of the run carries ``run_lead`` and ``run_token`` (the run attempt's
clientToken). Each move of a run's batches is one transaction of one item per batch plus one (the slot or the job
run lookup item): at most :data:`lambdas.logic.job_request.MAX_RUN_BATCHES` batches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from lambdas.dal.codec import to_item, values
from lambdas.dal.records import Batch, RunBatch, Slot
from lambdas.dal.table_core import (
    MAX_TRANSACTION_ITEMS,
    PK,
    SLOT_KEY,
    BatchStatus,
    TableCore,
    _free_slot,
    _key,
    job_run_key,
    transition_update,
)


class Acquire(StrEnum):
    """What taking the job run slot for a run did."""

    TAKEN = "taken"  # the slot is the lead's, every batch of the run is STARTING
    SLOT_BUSY = "slot_busy"  # another run holds the slot: nothing changed
    CHANGED = "changed"  # a batch is no longer SEALED with the attempts read (another starter): nothing changed


class JobRunItems(TableCore):
    """Job run slot and job run operations (see :mod:`lambdas.dal.manifest_table` for item shapes)."""

    # --- job run slot and job runs -------------------------------------------------------------------
    def get_slot(self) -> dict[str, Any]:
        """The job run slot item (``{}`` when never used; free when it has no ``holder``)."""
        return self._get(SLOT_KEY) or {}

    def slot(self) -> Slot:
        """The job run slot as a typed record (strongly consistent)."""
        return Slot.from_item(self._get(SLOT_KEY))

    def acquire_run(self, run: Sequence[Batch], *, token: str, now: dt.datetime) -> Acquire:
        """Take the free job run slot for the SEALED batches ``run`` (seal order, the lead first) in one transaction.

        The slot gets ``holder`` = the lead, its next attempt and ``since``; each batch moves SEALED → STARTING with
        its own next attempt (``attempts + 1``, condition: still SEALED with the ``attempts`` read),
        ``start_errors = 0``, ``run_lead`` and ``run_token`` = ``token``; the lead also records ``run_batches``
        (:class:`RunBatch` of each, its attempt included), so a re-driven start sends the same batches and
        token. Raises ValueError for an empty run or one of more than 99 batches (the transaction limit).
        """
        if not run or len(run) >= MAX_TRANSACTION_ITEMS:
            raise ValueError(f"a job run takes 1 to {MAX_TRANSACTION_ITEMS - 1} batches, got {len(run)}")
        lead = run[0]
        members = [RunBatch(b.batch_id, b.manifest_uri or "", b.image_count, b.attempts + 1) for b in run]
        take_slot = {
            "Update": {
                "Key": _key(SLOT_KEY),
                "UpdateExpression": "SET holder = :b, attempt = :a, since = :now, batches = :n",
                "ConditionExpression": "attribute_not_exists(holder)",
                "ExpressionAttributeValues": values(b=lead.batch_id, a=lead.attempts + 1, now=now, n=len(run)),
            }
        }
        moves = [take_slot]
        for index, (batch, member) in enumerate(zip(run, members, strict=True)):
            is_lead = index == 0
            moves.append(
                transition_update(
                    batch.batch_id,
                    BatchStatus.STARTING,
                    expect="#s = :sealed AND attempts = :prev",
                    now=now,
                    set_clause="attempts = :a, start_errors = :zero, run_lead = :lead, run_token = :t"
                    + (", run_batches = :rb" if is_lead else ""),
                    remove_clause="" if is_lead else "run_batches",
                    a=member.attempt,
                    zero=0,
                    lead=lead.batch_id,
                    t=token,
                    sealed=BatchStatus.SEALED.value,
                    prev=batch.attempts,
                    **({"rb": [m.to_map() for m in members]} if is_lead else {}),
                )
            )
        codes = self._transact(moves)
        if codes is None:
            return Acquire.TAKEN
        return Acquire.SLOT_BUSY if codes[0] == "ConditionalCheckFailed" else Acquire.CHANGED

    def mark_running(
        self,
        batch_id: str,
        *,
        attempt: int,
        job_run_id: str,
        client_token: str,
        now: dt.datetime,
        members: Sequence[RunBatch] = (),
    ) -> bool:
        """STARTING → RUNNING with ``job_run_id`` for the lead ``batch_id`` (attempt ``attempt``) and the run's other
        batches ``members`` (condition: STARTING in the run of ``client_token``), plus the job run lookup item,
        in one transaction; False if already recorded (or the run changed)."""

        def job_run(run_attempt: int) -> dict[str, Any]:
            return {
                "attempt": run_attempt,
                "client_token": client_token,
                "state": "SUBMITTED",
                "lead": batch_id,
                "batches": 1 + len(members),
                "started_at": now,
                "updated_at": now,
            }

        lookup = {
            **job_run_key(job_run_id),
            "type": "job_run",
            "batch_id": batch_id,
            "batch_ids": [batch_id, *(m.batch_id for m in members)],
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
        others = [
            transition_update(
                member.batch_id,
                BatchStatus.RUNNING,
                expect="#s = :starting AND run_token = :t",
                now=now,
                set_clause="job_run_id = :j, job_runs.#j = :jr",
                names={"#j": job_run_id},
                j=job_run_id,
                jr=job_run(member.attempt),
                starting=BatchStatus.STARTING.value,
                t=client_token,
            )
            for member in members
        ]
        return self._transition(
            batch_id,
            BatchStatus.RUNNING,
            expect="#s = :starting AND attempts = :a",
            now=now,
            set_clause="job_run_id = :j, job_runs.#j = :jr",
            names={"#j": job_run_id},
            also=[put_lookup, *others],
            j=job_run_id,
            jr=job_run(attempt),
            starting=BatchStatus.STARTING.value,
            a=attempt,
        )

    def get_job_run(self, job_run_id: str) -> dict[str, Any] | None:
        """The job run lookup item (``batch_id`` of the lead, ``batch_ids``, ``attempt``, ``client_token``) or None
        if unknown."""
        return self._get(job_run_key(job_run_id))

    def finish_run(
        self,
        lead_id: str,
        *,
        job_run_id: str,
        state: str,
        outcomes: Sequence[tuple[str, BatchStatus]],
        now: dt.datetime,
    ) -> bool:
        """End RUNNING job run ``job_run_id`` of lead ``lead_id`` and free the slot, atomically.

        ``outcomes``: each batch of the run (the lead included) and its new status, SUCCEEDED, SEALED (retry:
        ``failures += 1``) or QUARANTINED (``failures += 1``). False if any of them is not RUNNING that job run any
        more (a duplicate or stale event): then nothing changed.
        """
        moves = []
        for batch_id, new_status in outcomes:
            failed = new_status is not BatchStatus.SUCCEEDED
            moves.append(
                transition_update(
                    batch_id,
                    new_status,
                    expect="#s = :running AND job_run_id = :j",
                    now=now,
                    set_clause="job_runs.#j.#st = :state, job_runs.#j.updated_at = :now"
                    + (", failures = failures + :one" if failed else ", finished_at = :now"),
                    names={"#j": job_run_id, "#st": "state"},
                    state=state,
                    running=BatchStatus.RUNNING.value,
                    j=job_run_id,
                    **({"one": 1} if failed else {}),
                )
            )
        return self._transact([*moves, _free_slot(lead_id, now)]) is None

    def finish_job_run(
        self, batch_id: str, *, job_run_id: str, state: str, new_status: BatchStatus, now: dt.datetime
    ) -> bool:
        """:meth:`finish_run` of a job run of one batch."""
        return self.finish_run(batch_id, job_run_id=job_run_id, state=state, outcomes=[(batch_id, new_status)], now=now)

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
