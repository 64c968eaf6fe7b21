"""Resumable backfill: record every object under a prefix of the data bucket, page by page, with a stored cursor.

A pass lists the prefix with ListObjectsV2 (``MaxKeys`` per page). After each page's images are recorded, the
page's ``NextContinuationToken`` and last key are stored in the manifest table (a cursor item per prefix,
:mod:`lambdas.dal.cursor_items`); a run that must stop (Lambda time almost out, or a page budget) leaves the
cursor, and the next run resumes after it. The pass that lists the last page deletes the cursor, so the next run
starts a new pass. Recording is idempotent (a BatchGetItem skips known images, and the image Puts — 99 per
transaction with the counter's ``ADD`` — are conditional on ``attribute_not_exists``), so a crash between
recording a page and saving the cursor records nothing twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.dal.codec import iso_utc
from lambdas.dal.cursor_items import Cursor
from lambdas.dal.table_core import HEAD_SK, RecordResult
from lambdas.identity import legacy_sk, normalize_etag, same_listed_version
from lambdas.logic.keys import ImageRef, label_for_key, skip_reason
from lambdas.service.base import ServiceBase

log = logging.getLogger(__name__)

MAX_KEYS = 1000  # ListObjectsV2 returns at most 1,000 keys per page (AWS S3 API reference)
# Stop when less than this is left of the Lambda's time: one page (≤ 1,000 conditional writes) and the rest of
# reconcile (claims, a job run start) fit in a minute with room to spare.
RESERVE_MILLIS = 60_000


@dataclass
class BackfillOutcome:
    """One backfill run over ``prefix``: objects ``listed``, ``skipped`` (not images), newly ``recorded``,
    ``pages`` listed in this run; ``resumed`` when it continued a stored cursor; ``complete`` when the pass
    reached the end of the listing (cursor deleted), else ``stopped`` says why (``time`` | ``page_limit``)."""

    prefix: str
    listed: int = 0
    skipped: int = 0
    recorded: int = 0
    pages: int = 0
    resumed: bool = False
    complete: bool = False
    stopped: str | None = None


PageCallback = Callable[[BackfillOutcome], None]


class Backfill(ServiceBase):
    """``backfill``: the paged, resumable listing ``reconcile`` and ``fruits backfill`` share."""

    def backfill_prefix(self, prefix: str | None) -> str:
        """The key prefix to list: ``prefix`` or IMAGES_PREFIX; ValueError when it is outside IMAGES_PREFIX."""
        images_prefix = self.settings.images_prefix
        chosen = prefix or images_prefix
        if not chosen.startswith(images_prefix):
            raise ValueError(f"prefix {prefix!r} is outside the images prefix {images_prefix!r}")
        return chosen

    def backfill(
        self,
        prefix: str | None = None,
        *,
        time_left_ms: Callable[[], int] | None = None,
        reserve_ms: int = RESERVE_MILLIS,
        max_pages: int | None = None,
        page_size: int = MAX_KEYS,
        on_page: PageCallback | None = None,
    ) -> BackfillOutcome:
        """Record the objects under ``prefix`` (default IMAGES_PREFIX) missing from the manifest, resuming the
        prefix's stored pass if any.

        Stops before a page when ``time_left_ms()`` (milliseconds, e.g. the Lambda context's
        ``get_remaining_time_in_millis``) is below ``reserve_ms``, or after ``max_pages`` pages; ``page_size`` is
        ListObjectsV2 ``MaxKeys`` (1..1000). ``on_page`` gets the running outcome after each page (progress).
        Raises ValueError for a prefix outside IMAGES_PREFIX or a bad ``page_size``/``max_pages``.
        """
        prefix = self.backfill_prefix(prefix)
        if not 1 <= page_size <= MAX_KEYS:
            raise ValueError(f"page size must be 1..{MAX_KEYS}, got {page_size}")
        if max_pages is not None and max_pages < 1:
            raise ValueError(f"max pages must be ≥ 1, got {max_pages}")
        cursor = self.table.cursor(prefix)
        outcome = BackfillOutcome(prefix=prefix, resumed=cursor is not None)
        now = self.clock()
        if cursor is None:
            cursor = Cursor(prefix, None, None, pass_started_at=now, updated_at=now)
        while True:
            if max_pages is not None and outcome.pages >= max_pages:
                outcome.stopped = "page_limit"
                break
            if time_left_ms is not None and time_left_ms() < reserve_ms:
                outcome.stopped = "time"
                break
            page = self._list_page(cursor, page_size)
            contents = page.get("Contents", [])
            recorded = self._record_page(contents, outcome)
            outcome.pages += 1
            if not page.get("IsTruncated"):
                self.table.clear_cursor(prefix)
                outcome.complete = True
                if on_page:
                    on_page(outcome)
                break
            cursor = Cursor(
                prefix,
                page.get("NextContinuationToken"),
                contents[-1]["Key"] if contents else cursor.start_after,
                pass_started_at=cursor.pass_started_at,
                updated_at=self.clock(),
                listed=cursor.listed + len(contents),
                recorded=cursor.recorded + recorded,
                pages=cursor.pages + 1,
            )
            self.table.save_cursor(cursor)
            if on_page:
                on_page(outcome)
        log.info("backfill run", extra=vars(outcome))
        return outcome

    def _list_page(self, cursor: Cursor, page_size: int) -> dict[str, Any]:
        """The next ListObjectsV2 page after ``cursor`` (its token; its last key if S3 rejects the token)."""
        params: dict[str, Any] = {"Bucket": self.settings.data_bucket, "Prefix": cursor.prefix, "MaxKeys": page_size}
        if cursor.continuation_token:
            try:
                return self.s3.list_objects_v2(**params, ContinuationToken=cursor.continuation_token)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") != "InvalidArgument" or not cursor.start_after:
                    raise
                log.warning("continuation token rejected, resuming after the last key", extra={"error": str(err)})
        if cursor.start_after:
            params["StartAfter"] = cursor.start_after
        return self.s3.list_objects_v2(**params)

    def _record_page(self, contents: list[dict[str, Any]], outcome: BackfillOutcome) -> int:
        """Record the page's images the manifest lacks; how many.

        One BatchGetItem per 33 objects reads each object's key HEAD, its version's item and the pre-issue-18
        item of its ETag. Known (item found, or the HEAD's live version is this object:
        :func:`lambdas.identity.same_listed_version`): skipped. A key the
        table knows nothing of: recorded in bulk (:meth:`record_listed`). Else the key has history: the version is
        recorded one by one by version order (:meth:`record_version`: a listed version older than the key's newest
        event is not recorded, so a late listing never wins).
        """
        bucket, images_prefix = self.settings.data_bucket, self.settings.images_prefix
        refs = []
        for obj in contents:
            outcome.listed += 1
            etag = normalize_etag(obj.get("ETag", ""))
            if skip_reason(obj["Key"], images_prefix) is not None or not etag:
                outcome.skipped += 1
                continue
            refs.append(
                ImageRef(bucket, obj["Key"], etag, int(obj["Size"]), last_modified=_iso(obj.get("LastModified")))
            )
        keys: list[tuple[str, str]] = []
        for ref in refs:
            pk, sk = ref.item_key
            keys += [(pk, HEAD_SK), (pk, sk), (pk, legacy_sk(ref.etag))]
        found = self.table.get_many(keys)
        fresh, known_keys = [], []
        for ref in refs:
            pk, sk = ref.item_key
            head = found.get((pk, HEAD_SK))
            if (pk, sk) in found or (head is None and (pk, legacy_sk(ref.etag)) in found):
                continue  # this version (or, on a key without HEAD, a pre-issue-18 item of these bytes) is known
            if same_listed_version(head, ref.etag, ref.last_modified):
                continue  # the key's live version, recorded from its event
            label = label_for_key(ref.key, images_prefix)
            (known_keys if head is not None else fresh).append((ref, label))
        now = self.clock()
        recorded = self.table.record_listed(fresh, now=now)
        for ref, label in known_keys:
            if self.table.record_version(ref, label=label, now=now) is RecordResult.RECORDED:
                recorded += 1  # a newer version whose event was lost: the key's older versions are superseded
                self.table.supersede_older(
                    ref.bucket, ref.key, stamp=ref.stamp, keep_sk=ref.item_key[1], etag=ref.etag, now=now
                )
        outcome.recorded += recorded
        return recorded


def _iso(value: Any) -> str | None:
    """The listing's ``LastModified`` (a ``datetime`` from boto3, or text) as ISO-8601 UTC text; None if absent."""
    if isinstance(value, dt.datetime):
        return iso_utc(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return str(value) if value else None
