"""What each use case returns: plain records (with enums for outcomes) the handlers turn into logs and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from lambdas.service.backfill import BackfillOutcome


class StartResult(StrEnum):
    """How one ``start_job_run`` attempt ended."""

    STARTED = "started"
    # the call failed (after botocore's retries): the batch keeps the slot and its attempt, the tick retries it;
    # never a failed attempt (issue 18: only job runs that ran and FAILED count toward MAX_ATTEMPTS)
    DEFERRED = "deferred"
    FAILED = "failed"  # (before issue 18: the call failed and the batch went back to SEALED)
    QUARANTINED = "quarantined"  # (before issue 18: the MAX_ATTEMPTS-th failed call quarantined the batch)


class JobStateAction(StrEnum):
    """What a job state event did to its batch."""

    IGNORED = "ignored"  # other application, non-terminal state, not a job state event
    UNKNOWN_JOB_RUN = "unknown_job_run"
    STALE = "stale"  # the batch no longer runs that job run (duplicate or late event)
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    QUARANTINED = "quarantined"

    @property
    def failed_run(self) -> bool:
        """The job run ended FAILED / CANCELLED (retried or quarantined)."""
        return self in (JobStateAction.RETRY, JobStateAction.QUARANTINED)


@dataclass
class StartedJobRun:
    """A job run EMR Serverless accepted: its lead batch and attempt, id and token, every batch it takes (seal
    order, the lead first) and their images (the ImagesPerJobRun metric)."""

    batch_id: str
    attempt: int
    job_run_id: str
    client_token: str
    batch_ids: list[str] = field(default_factory=list)
    images: int = 0


@dataclass(frozen=True)
class JobRunStart:
    """The result of starting one batch's job run: ``run`` when STARTED, ``error`` (the ``ClientError``) else."""

    result: StartResult
    batch_id: str
    attempt: int
    run: StartedJobRun | None = None
    error: Exception | None = None
    # images left in SEALED batches behind the slot once this run took its batches (None: not measured, e.g. a
    # re-driven start): the SealedBacklogImages metric
    sealed_backlog_images: int | None = None


@dataclass(kw_only=True)
class JobStarts:
    """Job runs an operation started, and its ``start_job_run`` calls that failed.

    ``start_quarantined`` counts the batches such a failure quarantined (their MAX_ATTEMPTS-th failure): the
    handlers report them as ``BatchesQuarantined`` like a quarantine after a failed job run.
    ``sealed_backlog_images``: images waiting in SEALED batches behind the slot, last measured (None: not
    measured by this operation).
    """

    started: list[StartedJobRun] = field(default_factory=list)
    start_failures: int = 0
    start_quarantined: int = 0
    sealed_backlog_images: int | None = None

    def add(self, start: JobRunStart | None) -> StartedJobRun | None:
        """Count one start (None: nothing was started); returns the job run when it started."""
        if start is None:
            return None
        if start.sealed_backlog_images is not None:
            self.sealed_backlog_images = start.sealed_backlog_images
        if start.result is StartResult.STARTED:
            self.started.append(start.run)  # type: ignore[arg-type]
            return start.run
        self.start_failures += 1
        self.start_quarantined += int(start.result is StartResult.QUARANTINED)
        return None


@dataclass
class IngestOutcome(JobStarts):
    """Result of one S3 object: ``recorded`` (new image), ``duplicate``, or ``skipped`` with a reason."""

    uri: str
    recorded: bool = False
    duplicate: bool = False
    skipped: str | None = None
    pending: int | None = None
    sealed: list[str] = field(default_factory=list)
    superseded: int = 0  # image versions this event superseded (itself, if it came late)
    removed: int = 0  # image versions an ObjectRemoved event marked removed
    erasure_queued: bool = False


@dataclass
class JobStateOutcome(JobStarts):
    """What a job state event did (``action``), why (``reason``), to which job run: ``batch_id`` its lead,
    ``batch_ids`` all its batches (seal order). A failed run: ``action`` RETRY, or QUARANTINED when at least one of
    its batches reached MAX_ATTEMPTS failures (``quarantined`` lists them; the others went back to SEALED).

    ``time_to_feature_seconds``: when this event moved the run's batches to SUCCEEDED, one value per live image
    that has an S3 event time: seconds from that event time to the event's handling (the TimeToFeatureSeconds
    metric).
    """

    action: JobStateAction
    reason: str = ""
    batch_id: str | None = None
    batch_ids: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    images_done: int = 0
    time_to_feature_seconds: list[float] = field(default_factory=list)


@dataclass
class TickOutcome(JobStarts):
    """What the scheduled tick did: pending images, the oldest one's wait (s, None if none), batches sealed;
    its repair (issue 18): batches ``resumed`` from a stuck CLAIMING, the lost terminal job state ``recovered``."""

    pending: int = 0
    oldest_pending_age_seconds: float | None = None
    sealed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    recovered: JobStateOutcome | None = None


@dataclass
class FlushOutcome(JobStarts):
    sealed: list[str] = field(default_factory=list)


@dataclass
class ReconcileOutcome(JobStarts):
    listed: int = 0
    skipped: int = 0
    missing_recorded: int = 0
    claiming_resumed: list[str] = field(default_factory=list)
    redriven: list[StartedJobRun] = field(default_factory=list)
    sealed: list[str] = field(default_factory=list)
    recovered: JobStateOutcome | None = None
    backfill: BackfillOutcome | None = None  # the listing step (a resumable backfill pass over IMAGES_PREFIX)
