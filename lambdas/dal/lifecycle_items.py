"""Manifest table: an image's life cycle after recording (superseded, removed) and the erasures it queues."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.dal.codec import from_item, iso_utc, to_item, values
from lambdas.dal.table_core import (
    COUNTER_KEY,
    ERASURES_PENDING_GSI_PK,
    GSI_PK,
    GSI_SK,
    PK,
    SK,
    Fate,
    ImageStatus,
    TableCore,
    _key,
    claim_update,
    head_update,
)
from lambdas.identity import image_key_pk, sequencer_key, short_hash


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
        """Every recorded version (image item) of one S3 key, strongly consistent."""
        response = self._client.query(
            TableName=self.table_name,
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :etag)",
            ExpressionAttributeNames={"#pk": PK, "#sk": SK},
            ExpressionAttributeValues=values(pk=image_key_pk(bucket, key), etag="ETAG#"),
            ConsistentRead=True,
        )
        return [from_item(raw) for raw in response.get("Items", [])]  # type: ignore[misc]

    def supersede_older(self, bucket: str, key: str, *, sequencer: str | None, keep_sk: str, now: dt.datetime) -> int:
        """Mark the key's live versions older than event ``sequencer`` (other than ``keep_sk``) SUPERSEDED.

        A PENDING one stays in the pending flow (the counter stays exact) and is left out of its batch's
        manifest; a featurized one is replaced in the lake by the newer row (sequencer rule). Returns how many.
        """
        seq = sequencer_key(sequencer)
        if seq is None:
            return 0
        older = [v for v in self.key_versions(bucket, key) if v[SK] != keep_sk and (v.get("seq_key") or "") < seq]
        return sum(self._set_fate(v, Fate.SUPERSEDED, now) for v in older)

    def mark_removed(self, bucket: str, key: str, *, sequencer: str | None, now: dt.datetime) -> Removal:
        """Apply an ObjectRemoved event: the key's versions up to ``sequencer`` get ``fate = removed``.

        Ignored (``applied=False``) when a later event of the key was already applied. A version already claimed
        by a batch or featurized (CLAIMED / DONE) queues one erasure for the key, carried by the next sealed batch.
        """
        pk, seq = image_key_pk(bucket, key), sequencer_key(sequencer)
        if seq is not None and self._transact([head_update(pk, seq, sequencer, current="", now=now)]) is not None:
            return Removal(applied=False)  # a later event of the key was applied first
        versions = [v for v in self.key_versions(bucket, key) if seq is None or (v.get("seq_key") or "") <= seq]
        removed = [v for v in versions if self._set_fate(v, Fate.REMOVED, now)]
        featurized = any(v["status"] in (ImageStatus.CLAIMED, ImageStatus.DONE) for v in versions)
        queued = featurized and self._queue_erasure(f"s3://{bucket}/{key}", sequencer, seq, now)
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

    def _queue_erasure(self, image_uri: str, sequencer: str | None, seq: str | None, now: dt.datetime) -> bool:
        pk, sk = f"ERASURE#{image_uri}", f"SEQ#{seq or 'none'}"
        item = {
            PK: pk,
            SK: sk,
            "type": "erasure",
            "image_uri": image_uri,
            "sequencer": sequencer,
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
