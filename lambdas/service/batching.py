"""Ingest: record an image, seal batches at the threshold (reserve, claim, write the manifest, seal)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, replace

from lambdas.dal.manifest_table import BatchStatus, Counts, RecordResult
from lambdas.dal.records import Batch
from lambdas.identity import normalize_etag, normalize_version_id
from lambdas.logic.batches import age_seconds, flush_claim_size, new_batch_id, seal_reason, threshold_claim_size
from lambdas.logic.keys import ImageRef, label_for_key, skip_reason
from lambdas.logic.manifest import erase_manifest_key, manifest_key, render_erasures, render_manifest
from lambdas.resources import MANIFESTS_PREFIX
from lambdas.service.base import (
    MANIFEST_GSI_WAIT_SECONDS,
    ServiceBase,
    log,
)
from lambdas.service.outcomes import IngestOutcome, TickOutcome

OTHER_BUCKET = "other_bucket"  # skip reason of a record naming a bucket other than DATA_BUCKET (refused)
OLDEST_PENDING_MEMO_SECONDS = 60.0  # an ingest re-reads the oldest pending image at most this often (seconds)


class Batching(ServiceBase):
    """Ingest: record an image, seal batches at the threshold (reserve, claim, write the manifest, seal)."""

    # --- ingest --------------------------------------------------------------------------------------
    def ingest(self, ref: ImageRef) -> IngestOutcome:
        """:meth:`record` one S3 object, then :meth:`seal_if_due` (seal and start batches at the threshold).

        A duplicate delivery records nothing but still seals if pending ≥ threshold, so the SQS retry of an
        invocation that crashed after recording completes its work. Raises ``ClientError`` on AWS errors.
        """
        outcome, counts = self._record(ref)
        if counts is not None:
            self.seal_if_due(outcome, counts)
        return outcome

    def record(self, ref: ImageRef) -> IngestOutcome:
        """Record one S3 object (decoded key) as a PENDING image, without sealing.

        Skips keys outside IMAGES_PREFIX / non-image suffixes / without an ETag (``skipped`` holds the reason);
        ``duplicate=True`` when the object version was already recorded. ``pending`` is the counter after it.
        """
        return self._record(ref)[0]

    def _record(self, ref: ImageRef) -> tuple[IngestOutcome, Counts | None]:
        """:meth:`record`, and the counter read after it (None when the object was skipped): :meth:`ingest`
        decides on a seal from that same read (one GetItem a photo, not two)."""
        outcome = IngestOutcome(uri=ref.uri)
        reason = self._skip_reason(ref)
        if reason is not None:
            outcome.skipped = reason
            return outcome, None
        ref = replace(
            ref, etag=normalize_etag(ref.etag), size=int(ref.size), version_id=normalize_version_id(ref.version_id)
        )
        if not ref.etag:
            outcome.skipped = "missing_etag"
            return outcome, None
        label = label_for_key(ref.key, self.settings.images_prefix)
        now = self.clock()
        result, others = self.table.record_version_and_others(ref, label=label, now=now)
        outcome.recorded = result is not RecordResult.DUPLICATE
        outcome.duplicate = not outcome.recorded
        if result is RecordResult.SUPERSEDED:
            outcome.superseded = 1  # a later event of the key was applied first: never featurized
        elif others and (result is RecordResult.RECORDED or ref.sequencer):  # a duplicate event: a crashed try's
            outcome.superseded = self.table.supersede_older(
                ref.bucket, ref.key, stamp=ref.stamp, keep_sk=ref.item_key[1], etag=ref.etag, now=now
            )
        counts = self.table.counts()
        outcome.pending = counts.pending
        return outcome, counts

    def remove(self, ref: ImageRef) -> IngestOutcome:
        """Apply an ObjectRemoved event (Delete / DeleteMarkerCreated) for ``ref.key``, then seal if due.

        The key's versions up to the event's sequencer are marked removed: a pending one is never featurized, a
        claimed or featurized one queues an erasure for the next sealed batch (``erasure_queued``). A removal
        older than the key's latest event is ignored (``skipped = "stale_event"``).
        """
        outcome = IngestOutcome(uri=ref.uri)
        reason = self._skip_reason(ref)
        if reason is not None:
            outcome.skipped = reason
            return outcome
        ref = replace(ref, version_id=normalize_version_id(ref.version_id))
        removal = self.table.mark_removed(ref.bucket, ref.key, stamp=ref.stamp, now=self.clock())
        if not removal.applied:
            outcome.skipped = "stale_event"
            return outcome
        outcome.removed, outcome.erasure_queued = removal.images_removed, removal.erasure_queued
        counts = self.table.counts()
        outcome.pending = counts.pending
        self.seal_if_due(outcome, counts)
        return outcome

    def _skip_reason(self, ref: ImageRef) -> str | None:
        """Why an S3 event's object is not recorded: ``other_bucket`` (not DATA_BUCKET: refused, issue 18), or
        :func:`lambdas.logic.keys.skip_reason`; None when it is an image of the data bucket."""
        if ref.bucket != self.settings.data_bucket:
            return OTHER_BUCKET
        return skip_reason(ref.key, self.settings.images_prefix)

    def seal_if_due(self, outcome: IngestOutcome, counts: Counts | None = None) -> None:
        """Seal when due (BATCH_THRESHOLD pending, or the oldest pending image waited BATCH_MAX_WAIT_SECONDS) and
        start the next batch; what it did goes into ``outcome``. ``counts``: the counter as just read (None: read
        it now); a seal re-reads it anyway before reserving (:meth:`seal_pending`)."""
        reason = self._due(counts if counts is not None else self.table.counts())
        if reason is not None:
            outcome.sealed = self.seal_pending(reason=reason)
            self._start_next_quietly(outcome)

    def tick(self) -> TickOutcome:
        """The scheduled check (every minute): seal pending images that waited BATCH_MAX_WAIT_SECONDS, and repair.

        Nothing pending: no GSI query for images. Otherwise one GSI query for the oldest pending image, then a seal
        (``reason="max_wait"`` or ``"threshold"``) if due. Then, always, the repair (:meth:`repair_stuck`: stuck
        CLAIMING / STARTING batches, a lost terminal job state, the next job run when the slot is free).
        ``oldest_pending_age_seconds`` is reported for the OldestPendingAgeSeconds metric (None when none), and
        ``sealed_backlog_images`` for SealedBacklogImages (one more GSI query when the slot is busy).
        """
        counts = self.table.counts()
        outcome = TickOutcome(pending=counts.pending)
        if counts.pending or counts.erasures:
            outcome.oldest_pending_age_seconds = self.oldest_pending_age() if counts.pending else None
            reason = self._due(counts, oldest_age=outcome.oldest_pending_age_seconds)
            if reason is not None:
                outcome.sealed = self.seal_pending(reason=reason)
        self.repair_stuck(outcome)  # type: ignore[attr-defined]
        if outcome.sealed_backlog_images is None:  # not measured by a start: the slot is busy
            outcome.sealed_backlog_images = self.sealed_backlog_images()  # type: ignore[attr-defined]
        return outcome

    def oldest_pending_age(self) -> float | None:
        """Seconds the oldest PENDING image has waited (by the injected clock); None if none is visible.

        One GSI query; the answer is remembered for :meth:`_remembered_oldest_age` (per process).
        """
        oldest = self.table.pending_images(limit=1)
        now = self.clock()
        if not oldest:
            self._oldest_pending = None
            return None
        age = age_seconds(oldest[0]["recorded_at"], now)
        self._oldest_pending = (now - dt.timedelta(seconds=age), now)
        return age

    def _remembered_oldest_age(self) -> float | None:
        """The oldest pending image's age for the check every ingest makes, with at most one GSI query a minute.

        Sound because images become pending with ``recorded_at`` = now: until a seal (which forgets the memo) the
        oldest pending image can only stay or get younger, so a remembered age is never too small for long; it is
        re-read when older than :data:`OLDEST_PENDING_MEMO_SECONDS`, and before it is acted on (a seal). The tick
        always queries. On moto a GSI query costs O(table size), so this also keeps ``fruits demo`` linear.
        """
        memo = self._oldest_pending
        now = self.clock()
        if memo is None or (now - memo[1]).total_seconds() >= OLDEST_PENDING_MEMO_SECONDS:
            return self.oldest_pending_age()
        age = (now - memo[0]).total_seconds()
        return self.oldest_pending_age() if age >= self.settings.batch_max_wait_seconds else age

    def _due(self, counts: Counts, *, oldest_age: float | None = None) -> str | None:
        """The seal reason now: count, then age (of the oldest pending image, else erasure; one GSI query each).

        ``oldest_age`` is the oldest pending image's age when the caller already read it.
        """
        settings = self.settings
        if counts.pending >= settings.batch_threshold:
            return "threshold"
        if settings.batch_max_wait_seconds == 0:
            return None
        if counts.pending > 0:
            age = oldest_age if oldest_age is not None else self._remembered_oldest_age()
            reason = seal_reason(
                counts.pending,
                age,
                threshold=settings.batch_threshold,
                max_wait_seconds=settings.batch_max_wait_seconds,
            )
            if reason is not None:
                return reason
        if counts.erasures > 0:
            oldest = self.table.pending_erasures(limit=1)
            if oldest and age_seconds(oldest[0]["requested_at"], self.clock()) >= settings.batch_max_wait_seconds:
                return "max_wait"  # removals wait no longer than images (a batch of erasures only)
        return None

    # --- sealing -------------------------------------------------------------------------------------
    def seal_pending(self, *, reason: str = "threshold") -> list[str]:
        """Reserve, claim, write manifests and seal batches while enough images are pending.

        ``reason="threshold"`` seals multiples of BATCH_THRESHOLD (capped at BATCH_MAX_IMAGES) while pending ≥
        threshold; ``reason="flush"`` or ``"max_wait"`` seals everything pending (≥ 1) in batches of ≤
        BATCH_MAX_IMAGES.
        Returns the sealed batch ids in sealing order. Safe under any concurrency (see :mod:`lambdas.dal`).
        """
        sealed: list[str] = []
        erasures_only_tried = False
        self._oldest_pending = None  # the oldest pending image is claimed now: read it again next time
        while True:
            counts = self.table.counts()
            pending, seq = counts.pending, counts.seq
            if reason in ("flush", "max_wait"):
                size = flush_claim_size(pending, self.settings.batch_max_images)
            else:
                size = threshold_claim_size(pending, self.settings.batch_threshold, self.settings.batch_max_images)
            if size == 0 and (reason == "threshold" or counts.erasures == 0 or erasures_only_tried):
                return sealed
            erasures_only_tried = size == 0  # a batch of 0 images that carries the pending erasures
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
            batch = self.table.batch(batch_id)
            if batch is None or batch.status != BatchStatus.CLAIMING:
                return False
            remaining = batch.remaining
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

    def _write_manifest_and_seal(self, batch: Batch) -> bool:
        batch_id, claimed = batch.batch_id, batch.claimed
        for erasure in self.table.pending_erasures(limit=1000):
            self.table.claim_erasure(erasure, batch_id)  # every sealed batch carries the erasures queued so far
        erasures = self.table.batch_erasures(batch_id)
        if claimed == 0 and not erasures:
            self.table.drop_empty_batch(batch_id)  # every reservation went back to the counter: nothing to run
            return False
        if erasures:
            self.s3.put_object(
                Bucket=self.settings.data_bucket,
                Key=erase_manifest_key(MANIFESTS_PREFIX, batch_id),
                Body=render_erasures(erasures).encode("utf-8"),
                ContentType="application/x-ndjson",
            )
        images = self.table.images_of_batch(batch_id)
        for wait in MANIFEST_GSI_WAIT_SECONDS:
            if len(images) >= claimed:
                break
            self.sleep(wait)
            images = self.table.images_of_batch(batch_id)
        if len(images) != claimed:
            raise RuntimeError(f"batch {batch_id}: GSI shows {len(images)} images, {claimed} claimed; retry later")
        key = manifest_key(MANIFESTS_PREFIX, batch_id)
        self.s3.put_object(
            Bucket=self.settings.data_bucket,
            Key=key,
            Body=render_manifest(asdict(image) for image in images if image.fate is None).encode("utf-8"),
            ContentType="application/x-ndjson",
        )
        manifest_uri = f"s3://{self.settings.data_bucket}/{key}"
        sealed = self.table.seal_batch(batch_id, image_count=claimed, manifest_uri=manifest_uri, now=self.clock())
        if sealed:
            log.info("batch sealed", extra={"batch_id": batch_id, "images": claimed, "manifest_uri": manifest_uri})
        return sealed
