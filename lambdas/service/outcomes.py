"""What each use case returns: plain records the handlers turn into logs and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StartedJobRun:
    batch_id: str
    attempt: int
    job_run_id: str
    client_token: str


@dataclass(kw_only=True)
class JobStarts:
    """Job runs an operation started, and its ``start_job_run`` calls that failed.

    ``start_quarantined`` counts the batches such a failure quarantined (their MAX_ATTEMPTS-th failure): the
    handlers report them as ``BatchesQuarantined`` like a quarantine after a failed job run.
    """

    started: list[StartedJobRun] = field(default_factory=list)
    start_failures: int = 0
    start_quarantined: int = 0


@dataclass
class IngestOutcome(JobStarts):
    """Result of one S3 object: ``recorded`` (new image), ``duplicate``, or ``skipped`` with a reason."""

    uri: str
    recorded: bool = False
    duplicate: bool = False
    skipped: str | None = None
    pending: int | None = None
    sealed: list[str] = field(default_factory=list)


@dataclass
class JobStateOutcome(JobStarts):
    """What a job state event did: ``action`` ∈ ignored | unknown_job_run | stale | succeeded | retry | quarantined."""

    action: str
    reason: str = ""
    batch_id: str | None = None
    images_done: int = 0


@dataclass
class TickOutcome(JobStarts):
    """What the scheduled tick did: pending images, the oldest one's wait (s, None if none), batches sealed."""

    pending: int = 0
    oldest_pending_age_seconds: float | None = None
    sealed: list[str] = field(default_factory=list)


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
