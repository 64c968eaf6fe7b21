"""What every use case shares: settings, the manifest table, the S3 and EMR Serverless clients, the clock."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from lambdas.config import Settings
from lambdas.dal.codec import iso_utc
from lambdas.dal.manifest_table import ManifestTable

log = logging.getLogger(__name__)

TERMINAL_SUCCESS = "SUCCESS"
TERMINAL_FAILURE = ("FAILED", "CANCELLED")
MANIFEST_GSI_WAIT_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)  # waits for the GSI to show every claimed image
# The repair bound (issue 18): the tick (every minute) re-drives a batch stuck CLAIMING or STARTING this long
# (seconds), and applies a terminal job run state whose EventBridge event is this late. Re-driving while the first
# sealer / starter is still alive is harmless: claims are conditional, and a re-driven start sends the same
# clientToken, which EMR Serverless answers with the same job run (StartJobRun idempotency).
REPAIR_AFTER_SECONDS = 180
STALE_START_SECONDS = REPAIR_AFTER_SECONDS  # the name used before issue 18
# A StartJobRun that failed (after botocore's own retries) is retried by the tick after 30 s, 60 s, 120 s, then every
# REPAIR_AFTER_SECONDS; it never counts as a failed attempt (only job runs that ran and FAILED do).
START_RETRY_BASE_SECONDS = 30

Clock = Callable[[], dt.datetime]


def utc_now_dt() -> dt.datetime:
    """Current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def utc_now() -> str:
    """Current UTC time, ISO-8601 with microseconds (sortable): the form stored in the manifest table."""
    return iso_utc(utc_now_dt())


def system_clock() -> dt.datetime:
    """The default clock: :func:`utc_now_dt`, looked up at each call (so tests may patch the module's)."""
    return utc_now_dt()


class ServiceBase:
    """The service's state; the use-case classes (``batching``, ``job_runs``, ``repair``, ``admin``) add behaviour.

    ``clock`` returns timezone-aware UTC ``datetime``s and is the only source of "now" in the service (times
    become ISO strings only in the DynamoDB codec); ``sleep`` waits for GSI lag (seconds).
    """

    def __init__(
        self,
        settings: Settings,
        table: ManifestTable,
        s3: Any,
        emr: Any,
        *,
        clock: Clock = system_clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.table = table
        self.s3 = s3
        self.emr = emr
        self.clock = clock
        self.sleep = sleep
        # (recorded_at of the oldest pending image, when it was read): batching's per-process memo
        self._oldest_pending: tuple[dt.datetime, dt.datetime] | None = None
