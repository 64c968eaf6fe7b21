"""Typed, frozen views of the manifest table's items (built from the plain dicts ``codec.from_item`` returns).

The service reads these instead of casting ``dict`` values; the item shapes are documented in
:mod:`lambdas.dal.manifest_table`. Timestamps stay ISO-8601 strings here: they are only compared or shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lambdas.dal.table_core import PK, SK, BatchStatus, ImageStatus


@dataclass(frozen=True)
class Image:
    """An image item: the S3 object version recorded (``size`` in bytes) and where it is in its life cycle."""

    pk: str
    sk: str
    bucket: str
    key: str
    etag: str
    size: int
    status: ImageStatus
    version_id: str | None = None
    label: str | None = None
    batch_id: str | None = None
    recorded_at: str | None = None
    sequencer: str | None = None
    event_time: str | None = None
    last_modified: str | None = None  # the listing's LastModified (images found by listing)
    fate: str | None = None  # superseded | removed (None: the key's live content)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Image:
        """From an image item (``KeyError`` if a required attribute is missing)."""
        return cls(
            pk=item[PK],
            sk=item[SK],
            bucket=item["bucket"],
            key=item["key"],
            etag=item["etag"],
            size=int(item["size"]),
            status=ImageStatus(item["status"]),
            version_id=item.get("version_id"),
            label=item.get("label"),
            batch_id=item.get("batch_id"),
            recorded_at=item.get("recorded_at"),
            sequencer=item.get("sequencer"),
            event_time=item.get("event_time"),
            last_modified=item.get("last_modified"),
            fate=item.get("fate"),
        )


@dataclass(frozen=True)
class RunBatch:
    """One batch of a job run: its id, manifest URI and images (``image_count``), and the batch's own attempt
    number in this run (each batch counts its attempts; the run's clientToken uses the lead's)."""

    batch_id: str
    manifest_uri: str
    images: int = 0
    attempt: int = 0

    def to_map(self) -> dict[str, Any]:
        """The map stored in the lead batch's ``run_batches`` list."""
        return {
            "batch_id": self.batch_id,
            "manifest_uri": self.manifest_uri,
            "images": self.images,
            "attempt": self.attempt,
        }

    @classmethod
    def from_map(cls, item: dict[str, Any]) -> RunBatch:
        """From a ``run_batches`` map (``KeyError`` without ``batch_id``)."""
        return cls(
            item["batch_id"],
            str(item.get("manifest_uri") or ""),
            int(item.get("images", 0)),
            int(item.get("attempt", 0)),
        )


@dataclass(frozen=True)
class Batch:
    """A batch item: its status, reservation counts (images) and job run attempts."""

    batch_id: str
    status: BatchStatus
    seq: int = 0
    target: int = 0
    remaining: int = 0
    claimed: int = 0
    image_count: int = 0
    attempts: int = 0
    failures: int = 0
    manifest_uri: str | None = None
    job_run_id: str | None = None
    reason: str | None = None
    created_at: str | None = None
    start_errors: int = 0  # StartJobRun calls of attempt ``start_retry_attempt`` that failed
    start_retry_at: str | None = None  # when the tick may call StartJobRun again (ISO-8601 UTC)
    start_retry_attempt: int | None = None
    # job runs of several batches (issue 19): every batch in a run has the run's lead (first batch) and clientToken;
    # the lead alone lists the run's batches (None: a batch never in a run, or started before runs took several)
    run_lead: str | None = None
    run_token: str | None = None
    run_batches: tuple[RunBatch, ...] | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Batch:
        """From a batch item (``KeyError`` without ``batch_id``/``status``; absent counts are 0)."""
        return cls(
            batch_id=item["batch_id"],
            status=BatchStatus(item["status"]),
            seq=int(item.get("seq", 0)),
            target=int(item.get("target", 0)),
            remaining=int(item.get("remaining", 0)),
            claimed=int(item.get("claimed", 0)),
            image_count=int(item.get("image_count", 0)),
            attempts=int(item.get("attempts", 0)),
            failures=int(item.get("failures", 0)),
            manifest_uri=item.get("manifest_uri"),
            job_run_id=item.get("job_run_id"),
            reason=item.get("reason"),
            created_at=item.get("created_at"),
            start_errors=int(item.get("start_errors", 0)),
            start_retry_at=item.get("start_retry_at"),
            start_retry_attempt=None if item.get("start_retry_attempt") is None else int(item["start_retry_attempt"]),
            run_lead=item.get("run_lead"),
            run_token=item.get("run_token"),
            run_batches=None if item.get("run_batches") is None else tuple(map(RunBatch.from_map, item["run_batches"])),
        )

    def run(self) -> tuple[RunBatch, ...]:
        """The batches of the job run this batch leads (itself first): ``run_batches``, or only itself when none
        are recorded (a batch started before job runs took several batches)."""
        if self.run_batches:
            return self.run_batches
        return (RunBatch(self.batch_id, self.manifest_uri or "", self.image_count, self.attempts),)


@dataclass(frozen=True)
class Slot:
    """The job run slot: ``holder`` (batch id, None when free), its ``attempt`` and ``since`` (ISO-8601 UTC)."""

    holder: str | None = None
    attempt: int | None = None
    since: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> Slot:
        """From the slot item (None or ``{}``: a slot never used, free)."""
        item = item or {}
        attempt = item.get("attempt")
        return cls(
            holder=item.get("holder"), attempt=None if attempt is None else int(attempt), since=item.get("since")
        )
