"""Manifest table: an image's life cycle after recording (superseded, removed) and the erasures it queues."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.contracts import VersionStamp, is_newer
from lambdas.dal.codec import iso_utc, to_item, values
from lambdas.dal.table_core import (
    COUNTER_KEY,
    ERASURES_PENDING_GSI_PK,
    GSI_PK,
    GSI_SK,
    HEAD_SK,
    PK,
    SK,
    Fate,
    ImageStatus,
    TableCore,
    TransactionGaveUp,
    _key,
    claim_update,
    head_put,
)
from lambdas.identity import image_key_pk, item_stamp, sequencer_key, short_hash


@dataclass(frozen=True)
class Counts:
    """The counter item: images pending (not reserved), batches created, erasures waiting for a batch."""

    pending: int
    seq: int
    erasures: int


@dataclass(frozen=True)
class Removal:
    """What an ObjectRemoved event did: ``applied`` False when a later event of the key was already applied."""

    applied: bool
    images_removed: int = 0
    erasure_queued: bool = False


class LifecycleItems(TableCore):
    """Supersede / remove image versions and queue erasures (item shapes: :mod:`lambdas.dal.manifest_table`)."""

    def counts(self) -> Counts:
        """The counter item in one strongly consistent read (zeros on an empty table)."""
        item = self._get(COUNTER_KEY) or {}
        return Counts(int(item.get("pending", 0)), int(item.get("seq", 0)), int(item.get("erasures_pending", 0)))

    def key_versions(self, bucket: str, key: str) -> list[dict[str, Any]]:
        """Every recorded version (image item, pre-issue-18 ones included) of one S3 key, strongly consistent."""
        return [item for item in self._partition(image_key_pk(bucket, key)) if item.get("type") == "image"]

    def supersede_older(
        self, bucket: str, key: str, *, stamp: VersionStamp, keep_sk: str, etag: str = "", now: dt.datetime
    ) -> int:
        """Mark the key's live versions older than ``stamp`` (other than ``keep_sk``) superseded (``fate``).

        Older = :func:`lambdas.contracts.is_newer` (``stamp``, the version's stamp). A version recorded by listing
        with the same ``etag`` in the same second as ``stamp`` is the same version (the event of a listed version)
        and is kept. A PENDING one stays in the pending flow (the counter stays exact) and is left out of its
        batch's manifest; a featurized one is replaced in the lake by the newer row. Returns how many changed.
        """

        def same_listed(version: dict[str, Any]) -> bool:
            listed_second = (version.get("last_modified") or "")[:19]
            return (
                not version.get("sequencer")
                and version.get("etag") == etag
                and listed_second == (stamp.time or "")[:19]
            )

        older = [
            v
            for v in self.key_versions(bucket, key)
            if v[SK] != keep_sk and not v.get("fate") and not same_listed(v) and is_newer(stamp, item_stamp(v))
        ]
        return sum(self._set_fate(v, Fate.SUPERSEDED, now) for v in older)

    def mark_removed(self, bucket: str, key: str, *, stamp: VersionStamp, now: dt.datetime) -> Removal:
        """Apply an ObjectRemoved event whose :class:`VersionStamp` is ``stamp`` (the delete's sequencer, event
        time and, for a delete marker, its version id).

        Ignored (``applied=False``) when the key's HEAD holds a later event. Otherwise the HEAD moves to the
        delete (optimistic lock, as in :meth:`ImageItems.record_version`; the same delete again leaves it), and the
        key's versions not newer than the delete get ``fate = removed``. A version already claimed by a batch or
        featurized (CLAIMED / DONE) queues one erasure for the key, carried by the next sealed batch.
        Raises :class:`TransactionGaveUp` if the HEAD keeps racing.
        """
        pk = image_key_pk(bucket, key)
        for _ in range(self._max_tx):
            items = self._partition(pk)
            head = next((item for item in items if item[SK] == HEAD_SK), None)
            if head is not None and is_newer(item_stamp(head), stamp):
                return Removal(applied=False)  # a later event of the key was applied first
            if head is not None and item_stamp(head) == stamp:
                break  # the same delete again: finish its work (idempotent)
            if self._transact([head_put(pk, stamp, current="", etag="", previous=head, now=now)]) is None:
                break
        else:
            raise TransactionGaveUp(f"s3://{bucket}/{key}: HEAD kept changing after {self._max_tx} attempts")
        versions = [v for v in self.key_versions(bucket, key) if not is_newer(item_stamp(v), stamp)]
        removed = [v for v in versions if self._set_fate(v, Fate.REMOVED, now)]
        featurized = any(v["status"] in (ImageStatus.CLAIMED, ImageStatus.DONE) for v in versions)
        queued = featurized and self._queue_erasure(f"s3://{bucket}/{key}", stamp, now)
        return Removal(applied=True, images_removed=len(removed), erasure_queued=queued)

    def _set_fate(self, version: dict[str, Any], fate: Fate, now: dt.datetime) -> bool:
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key=_key({PK: version[PK], SK: version[SK]}),
                UpdateExpression="SET fate = :f, fate_at = :now",
                ConditionExpression="attribute_not_exists(fate)",
                ExpressionAttributeValues=values(f=fate.value, now=now),
            )
            return True
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def _queue_erasure(self, image_uri: str, stamp: VersionStamp, now: dt.datetime) -> bool:
        seq = sequencer_key(stamp.sequencer)
        pk, sk = f"ERASURE#{image_uri}", f"SEQ#{seq or 'none'}"
        item = {
            PK: pk,
            SK: sk,
            "type": "erasure",
            "image_uri": image_uri,
            "sequencer": stamp.sequencer,
            "time": stamp.time,
            "version_id": stamp.version_id,
            "reason": "deleted",
            "status": ImageStatus.PENDING.value,
            "requested_at": now,
            GSI_PK: ERASURES_PENDING_GSI_PK,
            GSI_SK: f"{iso_utc(now)}#{short_hash(pk, sk)}",
        }
        codes = self._transact(
            [
                {
                    "Put": {
                        "Item": to_item(item),
                        "ConditionExpression": "attribute_not_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": PK},
                    }
                },
                {
                    "Update": {
                        "Key": _key(COUNTER_KEY),
                        "UpdateExpression": "ADD erasures_pending :one",
                        "ExpressionAttributeValues": values(one=1),
                    }
                },
            ]
        )
        return codes is None

    def pending_erasures(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Erasures waiting for a batch, oldest first (GSI, eventually consistent)."""
        return list(self._query_gsi(ERASURES_PENDING_GSI_PK, limit=limit))

    def batch_erasures(self, batch_id: str) -> list[dict[str, Any]]:
        """The erasures a batch carries (GSI, eventually consistent)."""
        return list(self._query_gsi(f"ERASURES#{batch_id}"))

    def claim_erasure(self, erasure: dict[str, Any], batch_id: str) -> bool:
        """Attach one PENDING erasure to ``batch_id`` and uncount it, atomically (False if taken already)."""
        codes = self._transact(
            [
                claim_update(erasure, batch_id, gsi_pk=f"ERASURES#{batch_id}"),
                {
                    "Update": {
                        "Key": _key(COUNTER_KEY),
                        "UpdateExpression": "ADD erasures_pending :minus",
                        "ExpressionAttributeValues": values(minus=-1),
                    }
                },
            ]
        )
        return codes is None
