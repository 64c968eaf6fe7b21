"""Manifest table: the pending counter and image items (record, look up, list, mark DONE)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from botocore.exceptions import ClientError

from lambdas.dal.codec import from_item, iso_utc, to_item, values
from lambdas.dal.records import Image
from lambdas.dal.table_core import (
    COUNTER_KEY,
    GSI_PK,
    GSI_SK,
    MAX_TRANSACTION_ITEMS,
    PENDING_GSI_PK,
    PK,
    SK,
    Fate,
    ImageStatus,
    RecordResult,
    TableCore,
    _key,
    head_update,
)
from lambdas.identity import image_item_key, sequencer_key, short_hash
from lambdas.logic.keys import ImageRef  # a pure type


class ImageItems(TableCore):
    """Counter and image operations (see :mod:`lambdas.dal.manifest_table` for item shapes)."""

    # --- counter -------------------------------------------------------------------------------------
    def counter(self) -> tuple[int, int]:
        """``(pending, seq)`` read with strong consistency (0, 0 on an empty table)."""
        item = self._get(COUNTER_KEY) or {}
        return int(item.get("pending", 0)), int(item.get("seq", 0))

    # --- images --------------------------------------------------------------------------------------
    def record_image(self, ref: ImageRef, *, label: str | None, now: dt.datetime) -> bool:
        """:meth:`record_version`; False if the version was already recorded (no-op)."""
        return self.record_version(ref, label=label, now=now) is not RecordResult.DUPLICATE

    def record_version(self, ref: ImageRef, *, label: str | None, now: dt.datetime) -> RecordResult:
        """Record one image version as PENDING and count it, atomically, if it is the key's latest event.

        With a ``ref.sequencer`` the key's ``HEAD`` item moves to it in the same transaction, on condition that
        no later event of the key was applied (``seq_key <= :q``; equal = the same event redelivered). A version
        older than the key's latest event is recorded as SUPERSEDED (not counted, never claimed). ``label`` None
        leaves the attribute out. Returns RECORDED, DUPLICATE (already recorded: no-op) or SUPERSEDED.
        """
        pk, sk = image_item_key(ref.bucket, ref.key, ref.etag)
        seq = sequencer_key(ref.sequencer)
        item, put = self._image_put(ref, label=label, now=now)
        count = {
            "Update": {
                "Key": _key(COUNTER_KEY),
                "UpdateExpression": "ADD pending :one",
                "ExpressionAttributeValues": values(one=1),
            }
        }
        head = [] if seq is None else [head_update(pk, seq, ref.sequencer, current=sk, now=now)]
        codes = self._transact([put, count, *head])
        if codes is None:
            return RecordResult.RECORDED
        if codes[0] == "ConditionalCheckFailed":
            return RecordResult.DUPLICATE
        stale = {**item, "status": ImageStatus.SUPERSEDED.value, "fate": Fate.SUPERSEDED.value, GSI_PK: "IMAGES#OLD"}
        put["Put"]["Item"] = to_item(stale)
        return RecordResult.SUPERSEDED if self._transact([put]) is None else RecordResult.DUPLICATE

    @staticmethod
    def _image_put(ref: ImageRef, *, label: str | None, now: dt.datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        """The PENDING image item of ``ref`` and its transaction Put (condition: not yet recorded)."""
        pk, sk = image_item_key(ref.bucket, ref.key, ref.etag)
        seq = sequencer_key(ref.sequencer)
        item = {
            PK: pk,
            SK: sk,
            "type": "image",
            "bucket": ref.bucket,
            "key": ref.key,
            "version_id": ref.version_id,
            "etag": ref.etag,
            "size": ref.size,
            "label": label,
            "sequencer": ref.sequencer,
            "seq_key": seq,
            "event_time": ref.event_time,
            "status": ImageStatus.PENDING.value,
            "recorded_at": now,
            GSI_PK: PENDING_GSI_PK,
            GSI_SK: f"{iso_utc(now)}#{short_hash(pk, sk)}",
        }
        put = {
            "Put": {
                "Item": to_item(item),
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": PK},
            }
        }
        return item, put

    def existing_images(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the image ``(pk, sk)`` keys are already recorded (BatchGetItem, 100 keys per call)."""
        found: set[tuple[str, str]] = set()
        for start in range(0, len(keys), 100):
            request = {
                self.table_name: {
                    "Keys": [_key({PK: pk, SK: sk}) for pk, sk in dict.fromkeys(keys[start : start + 100])],
                    "ProjectionExpression": "#pk, #sk",
                    "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
                }
            }
            attempt = 0
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.table_name, []):
                    item = from_item(raw) or {}
                    found.add((item[PK], item[SK]))
                request = response.get("UnprocessedKeys") or {}
                if request:
                    self._sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
                    attempt += 1
        return found

    def pending_images(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` PENDING images, oldest first (GSI: may lag a just-recorded image)."""
        return list(self._query_gsi(PENDING_GSI_PK, limit=limit))

    def batch_images(self, batch_id: str) -> list[dict[str, Any]]:
        """Every image claimed by ``batch_id`` (GSI, eventually consistent)."""
        return list(self._query_gsi(f"BATCH#{batch_id}"))

    def images_of_batch(self, batch_id: str) -> list[Image]:
        """:meth:`batch_images` as typed records."""
        return [Image.from_item(item) for item in self._query_gsi(f"BATCH#{batch_id}")]

    def mark_images_done(self, batch_id: str, images: list[dict[str, Any]], *, now: dt.datetime) -> int:
        """Set ``status=DONE`` on the batch's live images (idempotent; superseded/removed ones are left out);
        returns how many changed.

        Transactions of up to :data:`MAX_TRANSACTION_ITEMS` updates, each conditioned on ``batch_id``; a chunk
        whose condition fails for some image (it no longer belongs to the batch) is redone one image at a time,
        so the others are still marked.
        """
        todo = [image for image in images if image.get("status") != ImageStatus.DONE and not image.get("fate")]
        changed = 0
        for start in range(0, len(todo), MAX_TRANSACTION_ITEMS):
            chunk = todo[start : start + MAX_TRANSACTION_ITEMS]
            updates = [self._done_update(batch_id, image, now) for image in chunk]
            if self._transact([{"Update": update} for update in updates]) is None:
                changed += len(chunk)
                continue
            for update in updates:
                try:
                    self._client.update_item(**{**update, "TableName": self.table_name})
                    changed += 1
                except ClientError as err:
                    if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
        return changed

    @staticmethod
    def _done_update(batch_id: str, image: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        """The UpdateItem arguments (without TableName) that mark ``image`` DONE if it belongs to ``batch_id``."""
        return {
            "Key": _key({PK: image[PK], SK: image[SK]}),
            "UpdateExpression": "SET #s = :done, done_at = :now",
            "ConditionExpression": "batch_id = :b",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": values(done=ImageStatus.DONE.value, now=now, b=batch_id),
        }
