"""Manifest table: the pending counter and image items (record, look up, list, mark DONE)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from botocore.exceptions import ClientError

from lambdas.contracts import is_newer
from lambdas.dal.codec import from_item, iso_utc, to_item, values
from lambdas.dal.records import Image
from lambdas.dal.table_core import (
    COUNTER_KEY,
    GSI_PK,
    GSI_SK,
    HEAD_SK,
    MAX_TRANSACTION_ITEMS,
    PENDING_GSI_PK,
    PK,
    SK,
    Fate,
    ImageStatus,
    RecordResult,
    TableCore,
    TransactionGaveUp,
    _key,
    head_put,
)
from lambdas.identity import (
    image_key_pk,
    item_stamp,
    legacy_sk,
    normalize_etag,
    normalize_version_id,
    same_listed_version,
    sequencer_key,
    short_hash,
)
from lambdas.logic.keys import ImageRef  # a pure type


def same_version(item: dict[str, Any], ref: ImageRef) -> bool:
    """True when image ``item`` records the S3 object version ``ref`` (its item key, or the compatibility read).

    An item written before issue 18 (sort key ``ETAG#<etag>``, identity bucket + key + ETag) is the same version
    when its ETag matches and: both carry a version id and they are equal; else both carry a sequencer and they
    are equal; else (neither) the item is still the key's live content (no ``fate``).
    """
    if item[SK] == ref.item_key[1]:
        return True
    if item[SK] != legacy_sk(ref.etag):
        return False
    item_version, ref_version = normalize_version_id(item.get("version_id")), normalize_version_id(ref.version_id)
    if item_version and ref_version:
        return item_version == ref_version
    if item.get("sequencer") and ref.sequencer:
        return sequencer_key(item["sequencer"]) == sequencer_key(ref.sequencer)
    return not item.get("fate")


def listed_as_head(head: dict[str, Any] | None, ref: ImageRef) -> bool:
    """True when the S3 event ``ref`` is of the version the key's HEAD holds from a listing (no sequencer): same
    ETag, same second (the listing's LastModified, the event's eventTime). Such an event is newer than the listing
    only by rule 3 of :func:`lambdas.contracts.is_newer`; it is the same version, already recorded."""
    if head is None or head.get("sequencer") or not head.get("current_sk") or not ref.sequencer:
        return False
    same_second = (head.get("time") or "")[:19] == (ref.event_time or "")[:19] != ""
    return same_second and normalize_etag(head.get("etag")) == ref.etag


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

    def key_state(self, bucket: str, key: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """``(HEAD item or None, image items)`` of one S3 key: one strongly consistent Query of its partition.

        The image items include those written before issue 18 (sort key ``ETAG#<etag>``).
        """
        items = self._partition(image_key_pk(bucket, key))
        head = next((item for item in items if item[SK] == HEAD_SK), None)
        return head, [item for item in items if item.get("type") == "image"]

    def record_version(self, ref: ImageRef, *, label: str | None, now: dt.datetime) -> RecordResult:
        """:meth:`record_version_and_others` without the second value."""
        return self.record_version_and_others(ref, label=label, now=now)[0]

    def record_version_and_others(
        self, ref: ImageRef, *, label: str | None, now: dt.datetime
    ) -> tuple[RecordResult, bool]:
        """Record one S3 object version as PENDING and count it, atomically, if it is the key's newest event.

        Reads the key's partition (HEAD + versions) and decides with :func:`lambdas.contracts.is_newer` on
        ``ref.stamp`` (docs/contracts.md "Version order"):

        * the version is already recorded (same item key, or a pre-issue-18 item of the same version:
          :func:`same_version`) → DUPLICATE, nothing written (a redelivered event, a version listed again);
        * it is found by listing and is not newer than the key's HEAD →
          DUPLICATE (known: the listing adds nothing), as is a listed object that is the live version recorded
          from its event (:func:`lambdas.identity.same_listed_version`);
        * it is an event older than the key's HEAD → written with status SUPERSEDED (never counted nor claimed)
          → SUPERSEDED;
        * else the image Put, the counter's ``ADD pending 1`` and the HEAD move to ``ref`` are one transaction,
          the HEAD Put conditioned on the HEAD read (:func:`lambdas.dal.table_core.head_put`); a racing writer
          makes it re-read and decide again → RECORDED.

        ``label`` None leaves the attribute out. The second value is False when the version was RECORDED while the
        key had no other live version (nothing to supersede: the HEAD did not move since that read), else True.
        Raises :class:`TransactionGaveUp` if the HEAD keeps racing.
        """
        pk, sk = ref.item_key
        stamp = ref.stamp
        item, put = self._image_put(ref, label=label, now=now)
        count = {
            "Update": {
                "Key": _key(COUNTER_KEY),
                "UpdateExpression": "ADD pending :one",
                "ExpressionAttributeValues": values(one=1),
            }
        }
        for _ in range(self._max_tx):
            head, versions = self.key_state(ref.bucket, ref.key)
            if any(same_version(version, ref) for version in versions) or listed_as_head(head, ref):
                return RecordResult.DUPLICATE, True
            if head is not None and not is_newer(stamp, item_stamp(head)):
                if ref.sequencer is None or item_stamp(head) == stamp:
                    return RecordResult.DUPLICATE, True
                return self._record_superseded(item, put), True
            if ref.sequencer is None and same_listed_version(head, ref.etag, ref.last_modified):
                return RecordResult.DUPLICATE, True  # listed: the key's live version, recorded from its event
            move = head_put(pk, stamp, current=sk, etag=ref.etag, previous=head, now=now)
            codes = self._transact([put, count, move])
            if codes is None:
                return RecordResult.RECORDED, any(not version.get("fate") for version in versions)
            if codes[0] == "ConditionalCheckFailed":
                return RecordResult.DUPLICATE, True
            # the HEAD moved since it was read: decide again
        raise TransactionGaveUp(f"{ref.uri}: HEAD kept changing after {self._max_tx} attempts")

    def _record_superseded(self, item: dict[str, Any], put: dict[str, Any]) -> RecordResult:
        """Write a late, older version as SUPERSEDED (never pending); DUPLICATE if it is already recorded."""
        stale = {**item, "status": ImageStatus.SUPERSEDED.value, "fate": Fate.SUPERSEDED.value, GSI_PK: "IMAGES#OLD"}
        put = {"Put": {**put["Put"], "Item": to_item(stale)}}
        return RecordResult.SUPERSEDED if self._transact([put]) is None else RecordResult.DUPLICATE

    @staticmethod
    def _image_put(ref: ImageRef, *, label: str | None, now: dt.datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        """The PENDING image item of ``ref`` and its transaction Put (condition: not yet recorded)."""
        pk, sk = ref.item_key
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
            "last_modified": ref.last_modified,
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
        """Which of the ``(pk, sk)`` keys exist (BatchGetItem, 100 keys per call)."""
        return set(self.get_many(keys))

    def get_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The items of ``(pk, sk)`` keys that exist, with ``etag``, ``current_sk`` and ``time`` (HEAD) projected
        (BatchGetItem, 100 keys per call, unprocessed keys retried with jittered backoff)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request = {
                self.table_name: {
                    "Keys": [_key({PK: pk, SK: sk}) for pk, sk in unique[start : start + 100]],
                    "ProjectionExpression": "#pk, #sk, etag, current_sk, #t",
                    "ExpressionAttributeNames": {"#pk": PK, "#sk": SK, "#t": "time"},
                }
            }
            attempt = 0
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.table_name, []):
                    item = from_item(raw) or {}
                    found[(item[PK], item[SK])] = item
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
