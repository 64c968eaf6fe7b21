"""Manifest table: the job run slot and job run items (acquire, running, finish, failed start)."""

from __future__ import annotations

from typing import Any

from lambdas.dal.codec import to_item, values
from lambdas.dal.table_core import (
    GSI_PK,
    PK,
    SLOT_KEY,
    BatchStatus,
    TableCore,
    _free_slot,
    _key,
    batch_key,
    job_run_key,
)


class JobRunItems(TableCore):
    """Job run slot and job run operations (see :mod:`lambdas.dal.manifest_table` for item shapes)."""

    # --- job run slot and job runs -------------------------------------------------------------------
    def get_slot(self) -> dict[str, Any]:
        """The job run slot item (``{}`` when never used; free when it has no ``holder``)."""
        return self._get(SLOT_KEY) or {}

    def acquire_slot(self, batch_id: str, *, attempts: int, now: str) -> bool:
        """Take the free job run slot for SEALED ``batch_id`` and move it to STARTING with attempt ``attempts+1``."""
        attempt = attempts + 1
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(SLOT_KEY),
                        "UpdateExpression": "SET holder = :b, attempt = :a, since = :now",
                        "ConditionExpression": "attribute_not_exists(holder)",
                        "ExpressionAttributeValues": values(b=batch_id, a=attempt, now=now),
                    }
                },
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": "SET #s = :starting, #gpk = :gpk, attempts = :a, updated_at = :now",
                        "ConditionExpression": "#s = :sealed AND attempts = :prev",
                        "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK},
                        "ExpressionAttributeValues": values(
                            starting=BatchStatus.STARTING.value,
                            gpk=f"BATCHES#{BatchStatus.STARTING.value}",
                            a=attempt,
                            now=now,
                            sealed=BatchStatus.SEALED.value,
                            prev=attempts,
                        ),
                    }
                },
            ]
        )
        return codes is None

    def mark_running(self, batch_id: str, *, attempt: int, job_run_id: str, client_token: str, now: str) -> bool:
        """STARTING → RUNNING with ``job_run_id`` and the job run lookup item; False if already recorded."""
        job_run = {
            "attempt": attempt,
            "client_token": client_token,
            "state": "SUBMITTED",
            "started_at": now,
            "updated_at": now,
        }
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": "SET #s = :running, #gpk = :gpk, job_run_id = :j, "
                        "job_runs.#j = :jr, updated_at = :now",
                        "ConditionExpression": "#s = :starting AND attempts = :a",
                        "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK, "#j": job_run_id},
                        "ExpressionAttributeValues": values(
                            running=BatchStatus.RUNNING.value,
                            gpk=f"BATCHES#{BatchStatus.RUNNING.value}",
                            j=job_run_id,
                            jr=job_run,
                            now=now,
                            starting=BatchStatus.STARTING.value,
                            a=attempt,
                        ),
                    }
                },
                {
                    "Put": {
                        "Item": to_item(
                            {
                                **job_run_key(job_run_id),
                                "type": "job_run",
                                "batch_id": batch_id,
                                "attempt": attempt,
                                "client_token": client_token,
                                "started_at": now,
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": PK},
                    }
                },
            ]
        )
        return codes is None

    def get_job_run(self, job_run_id: str) -> dict[str, Any] | None:
        """The job run lookup item (``batch_id``, ``attempt``, ``client_token``) or None if unknown."""
        return self._get(job_run_key(job_run_id))

    def finish_job_run(self, batch_id: str, *, job_run_id: str, state: str, new_status: BatchStatus, now: str) -> bool:
        """End the batch's RUNNING job run ``job_run_id`` and free the slot, atomically.

        ``new_status`` is SUCCEEDED, SEALED (retry: ``failures += 1``) or QUARANTINED (``failures += 1``). False if
        the batch is not RUNNING that job run any more (duplicate or stale event).
        """
        failed = new_status is not BatchStatus.SUCCEEDED
        update = (
            "SET #s = :new, #gpk = :gpk, job_runs.#j.#st = :state, job_runs.#j.updated_at = :now, updated_at = :now"
            + (", failures = failures + :one" if failed else ", finished_at = :now")
        )
        vals = {
            "new": new_status.value,
            "gpk": f"BATCHES#{new_status.value}",
            "state": state,
            "now": now,
            "running": BatchStatus.RUNNING.value,
            "j": job_run_id,
            "b": batch_id,
        }
        if failed:
            vals["one"] = 1
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": update,
                        "ConditionExpression": "#s = :running AND job_run_id = :j",
                        "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK, "#j": job_run_id, "#st": "state"},
                        "ExpressionAttributeValues": values(**vals),
                    }
                },
                _free_slot(batch_id, now),
            ]
        )
        return codes is None

    def fail_start(self, batch_id: str, *, attempt: int, error: str, quarantine: bool, now: str) -> bool:
        """A ``start_job_run`` call failed: STARTING → SEALED (retry later) or QUARANTINED, free the slot."""
        new_status = BatchStatus.QUARANTINED if quarantine else BatchStatus.SEALED
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": "SET #s = :new, #gpk = :gpk, failures = failures + :one, "
                        "last_error = :err, updated_at = :now",
                        "ConditionExpression": "#s = :starting AND attempts = :a",
                        "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK},
                        "ExpressionAttributeValues": values(
                            new=new_status.value,
                            gpk=f"BATCHES#{new_status.value}",
                            one=1,
                            err=error[:1000],
                            now=now,
                            starting=BatchStatus.STARTING.value,
                            a=attempt,
                        ),
                    }
                },
                _free_slot(batch_id, now),
            ]
        )
        return codes is None
