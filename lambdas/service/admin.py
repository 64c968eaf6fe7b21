"""Operator (CLI) operations: start a job run by hand, show its request, the manifest's status."""

from __future__ import annotations

from typing import Any

from lambdas.dal.manifest_table import BatchStatus
from lambdas.dal.records import Batch
from lambdas.service.base import (
    ServiceBase,
)
from lambdas.service.outcomes import (
    FlushOutcome,
)


class Admin(ServiceBase):
    """Operator (CLI) operations: start a job run by hand, show its request, the manifest's status."""

    def start_job(self, batch_id: str | None = None) -> FlushOutcome:
        """Manual start (``fruits start-job``): flush and start the next batch, or re-run ``batch_id``.

        Re-running requeues a SUCCEEDED / QUARANTINED / SEALED batch (``failures`` reset, next attempt number)
        and starts it if the job run slot is free. Raises ValueError for an unknown batch or one in another state,
        RuntimeError if the slot is held by another batch.
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
        if not self.table.acquire_slot(batch_id, attempts=batch.attempts, now=self.clock()):
            raise RuntimeError(f"batch {batch_id} queued; job run slot was taken concurrently")
        start = self._call_start_job_run(batch, batch.attempts + 1)
        if start.error is not None:
            raise start.error  # recorded on the batch; the operator sees the AWS error
        return FlushOutcome(started=[start.run] if start.run else [])

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
        batch = self.table.batch(batch_id)
        if batch is None:
            raise ValueError(f"unknown batch {batch_id!r}")
        if not batch.manifest_uri:
            raise ValueError(f"batch {batch_id} is {batch.status} and has no manifest yet")
        return self.start_request(batch)

    def status(self) -> dict[str, Any]:
        """Snapshot for ``fruits status``: pending count, batches (sorted), images by status, the job run slot."""
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
            "slot": self.table.get_slot(),
        }
