"""Manifest table: backfill cursors (where a paged listing of the data bucket stopped, one item per prefix)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from lambdas.dal.codec import to_item, values
from lambdas.dal.image_items import ImageItems
from lambdas.dal.table_core import COUNTER_KEY, MAX_TRANSACTION_ITEMS, META, PK, SK, _key, head_put
from lambdas.logic.keys import ImageRef  # a pure type

CURSOR_SK_PREFIX = "BACKFILL#"


def cursor_key(prefix: str) -> dict[str, str]:
    """Key of the backfill cursor of ``prefix`` (``""`` = the whole bucket): ``META`` / ``BACKFILL#<prefix>``."""
    return {PK: META, SK: f"{CURSOR_SK_PREFIX}{prefix}"}


@dataclass(frozen=True)
class Cursor:
    """A backfill pass in progress over ``prefix``.

    ``continuation_token`` is ListObjectsV2's ``NextContinuationToken`` after the last page recorded and
    ``start_after`` that page's last key (the fallback when S3 no longer accepts the token); ``listed`` /
    ``recorded`` / ``pages`` count the pass so far; times are timezone-aware UTC.
    """

    prefix: str
    continuation_token: str | None
    start_after: str | None
    pass_started_at: dt.datetime
    updated_at: dt.datetime
    listed: int = 0
    recorded: int = 0
    pages: int = 0

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Cursor:
        return cls(
            prefix=item["prefix"],
            continuation_token=item.get("continuation_token"),
            start_after=item.get("start_after"),
            pass_started_at=dt.datetime.fromisoformat(item["pass_started_at"]),
            updated_at=dt.datetime.fromisoformat(item["updated_at"]),
            listed=int(item.get("listed", 0)),
            recorded=int(item.get("recorded", 0)),
            pages=int(item.get("pages", 0)),
        )


class CursorItems(ImageItems):
    """Backfill cursor operations (item shape: :mod:`lambdas.dal.manifest_table`) and the listing's bulk record."""

    def record_listed(self, refs: list[tuple[ImageRef, str | None]], *, now: dt.datetime) -> int:
        """Record listed image versions ``(ref, label)`` of keys the table knows nothing of (no HEAD, no item) as
        PENDING; how many were new.

        Up to 49 image Puts and their keys' HEAD Puts plus one counter ``ADD pending :n`` per transaction (the
        counter stays exact), every Put conditional on ``attribute_not_exists``. A chunk cancelled because some key
        was recorded since the caller's check is redone one image at a time with :meth:`record_version` (which
        decides by version order), so a re-recorded image is a no-op and the others are still recorded.
        """
        recorded = 0
        chunk_size = (MAX_TRANSACTION_ITEMS - 1) // 2
        for start in range(0, len(refs), chunk_size):
            chunk = refs[start : start + chunk_size]
            puts = []
            for ref, label in chunk:
                puts.append(self._image_put(ref, label=label, now=now)[1])
                puts.append(
                    head_put(ref.item_key[0], ref.stamp, current=ref.item_key[1], etag=ref.etag, previous=None, now=now)
                )
            count = {
                "Update": {
                    "Key": _key(COUNTER_KEY),
                    "UpdateExpression": "ADD pending :n",
                    "ExpressionAttributeValues": values(n=len(chunk)),
                }
            }
            if self._transact([*puts, count]) is None:
                recorded += len(chunk)
                continue
            for ref, label in chunk:
                recorded += int(self.record_image(ref, label=label, now=now))
        return recorded

    def cursor(self, prefix: str) -> Cursor | None:
        """The stored cursor of ``prefix`` (strongly consistent read); None when no pass is in progress."""
        item = self._get(cursor_key(prefix))
        return Cursor.from_item(item) if item else None

    def save_cursor(self, cursor: Cursor) -> None:
        """Store ``cursor`` (overwrites the prefix's previous one: one PutItem, called after each page)."""
        item = {
            **cursor_key(cursor.prefix),
            "type": "backfill_cursor",
            "prefix": cursor.prefix,
            "continuation_token": cursor.continuation_token,
            "start_after": cursor.start_after,
            "pass_started_at": cursor.pass_started_at,
            "updated_at": cursor.updated_at,
            "listed": cursor.listed,
            "recorded": cursor.recorded,
            "pages": cursor.pages,
        }
        self._client.put_item(TableName=self.table_name, Item=to_item(item))

    def clear_cursor(self, prefix: str) -> None:
        """Delete the cursor of ``prefix`` (a full pass completed: the next backfill starts a new pass)."""
        self._client.delete_item(TableName=self.table_name, Key=_key(cursor_key(prefix)))
