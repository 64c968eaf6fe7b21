"""Operator (CLI) operations: start a job run by hand, show its request, the manifest's status."""

from __future__ import annotations

from typing import Any

from lambdas.dal.manifest_table import BatchStatus
from lambdas.dal.records import Batch, RunBatch
from lambdas.service.base import (
    ServiceBase,
)
from lambdas.service.outcomes import (
    FlushOutcome,
    JobRunStart,
)


class Admin(ServiceBase):
    """Operator (CLI) operations: start a job run by hand, show its request, the manifest's status."""

    def start_job(self, batch_id: str | None = None) -> FlushOutcome:
        """Manual start (``fruits start-job``): flush and start the next job run, or re-run ``batch_id``.

        Re-running requeues a SUCCEEDED / QUARANTINED / SEALED batch (``failures`` reset, next attempt number)
        and starts a job run of that batch alone if the job run slot is free (other sealed batches wait for the
        next run: a batch under investigation does not count failures against them). Raises ValueError for an
        unknown batch or one in another state, RuntimeError if the slot is held by another run.
        """
        if batch_id is None:
            return self.flush()
        batch = self.table.batch(batch_id)
        if batch is None:
            raise ValueError(f"unknown batch {batch_id!r}")
        if not self.table.requeue_batch(batch_id, now=self.clock()):
            raise ValueError(f"batch {batch_id} is {batch.status}; only SEALED, SUCCEEDED or QUARANTINED re-run")
        holder = self.table.slot().holder
        if holder:
            raise RuntimeError(f"batch {batch_id} queued; job run slot busy with batch {holder}")
        batch = self.table.batch(batch_id) or batch
        start = self._start_run([batch], None)  # type: ignore[attr-defined]
        if not isinstance(start, JobRunStart):
            raise RuntimeError(f"batch {batch_id} queued; job run slot was taken concurrently")
        if start.error is not None:
            raise start.error  # recorded on the batch; the operator sees the AWS error
        return FlushOutcome(started=[start.run] if start.run else [])

    def dry_run_request(self, batch_id: str | None = None) -> dict[str, Any]:
        """The ``start_job_run`` request the next start would send: the next job run (every SEALED batch waiting,
        :meth:`next_run`), or with ``batch_id`` a re-run of that batch alone (``fruits start-job --batch-id``).

        Changes nothing. Raises ValueError when there is no such batch or it has no manifest yet.
        """
        if batch_id is None:
            run, _ = self.next_run()  # type: ignore[attr-defined]
            if not run:
                pending, _ = self.table.counter()
                raise ValueError(f"no sealed batch to start ({pending} pending images; run without --dry-run to flush)")
            members = [RunBatch(b.batch_id, b.manifest_uri or "", b.image_count, b.attempts + 1) for b in run]
            return self.run_request(members, run[0].attempts + 1)  # type: ignore[attr-defined]
        batch = self.table.batch(batch_id)
        if batch is None:
            raise ValueError(f"unknown batch {batch_id!r}")
        if not batch.manifest_uri:
            raise ValueError(f"batch {batch_id} is {batch.status} and has no manifest yet")
        return self.start_request(batch)

    def status(self) -> dict[str, Any]:
        """Snapshot for ``fruits status``: pending count, batches (sorted), images by status, the job run slot, and
        ``runs`` (:func:`job_runs_of`)."""
        pending, seq = self.table.counter()
        batches = self.table.all_batches()
        images = {"PENDING": pending, "CLAIMED": 0, "DONE": 0}
        for record in map(Batch.from_item, batches):
            count = record.image_count or record.claimed
            images["DONE" if record.status == BatchStatus.SUCCEEDED else "CLAIMED"] += count
        return {
            "pending": pending,
            "batches_created": seq,
            "images": images,
            "batches": batches,
            "runs": job_runs_of(batches),
            "slot": self.table.get_slot(),
        }


def job_runs_of(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every job run the batch items record, oldest first: ``job_run_id``, ``state``, ``lead`` (batch id),
    ``attempt`` (the lead's), ``client_token``, ``started_at``, ``batch_ids`` (seal order) and ``images`` (their
    ``image_count``). A job run started before runs took several batches has its one batch as lead."""
    runs: dict[str, dict[str, Any]] = {}
    for batch in sorted(batches, key=lambda item: item["batch_id"]):
        for job_run_id, entry in (batch.get("job_runs") or {}).items():
            lead = entry.get("lead") or batch["batch_id"]
            run = runs.setdefault(job_run_id, {"job_run_id": job_run_id, "lead": lead, "batch_ids": [], "images": 0})
            run["batch_ids"].append(batch["batch_id"])
            run["images"] += int(batch.get("image_count") or batch.get("claimed") or 0)
            if batch["batch_id"] == lead or "state" not in run:
                run.update(
                    state=entry.get("state"),
                    attempt=entry.get("attempt"),
                    client_token=entry.get("client_token"),
                    started_at=entry.get("started_at"),
                )
    return sorted(runs.values(), key=lambda run: (str(run.get("started_at") or ""), run["job_run_id"]))
